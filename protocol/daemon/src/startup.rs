//! The start of both daemons, in one order: logs, panic hook, `--lock-file`, signals.

use std::fmt::Display;
use std::process::ExitCode;

use crate::flags::DaemonFlags;
use crate::lock::{self, Lock};

/// Starts logging for `crates` (the `log` targets shown), makes a panic one log line and exit
/// 1, takes `--lock-file`, makes SIGTERM and SIGINT a request to stop, and then runs `daemon`,
/// holding the lock until it returns. Exits 0 at once when another copy of `program` holds
/// the lock file; an error of the lock or of `daemon` is logged and exits 1.
pub fn run<E: Display>(
    program: &str,
    crates: &'static [&'static str],
    flags: &DaemonFlags,
    daemon: impl FnOnce() -> Result<ExitCode, E>,
) -> ExitCode {
    crate::logger::init(flags.log_level.filter(), crates, flags.log_format);
    install_panic_hook();
    let _lock = match &flags.lock_file {
        None => None,
        Some(path) => match lock::acquire(path) {
            Ok(Lock::Held(file)) => Some(file),
            Ok(Lock::HeldElsewhere) => {
                // Cron starts a copy every minute: 1,440 lines a day at info said nothing.
                log::debug!(
                    "another {program} holds --lock-file {}; exiting",
                    path.display()
                );
                return ExitCode::SUCCESS;
            }
            Err(e) => return failed(&e),
        },
    };
    crate::signals::install();
    daemon().unwrap_or_else(|e| failed(&e))
}

/// Reports why the daemon could not start or run, once (every `--log.level` shows errors),
/// and gives exit code 1.
fn failed(e: &dyn Display) -> ExitCode {
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
