//! Logs: one plain line per event on stderr, `time [LEVEL] message`.

use simplelog::{ConfigBuilder, LevelFilter, WriteLogger};

use crate::config::{LogFormat, LogLevel};

/// Starts logging at `level`. Only our own events are logged: ureq's and rustls' debug lines
/// would drown ours, and their errors reach us as values anyway.
pub fn init(level: LogLevel, format: LogFormat) {
    let config = ConfigBuilder::new()
        .set_time_format_rfc3339()
        .set_thread_level(LevelFilter::Off)
        .set_target_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        .add_filter_allow_str("pushprox_client")
        .build();
    // Only fails if a logger is already set, which cannot happen here.
    let _ = WriteLogger::init(level.filter(), config, std::io::stderr());
    if format == LogFormat::Json {
        log::info!("--log.format=json is accepted for compatibility with the Go client; logs stay one plain line per event");
    }
}
