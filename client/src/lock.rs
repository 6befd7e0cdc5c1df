//! `--lock-file`: one client per lock file, so cron can start the client every minute.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::Path;

use crate::error::StartupError;

/// The outcome of trying to take the lock.
pub enum Lock {
    /// We hold the lock for as long as this file stays open.
    Held(File),
    /// Another process holds it.
    HeldElsewhere,
}

/// Takes an exclusive lock on `path`, creating the file if needed, and writes our pid into it
/// for operators.
pub fn acquire(path: &Path) -> Result<Lock, StartupError> {
    let failed = |e: std::io::Error| StartupError::LockFile {
        path: path.to_path_buf(),
        source: e,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(failed)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Ok(Lock::HeldElsewhere),
        Err(TryLockError::Error(e)) => return Err(failed(e)),
    }
    // The pid is informational: failing to write it does not matter.
    let _ = file
        .set_len(0)
        .and_then(|()| writeln!(file, "{}", std::process::id()));
    Ok(Lock::Held(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_until_the_first_is_dropped() {
        let path =
            std::env::temp_dir().join(format!("pushprox-client-lock-test-{}", std::process::id()));
        let first = acquire(&path).unwrap();
        assert!(matches!(first, Lock::Held(_)));
        assert!(matches!(acquire(&path).unwrap(), Lock::HeldElsewhere));
        drop(first);
        assert!(matches!(acquire(&path).unwrap(), Lock::Held(_)));
        let _ = std::fs::remove_file(&path);
    }
}
