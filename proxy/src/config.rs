//! Command-line flags: defined once, with their help, defaults and Go names side by side.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use log::LevelFilter;

/// Lets Prometheus scrape targets it cannot reach: clients behind NAT long-poll this proxy,
/// and Prometheus uses it as its `proxy_url`.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "pushprox-proxy",
    version,
    about,
    after_help = "Example:\n  pushprox-proxy -l 0.0.0.0:8080\n\nThen point Prometheus at it with `proxy_url: http://proxy.example:8080/` and run\n`pushprox-client --proxy-url http://proxy.example:8080/` on each target host.\n\nExit codes: 0 stopped cleanly (or --lock-file held by another copy), 1 runtime failure\n(e.g. the address is in use), 2 bad flags."
)]
pub struct Config {
    /// Address to listen on for polls, pushes and scrapes; `:8080` means every interface.
    /// [Go: --web.listen-address]
    #[arg(
        short = 'l',
        long = "listen",
        visible_alias = "web.listen-address",
        value_name = "ADDR",
        default_value = ":8080"
    )]
    pub listen: String,

    /// Longest deadline a scrape may ask for with X-Prometheus-Scrape-Timeout-Seconds;
    /// longer ones are cut to this.
    #[arg(long = "scrape.max-timeout", value_name = "DURATION", default_value = "5m", value_parser = parse_duration_flag)]
    pub scrape_max_timeout: Duration,

    /// Deadline of a scrape that does not send X-Prometheus-Scrape-Timeout-Seconds (curl,
    /// other tools).
    #[arg(long = "scrape.default-timeout", value_name = "DURATION", default_value = "15s", value_parser = parse_duration_flag)]
    pub scrape_default_timeout: Duration,

    /// A client is listed in /clients while it polled within this time, and forgotten after.
    #[arg(long = "registration.timeout", value_name = "DURATION", default_value = "5m", value_parser = parse_duration_flag)]
    pub registration_timeout: Duration,

    /// Longest time a poll is held open without a scrape before it is answered 408 and the
    /// client polls again. Set it below the idle time-out of a load balancer in front of the
    /// proxy. 0s holds polls indefinitely, as the Go proxy does.
    #[arg(long = "poll.max-hold", value_name = "DURATION", default_value = "0s", value_parser = parse_duration_flag)]
    pub poll_max_hold: Duration,

    /// Most requests handled at once (each held poll counts as one). Beyond it, new requests
    /// get 503 and the proxy carries on. Each needs a thread: see the README on limits.
    #[arg(long = "web.max-connections", value_name = "N", default_value_t = 16384, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Only one copy of the proxy runs per lock file: a second copy finds it held and exits 0.
    #[arg(long = "lock-file", value_name = "PATH")]
    pub lock_file: Option<PathBuf>,

    /// Least severe level logged: debug, info, warn or error.
    #[arg(long = "log.level", value_name = "LEVEL", default_value = "info", value_parser = parse_level)]
    pub log_level: LevelFilter,

    /// Accepted for compatibility with Go command lines (logfmt or json); logs are always one
    /// plain line per event on stderr.
    #[arg(long = "log.format", value_name = "FORMAT", default_value = "logfmt", value_parser = ["logfmt", "json"])]
    pub log_format: String,
}

impl Config {
    /// The listen address in a form the socket layer takes: `:8080` becomes `0.0.0.0:8080`.
    pub fn listen_addr(&self) -> String {
        match self.listen.strip_prefix(':') {
            Some(port) => format!("0.0.0.0:{port}"),
            None => self.listen.clone(),
        }
    }

    /// The deadline of a scrape that asked for `requested` (None: it did not say).
    pub fn effective_deadline(&self, requested: Option<Duration>) -> Duration {
        match requested {
            Some(d) => d.min(self.scrape_max_timeout),
            None => self.scrape_default_timeout.min(self.scrape_max_timeout),
        }
    }
}

fn parse_duration_flag(text: &str) -> Result<Duration, String> {
    pushprox_protocol::parse_duration(text).map_err(|e| e.to_string())
}

fn parse_level(text: &str) -> Result<LevelFilter, String> {
    match text.to_ascii_lowercase().as_str() {
        "debug" => Ok(LevelFilter::Debug),
        "info" => Ok(LevelFilter::Info),
        "warn" | "warning" => Ok(LevelFilter::Warn),
        "error" => Ok(LevelFilter::Error),
        _ => Err(format!(
            "unknown log level \"{text}\": expected debug, info, warn or error"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_flag_names_work() {
        let c = Config::try_parse_from([
            "pushprox-proxy",
            "--web.listen-address",
            ":9999",
            "--scrape.max-timeout=1m",
            "--registration.timeout",
            "30s",
            "--log.format",
            "json",
        ])
        .unwrap();
        assert_eq!(c.listen_addr(), "0.0.0.0:9999");
        assert_eq!(c.scrape_max_timeout, Duration::from_secs(60));
        assert_eq!(c.registration_timeout, Duration::from_secs(30));
        assert_eq!(
            c.effective_deadline(Some(Duration::from_secs(600))),
            Duration::from_secs(60)
        );
        assert_eq!(c.effective_deadline(None), Duration::from_secs(15));
    }

    #[test]
    fn bad_duration_names_the_flag_and_the_form() {
        let err = Config::try_parse_from(["pushprox-proxy", "--scrape.max-timeout", "5 minutes"])
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("--scrape.max-timeout"), "{text}");
        assert!(text.contains("15s"), "{text}");
        assert_eq!(err.exit_code(), 2);
    }
}
