//! pushprox-proxy: flags, logging, lock file, then the server. Nothing else.

mod auth;
mod config;
mod delivery;
mod discovery;
mod handlers;
mod http;
mod limits;
mod metrics;
mod parked;
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

use clap::Parser;
use pushprox_daemon::lock::{self, Lock};

fn main() {
    let config = config::Config::parse();
    if let Some(user) = &config.hash_password {
        std::process::exit(hash_password(user));
    }
    if let Some(conflict) = config.conflicts() {
        eprintln!("error: {conflict}");
        std::process::exit(2);
    }
    let format = if config.log_format == "json" {
        pushprox_daemon::logger::Format::Json
    } else {
        pushprox_daemon::logger::Format::Logfmt
    };
    pushprox_daemon::logger::init_as(
        config.log_level,
        &["pushprox_proxy", "pushprox_daemon"],
        format,
    );
    let _lock = match &config.lock_file {
        None => None,
        Some(path) => match lock::acquire(path) {
            Ok(Lock::Held(file)) => Some(file),
            Ok(Lock::HeldElsewhere) => {
                // Cron starts a copy every minute: 1,440 lines a day at info said nothing.
                log::debug!("another pushprox-proxy holds {}; exiting", path.display());
                return;
            }
            Err(e) => {
                log::error!("{e}");
                std::process::exit(1);
            }
        },
    };
    pushprox_daemon::signals::install();
    log::info!(
        "starting pushprox-proxy version={}",
        env!("CARGO_PKG_VERSION")
    );
    if let Err(e) = server::run(config) {
        log::error!("{e}");
        std::process::exit(1);
    }
}

/// `--hash-password USER`: reads the password from stdin (a prompt without echo on a
/// terminal), prints the users-file line (bcrypt, cost 10).
fn hash_password(user: &str) -> i32 {
    if user.is_empty() || user.contains(':') {
        eprintln!("--hash-password: the user name must be non-empty and contain no ':'");
        return 2;
    }
    let password = match password::read(user) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("--hash-password: cannot read the password from standard input: {e}");
            return 1;
        }
    };
    let password = password.as_str();
    if password.is_empty() {
        eprintln!("--hash-password: the password read from standard input is empty");
        return 2;
    }
    match auth::users::bcrypt_line(user, password) {
        Ok(line) => {
            println!("{line}");
            0
        }
        Err(e) => {
            eprintln!("--hash-password: cannot hash the password: {e}");
            1
        }
    }
}
