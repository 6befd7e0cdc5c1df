//! pushprox-proxy: flags, logging, lock file, then the server. Nothing else.

mod auth;
mod config;
mod delivery;
mod digest;
mod discovery;
mod error;
mod handlers;
mod http;
mod limits;
mod metrics;
mod parked;
mod passing;
mod password;
mod redact;
mod registry;
mod reload;
mod rendezvous;
mod server;
mod state;
mod trusted;
mod warn_limit;
mod web_config;

use std::process::ExitCode;

use clap::Parser;
use pushprox_daemon::startup;

const PROGRAM: &str = "pushprox-proxy";

fn main() -> ExitCode {
    let config = config::Config::parse();
    if let Some(user) = &config.hash_password {
        return password::hash_password(user);
    }
    if let Some(conflict) = config.conflicts() {
        eprintln!("error: {conflict}");
        return ExitCode::from(2);
    }
    let daemon = config.daemon.clone();
    startup::run(
        PROGRAM,
        &["pushprox_proxy", "pushprox_daemon"],
        &daemon,
        || {
            log::info!("starting {PROGRAM} version={}", env!("CARGO_PKG_VERSION"));
            server::run(config).map(|()| ExitCode::SUCCESS)
        },
    )
}
