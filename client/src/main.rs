//! pushprox-client: polls PushProx proxies and performs the scrapes they hand out against
//! targets on this host. See `--help`.

mod config;
mod error;
mod fqdn;
mod lock;
mod logging;
mod metrics;
mod poller;
mod push;
mod resolver;
mod run;
mod scrape;
mod shutdown;
mod tls;
mod token;
#[path = "../../proxy/src/workers.rs"]
mod workers;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let flags = config::Flags::parse();
    logging::init(flags.log_level, flags.log_format);
    run::run(flags.into_config())
}
