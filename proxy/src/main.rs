//! pushprox-proxy: flags, logging, lock file, then the server. Nothing else.

mod config;
mod handlers;
mod id;
mod lock;
mod metrics;
mod process;
mod registry;
mod rendezvous;
mod server;
mod shutdown;

use clap::Parser;
use simplelog::{ConfigBuilder, LevelFilter, WriteLogger};

fn main() {
    let config = config::Config::parse();
    let log_config = ConfigBuilder::new()
        .set_time_format_rfc3339()
        .set_target_level(LevelFilter::Off)
        .set_thread_level(LevelFilter::Off)
        .add_filter_ignore_str("tiny_http")
        .build();
    let _ = WriteLogger::init(config.log_level, log_config, std::io::stderr());
    if config.log_format == "json" {
        log::info!(
            "--log.format=json is accepted for compatibility; logs stay one plain line per event"
        );
    }
    let _lock = match &config.lock_file {
        None => None,
        Some(path) => match lock::try_lock(path) {
            Ok(lock::Lock::Held(file)) => Some(file),
            Ok(lock::Lock::Busy) => {
                log::info!("another pushprox-proxy holds {}; exiting", path.display());
                return;
            }
            Err(e) => {
                log::error!("{e}");
                std::process::exit(1);
            }
        },
    };
    shutdown::install();
    log::info!(
        "starting pushprox-proxy version={}",
        env!("CARGO_PKG_VERSION")
    );
    if let Err(e) = server::run(config) {
        log::error!("{e}");
        std::process::exit(1);
    }
}
