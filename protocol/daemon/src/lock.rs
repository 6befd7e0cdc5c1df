//! `--lock-file`: one running copy per lock file, so cron can start the daemon every minute.

use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The outcome of trying to take the lock.
#[derive(Debug)]
pub enum Lock {
    /// We hold the lock for as long as this file stays open.
    Held(File),
    /// Another process holds it.
    HeldElsewhere,
}

/// The lock file could not be opened or locked.
#[derive(Debug)]
pub struct LockError {
    pub path: PathBuf,
    pub source: io::Error,
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot lock --lock-file {}: {}",
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for LockError {}

/// Takes an exclusive lock on `path` without waiting, creating the file if needed, and writes
/// our pid into it for operators.
pub fn acquire(path: &Path) -> Result<Lock, LockError> {
    let failed = |source| LockError {
        path: path.to_path_buf(),
        source,
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
            std::env::temp_dir().join(format!("pushprox-daemon-lock-test-{}", std::process::id()));
        let first = acquire(&path).unwrap();
        assert!(matches!(first, Lock::Held(_)));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
        assert!(matches!(acquire(&path).unwrap(), Lock::HeldElsewhere));
        drop(first);
        assert!(matches!(acquire(&path).unwrap(), Lock::Held(_)));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn an_unopenable_path_names_the_flag_and_the_file() {
        let err = acquire(Path::new("/nonexistent/dir/x.lock")).unwrap_err();
        assert_eq!(err.source.kind(), io::ErrorKind::NotFound);
        assert!(
            err.to_string()
                .starts_with("cannot lock --lock-file /nonexistent/dir/x.lock: "),
            "{err}"
        );
    }
}
