//! Re-reading the files the proxy was started with when they change, without a restart: the
//! web config and the certificates, keys and CAs it names, `--tls.cert`/`--tls.key`,
//! `--auth.scrape-users`, `--auth.client-tokens`. One thread does it for all of them, and
//! every reader (the front at each TLS handshake, the checks of each request) sees the result
//! through a [`View`]: there is no second copy to keep in step.
//!
//! The thread `reload-<name>` checks every few seconds a SHA-256 of the contents of the files
//! the last good load was made from: a content hash sees an in-place rewrite and a symlink
//! swap alike (certbot's `live/` links, cert-manager's `..data` directory), where a
//! modification time can miss the second. On a change it loads everything again; a good
//! result replaces the current value, a failure logs one `warn` line naming the file and the
//! error and keeps the last good value (until the files change again). Readers clone an `Arc`
//! under a read lock: no I/O, no waiting on a load.

use std::fmt::Display;
use std::io::Read;
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use pushprox_daemon::sync::{read, write};

use crate::digest::{digest, Digest};

/// Files are hashed up to this size (more than any config, certificate or token file).
const MAX_HASHED_BYTES: u64 = 4 << 20;

/// What a load returns: the value, and the files it was made from (they are watched from then
/// on).
pub type Loaded<T> = (T, Vec<PathBuf>);

struct Shared<T> {
    value: RwLock<Arc<T>>,
    last_error: RwLock<Option<String>>,
}

/// The current value, for readers: cheap to clone and to read.
pub struct Current<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for Current<T> {
    fn clone(&self) -> Self {
        Current {
            shared: self.shared.clone(),
        }
    }
}

impl<T: Send + Sync + 'static> Current<T> {
    /// The last good value.
    pub fn get(&self) -> Arc<T> {
        let value = read(&self.shared.value);
        Arc::clone(&value)
    }

    /// Why the files as they are now could not be loaded, if they could not (the text of
    /// the logged warning); `None` once a load succeeds.
    #[cfg(test)]
    pub fn last_error(&self) -> Option<String> {
        read(&self.shared.last_error).clone()
    }

    /// A reader of one part of the current value.
    pub fn view<U: ?Sized + 'static>(
        &self,
        part: impl Fn(&T) -> Arc<U> + Send + Sync + 'static,
    ) -> View<U> {
        let current = self.clone();
        View(Arc::new(move || part(&current.get())))
    }
}

/// A part of a reloaded value, as its readers see it (or a value that never changes).
pub struct View<U: ?Sized>(Arc<dyn Fn() -> Arc<U> + Send + Sync>);

impl<U: ?Sized> Clone for View<U> {
    fn clone(&self) -> Self {
        View(Arc::clone(&self.0))
    }
}

impl<U: ?Sized + Send + Sync + 'static> View<U> {
    /// The part as last loaded.
    pub fn get(&self) -> Arc<U> {
        (self.0)()
    }

    /// A part that never changes.
    #[cfg(test)]
    pub fn fixed(value: Arc<U>) -> View<U> {
        View(Arc::new(move || Arc::clone(&value)))
    }
}

/// The reloading thread; it stops when this is dropped (at its next check at the latest).
pub struct Reloader<T> {
    current: Current<T>,
    _stop: mpsc::Sender<()>,
}

impl<T: Send + Sync + 'static> Reloader<T> {
    /// Loads once (an error here is the caller's: the proxy should not start on a broken
    /// file), then starts the thread `reload-<name>` that checks every `every`.
    pub fn start<E, F>(name: &str, every: Duration, load: F) -> Result<Self, E>
    where
        E: Display,
        F: Fn() -> Result<Loaded<T>, E> + Send + 'static,
    {
        let (value, mut watched) = load()?;
        let shared = Arc::new(Shared {
            value: RwLock::new(Arc::new(value)),
            last_error: RwLock::new(None),
        });
        // Hashed now, not when the thread first runs: a change made meanwhile must count.
        let mut seen = fingerprints(&watched);
        let (stop, stopped) = mpsc::channel::<()>();
        let thread_shared = shared.clone();
        let thread_name = name.to_string();
        let spawned = std::thread::Builder::new()
            .name(format!("reload-{name}"))
            .stack_size(256 * 1024)
            .spawn(move || loop {
                match stopped.recv_timeout(every) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                let now = fingerprints(&watched);
                if now == seen {
                    continue;
                }
                let changed: Vec<String> = watched
                    .iter()
                    .zip(now.iter().zip(&seen))
                    .filter(|(_, (a, b))| a != b)
                    .map(|(file, _)| file.display().to_string())
                    .collect();
                seen = now;
                match load() {
                    Ok((value, files)) => {
                        // `seen` was hashed before the load, so a change during the load
                        // is seen at the next check; unless the list of files changed,
                        // then it is hashed anew.
                        if files != watched {
                            watched = files;
                            seen = fingerprints(&watched);
                        }
                        *write(&thread_shared.value) = Arc::new(value);
                        *write(&thread_shared.last_error) = None;
                        log::info!(
                            "reloaded {thread_name} after a change of {}",
                            changed.join(", ")
                        );
                    }
                    Err(e) => {
                        let message = format!(
                            "cannot reload {thread_name} after a change of {}, keeping the last good version: {e}",
                            changed.join(", ")
                        );
                        log::warn!("{message}");
                        *write(&thread_shared.last_error) = Some(message);
                    }
                }
            });
        if let Err(e) = spawned {
            // Without the thread the value still works; it just no longer follows the file.
            log::warn!("cannot start the thread that reloads {name}: {e}; changes need a restart");
        }
        Ok(Reloader {
            current: Current { shared },
            _stop: stop,
        })
    }

    /// A reader of the current value, to hand to whoever needs it.
    pub fn current(&self) -> Current<T> {
        self.current.clone()
    }

    /// The last good value.
    #[cfg(test)]
    pub fn get(&self) -> Arc<T> {
        self.current.get()
    }
}

/// A digest of each watched file's contents (a file that cannot be read counts by its error,
/// so its disappearance and return are changes too).
fn fingerprints(files: &[PathBuf]) -> Vec<Digest> {
    files
        .iter()
        .map(|file| {
            let mut contents = Vec::new();
            let read = std::fs::File::open(file)
                .and_then(|f| f.take(MAX_HASHED_BYTES).read_to_end(&mut contents));
            match read {
                Ok(_) => digest(&[b"ok", &contents]),
                Err(e) => digest(&[b"error", format!("{:?}", e.kind()).as_bytes()]),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushprox_test_support::TempDir;
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    const EVERY: Duration = Duration::from_millis(20);

    /// Waits up to 5 s for `done`.
    fn wait_for(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Loads a number from the file, and the file named on its second line if any (whose
    /// contents are added).
    fn load_number(path: &Path) -> Result<Loaded<u64>, String> {
        let (n, extra) = load_number_only(path)?;
        let mut files = vec![path.to_path_buf()];
        files.extend(extra);
        Ok((n, files))
    }

    fn load_number_only(path: &Path) -> Result<Loaded<u64>, String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        let mut lines = text.lines();
        let n: u64 = lines
            .next()
            .unwrap_or("")
            .trim()
            .parse()
            .map_err(|_| format!("not a number: {text:?}"))?;
        match lines.next() {
            Some(extra) => {
                let extra = PathBuf::from(extra.trim());
                let m: u64 = std::fs::read_to_string(&extra)
                    .map_err(|e| format!("{}: {e}", extra.display()))?
                    .trim()
                    .parse()
                    .map_err(|_| "extra: not a number".to_string())?;
                Ok((n + m, vec![extra]))
            }
            None => Ok((n, vec![])),
        }
    }

    /// Replaces the file's contents at once (write beside, rename over): `fs::write`
    /// truncates first, and a check between the truncation and the write would load an empty
    /// file.
    fn replace(path: &Path, text: &str) {
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    #[test]
    fn changes_are_picked_up_and_broken_versions_kept_out() {
        let dir = TempDir::new("reload");
        let file = dir.write("n.txt", "1\n");
        let loads = Arc::new(AtomicUsize::new(0));
        let counted = loads.clone();
        let path = file.clone();
        let reloader = Reloader::start("test", EVERY, move || {
            counted.fetch_add(1, Ordering::SeqCst);
            load_number(&path)
        })
        .unwrap();
        let current = reloader.current();
        assert_eq!(*current.get(), 1);

        // An in-place rewrite.
        replace(&file, "2\n");
        wait_for("2", || *current.get() == 2);
        assert_eq!(current.last_error(), None);

        // A broken version: logged, the old value kept, loaded once (not at every check).
        let before = loads.load(Ordering::SeqCst);
        replace(&file, "two\n");
        wait_for("the failed load", || current.last_error().is_some());
        assert_eq!(
            current.last_error().unwrap(),
            format!(
                "cannot reload test after a change of {}, keeping the last good version: not a number: \"two\\n\"",
                file.display()
            )
        );
        assert_eq!(*current.get(), 2);
        std::thread::sleep(EVERY * 5);
        assert_eq!(loads.load(Ordering::SeqCst), before + 1);

        // Fixed again; then a file it names changes, and only that file.
        let extra = dir.write("extra.txt", "10\n");
        replace(&file, &format!("3\n{}\n", extra.display()));
        wait_for("13", || *current.get() == 13);
        assert_eq!(current.last_error(), None);
        replace(&extra, "20\n");
        wait_for("23", || *current.get() == 23);
    }

    #[test]
    fn a_symlink_swap_is_seen() {
        // As cert-manager and Kubernetes do it: a new target, and the link renamed over.
        let dir = TempDir::new("reload-symlink");
        let a = dir.write("a.txt", "5\n");
        let b = dir.write("b.txt", "6\n");
        let link = dir.path("current.txt");
        std::os::unix::fs::symlink(&a, &link).unwrap();
        let path = link.clone();
        let reloader = Reloader::start("link", EVERY, move || load_number(&path)).unwrap();
        assert_eq!(*reloader.get(), 5);
        let tmp = dir.path("current.tmp");
        std::os::unix::fs::symlink(&b, &tmp).unwrap();
        std::fs::rename(&tmp, &link).unwrap();
        wait_for("6", || *reloader.get() == 6);
    }

    #[test]
    fn a_broken_first_version_is_the_callers_error() {
        let dir = TempDir::new("reload-first");
        let file = dir.write("n.txt", "x\n");
        let err = Reloader::start("first", EVERY, move || load_number(&file))
            .err()
            .unwrap();
        assert_eq!(err, "not a number: \"x\\n\"");
    }

    #[test]
    fn the_thread_stops_when_the_reloader_is_dropped() {
        let dir = TempDir::new("reload-drop");
        let file = dir.write("n.txt", "1\n");
        let marker = Arc::new(());
        let held = marker.clone();
        let reloader = Reloader::start("drop", EVERY, move || {
            let _ = &held;
            load_number(&file)
        })
        .unwrap();
        let current = reloader.current();
        assert_eq!(
            Arc::strong_count(&marker),
            2,
            "the thread's closure holds it"
        );
        drop(reloader);
        // The thread ends (and drops its closure) at its next check.
        wait_for("the thread to end", || Arc::strong_count(&marker) == 1);
        // Readers keep the last value.
        assert_eq!(*current.get(), 1);
    }
}
