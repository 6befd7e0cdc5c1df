//! The one temporary-directory type of the tests.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh directory of its own under the target's `tmp/` (`NAME-PID-SEQ`), for certificates,
/// configuration files and logs; removed on drop.
pub struct TempDir(pub PathBuf);

static SEQ: AtomicUsize = AtomicUsize::new(0);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let seq = SEQ.fetch_add(1, Ordering::SeqCst);
        let path = crate::process::target_tmp_dir().join(format!(
            "{}-{}-{seq}",
            name.replace(['/', ':', ' '], "_"),
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir(path)
    }

    /// The path of `name` in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The path of `name` in the directory, as a string for a command line.
    pub fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// Writes `contents` to `name` in the directory; its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }

    /// [`TempDir::write`], the path as a string for a command line.
    pub fn write_arg(&self, name: &str, contents: &str) -> String {
        self.write(name, contents).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
