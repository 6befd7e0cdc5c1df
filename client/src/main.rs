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
mod tcp;
mod tls;
mod token;

use std::process::ExitCode;

use clap::Parser;
use pushprox_daemon::startup;

const PROGRAM: &str = "pushprox-client";

fn main() -> ExitCode {
    let flags = config::Flags::parse();
    let daemon = flags.daemon.clone();
    startup::run(
        PROGRAM,
        &["pushprox_client", "pushprox_daemon"],
        &daemon,
        || run::run(&flags.into_config()).map(|in_flight| run::wait_for_signal(&in_flight)),
    )
}
