//! Child processes: the bound of every wait, free ports, and processes whose output goes to a
//! log file, killed on drop.

use std::ffi::OsStr;
use std::fs::File;
use std::net::TcpListener;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::http::WAIT;

/// How long a binary may take to answer its health check.
pub const READY_WITHIN: Duration = Duration::from_secs(10);

/// Polls `cond` every 20 ms until it holds or `within` passed; true when it held.
pub fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A port that was free on 127.0.0.1 a moment ago (callers retry on collision).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind 127.0.0.1:0 to find a free port")
}

/// The directory of the running test executable's profile (`target/debug`), where cargo puts
/// the binaries of the workspace.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the test executable");
    // target/debug/deps/NAME-HASH
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| panic!("{} is not in target/PROFILE/deps", exe.display()))
}

/// The target's `tmp/` (cargo's `CARGO_TARGET_TMPDIR`), for logs and temporary files.
pub fn target_tmp_dir() -> PathBuf {
    let profile = profile_dir();
    profile.parent().unwrap_or(&profile).join("tmp")
}

static LOG_SEQ: AtomicUsize = AtomicUsize::new(0);

/// A child process whose stdout and stderr go to a log file; killed (SIGKILL) on drop, and its
/// log printed when the test is failing.
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    dead: bool,
}

impl Proc {
    /// Starts `program` with `args` (see [`command`]).
    pub fn spawn<S: AsRef<OsStr>>(name: &str, program: &Path, args: &[S]) -> Proc {
        let seq = LOG_SEQ.fetch_add(1, Ordering::SeqCst);
        let dir = target_tmp_dir();
        let _ = std::fs::create_dir_all(&dir);
        let log = dir.join(format!(
            "{}-{}-{seq}.log",
            name.replace(['/', ':', ' '], "_"),
            std::process::id()
        ));
        let file = File::create(&log)
            .unwrap_or_else(|e| panic!("cannot create log file {}: {e}", log.display()));
        let out = file.try_clone().expect("cannot clone the log file handle");
        let child = command(program)
            .args(args)
            .stdout(out)
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Proc {
            name: name.to_string(),
            child,
            log,
            dead: false,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILL, and reap it.
    pub fn kill9(&mut self) {
        if !self.dead {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.dead = true;
        }
    }

    /// The last `lines` lines of its output.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let from = all.len().saturating_sub(lines);
        format!(
            "--- last {} lines of {} ({}) ---\n{}\n--- end of {} ---",
            all.len() - from,
            self.name,
            self.log.display(),
            all[from..].join("\n"),
            self.name
        )
    }

    /// Waits up to `within` for it to exit; its status, if it did.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let mut status = None;
        wait_until(within, || {
            status = self.exited();
            status.is_some()
        });
        status
    }

    /// Waits up to [`WAIT`] for a line of its output containing every one of `parts` (a log
    /// line saying `what`), and returns it; fails the test, showing the output, when none came.
    pub fn wait_for_line(&self, what: &str, parts: &[&str]) -> String {
        let mut found = None;
        let ok = wait_until(WAIT, || {
            found = self
                .log_text()
                .lines()
                .find(|l| parts.iter().all(|p| l.contains(p)))
                .map(str::to_string);
            found.is_some()
        });
        assert!(
            ok,
            "no log line {what} ({parts:?}) from {} within {WAIT:?}; its output:\n{}",
            self.name,
            self.log_text()
        );
        found.unwrap_or_default()
    }

    /// Its whole output so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether its output contains `needle`.
    pub fn log_contains(&self, needle: &str) -> bool {
        self.log_text().contains(needle)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
        if thread::panicking() {
            eprintln!("{}", self.log_tail(60));
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// A command for `program` that ignores the proxy variables of the environment (the tests talk
/// to loopback directly), with stdin and stdout null; the caller sets stderr.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(program);
    for var in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        command.env_remove(var);
    }
    command.stdin(Stdio::null()).stdout(Stdio::null());
    command
}

/// A child process killed on drop, for tests that set up its [`Command`] themselves.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// Starts `command`; fails the test, naming `what`, when it cannot.
    pub fn start(command: &mut Command, what: &str) -> ChildGuard {
        ChildGuard(
            command
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {what}: {e}")),
        )
    }
}

impl Deref for ChildGuard {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
