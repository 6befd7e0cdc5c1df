//! The start of both daemons, in one order: logs, panic hook, `--lock-file`, signals.

use std::fmt::Display;
use std::fs::File;
use std::process::ExitCode;

use crate::flags::DaemonFlags;
use crate::lock::{self, Lock, LockError};

/// What start-up leaves behind: keep it until the process ends, as it holds `--lock-file`.
pub struct Running {
    _lock: Option<File>,
}

/// Starts logging for `crates` (the `log` targets shown), makes a panic one log line and exit
/// 1, takes `--lock-file`, and makes SIGTERM and SIGINT a request to stop. `Ok(None)`: another
/// copy of `program` holds the lock file, and this one exits 0.
pub fn start(
    program: &str,
    crates: &'static [&'static str],
    flags: &DaemonFlags,
) -> Result<Option<Running>, LockError> {
    crate::logger::init(flags.log_level.filter(), crates, flags.log_format);
    install_panic_hook();
    let lock = match &flags.lock_file {
        None => None,
        Some(path) => match lock::acquire(path)? {
            Lock::Held(file) => Some(file),
            Lock::HeldElsewhere => {
                // Cron starts a copy every minute: 1,440 lines a day at info said nothing.
                log::debug!(
                    "another {program} holds --lock-file {}; exiting",
                    path.display()
                );
                return Ok(None);
            }
        },
    };
    crate::signals::install();
    Ok(Some(Running { _lock: lock }))
}

/// Reports why the daemon could not start or run, once (every `--log.level` shows errors),
/// and gives exit code 1.
pub fn failed(e: &dyn Display) -> ExitCode {
    log::error!("{e}");
    ExitCode::from(1)
}

/// A panic is a bug: log it as one line and exit 1, in debug builds as in release builds
/// (which abort), rather than keep running with a dead thread.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("unnamed");
        let location = info
            .location()
            .map_or_else(String::new, |l| format!(" at {}:{}", l.file(), l.line()));
        log::error!("fatal: thread {thread} panicked{location}: {message}");
        std::process::exit(1);
    }));
}
