//! pushprox-client: polls PushProx proxies and performs the scrapes they hand out against
//! targets on this host. See `--help`.
//!
//! Modules from the top down, none importing one above it: `run` (wiring) → `poller` →
//! `scrape` → `push`, over `link` (one proxy), `metrics`, `metrics_server`, `agent`, `tls`,
//! `token`, `in_flight`, `resolver`, `fqdn`, `config` and `error`.

mod agent;
mod config;
mod error;
mod fqdn;
mod in_flight;
mod link;
mod liveness;
mod metrics;
mod metrics_server;
mod poller;
mod push;
mod resolver;
mod run;
mod scrape;
mod tls;
mod token;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let flags = config::Flags::parse();
    let format = match flags.log_format {
        config::LogFormat::Json => pushprox_daemon::logger::Format::Json,
        config::LogFormat::Logfmt => pushprox_daemon::logger::Format::Logfmt,
    };
    pushprox_daemon::logger::init_as(
        flags.log_level.filter(),
        &["pushprox_client", "pushprox_daemon"],
        format,
    );
    run::run(flags.into_config())
}
