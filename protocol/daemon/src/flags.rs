//! The flags both daemons take, defined once and flattened into each binary's own
//! (`#[command(flatten)] daemon: DaemonFlags`), and the value parsers both use.
//!
//! Help convention of both binaries: clap prints the default (`[default: 5m]`); the text ends
//! with the Go name of the flag, `[Go: same]`, `[Go: --other.name]` (accepted as an alias) or
//! `[Go: none]`. scripts/flag-tables.sh checks the README's flag tables against `--help`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::logger::Format;

/// Logging and `--lock-file`: what [`crate::startup::run`] needs.
#[derive(Args, Debug, Clone)]
pub struct DaemonFlags {
    /// Least severe level logged: debug, info, warn or error. [Go: same]
    #[arg(long = "log.level", value_name = "LEVEL", value_enum, ignore_case = true, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,

    /// logfmt: one plain line per event on stderr; json: one JSON object per line, with `ts`,
    /// `level`, `msg` and the message's key=value words (fqdn, scrape_id, ...) as fields.
    /// [Go: same]
    #[arg(long = "log.format", value_name = "FORMAT", value_enum, default_value_t = Format::Logfmt)]
    pub log_format: Format,

    /// Take an exclusive lock on this file, and exit 0 at once if another copy holds it, so
    /// that cron can start the daemon every minute. [Go: none]
    #[arg(long = "lock-file", value_name = "PATH")]
    pub lock_file: Option<PathBuf>,
}

/// `--log.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Debug,
    Info,
    #[value(alias = "warning")]
    Warn,
    Error,
}

impl LogLevel {
    pub fn filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Error => log::LevelFilter::Error,
        }
    }
}

/// The value parser of every duration flag: Prometheus' style (`500ms`, `15s`, `1m30s`) and
/// Go's (`1.5s`), through the protocol's one parser.
pub fn duration(text: &str) -> Result<Duration, String> {
    pushprox_protocol::parse_duration(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        daemon: DaemonFlags,
        #[arg(long, value_parser = duration)]
        wait: Option<Duration>,
    }

    #[test]
    fn go_values_and_defaults() {
        let cli = Cli::try_parse_from(["d"]).unwrap();
        assert_eq!(cli.daemon.log_level, LogLevel::Info);
        assert_eq!(cli.daemon.log_format, Format::Logfmt);
        assert!(cli.daemon.lock_file.is_none());
        let cli = Cli::try_parse_from([
            "d",
            "--log.level=WARNING",
            "--log.format",
            "json",
            "--wait=1m30s",
        ])
        .unwrap();
        assert_eq!(cli.daemon.log_level.filter(), log::LevelFilter::Warn);
        assert_eq!(cli.daemon.log_format, Format::Json);
        assert_eq!(cli.wait, Some(Duration::from_secs(90)));
        for bad in [&["d", "--log.level=loud"][..], &["d", "--wait=5 minutes"]] {
            let err = Cli::try_parse_from(bad).map(|_| ()).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{err}");
        }
    }
}
