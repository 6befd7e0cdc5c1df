//! `--lock-file`: one running copy per lock file, so cron can start the binary every minute.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

/// The result of trying the lock.
pub enum Lock {
    /// We hold it until the returned file is dropped (at exit).
    Held(File),
    /// Another process holds it.
    Busy,
}

/// Tries to take the lock without waiting.
pub fn try_lock(path: &Path) -> Result<Lock, String> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| format!("cannot open lock file {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Lock::Held(file)),
        Err(TryLockError::WouldBlock) => Ok(Lock::Busy),
        Err(TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}
