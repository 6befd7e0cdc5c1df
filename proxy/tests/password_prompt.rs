//! `--hash-password` on a terminal: the real binary on a pseudo-terminal (python3's `pty`
//! module plays the person typing) prompts on standard error, reads the password twice without
//! echo, and prints a bcrypt line that verifies against it. The password never appears in
//! what the terminal shows.

use std::process::Command;

const DRIVER: &str = r#"
import os, pty, select, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], "--hash-password", "prom"])
seen = b""
def until(needle, secs=10):
    global seen
    end = time.time() + secs
    while needle not in seen and time.time() < end:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    return needle in seen
for prompt in (b"Password for prom: ", b"Type it again: "):
    if not until(prompt):
        sys.exit("no prompt %r; the terminal showed %r" % (prompt, seen))
    os.write(fd, sys.argv[2].encode() + b"\n")
until(b"\n", 10)
until(b"never", 2)
_, status = os.waitpid(pid, 0)
sys.stdout.write(seen.decode())
sys.exit(os.waitstatus_to_exitcode(status))
"#;

#[test]
fn on_a_terminal_the_password_is_asked_twice_without_echo() {
    let password = "s3cret-Pw_ä";
    let out = Command::new("python3")
        .args(["-c", DRIVER, env!("CARGO_BIN_EXE_pushprox-proxy"), password])
        .output()
        .expect("this test needs python3");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "status {:?}; terminal: {shown:?}; driver: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        shown.contains("Password for prom: ") && shown.contains("Type it again: "),
        "{shown:?}"
    );
    assert!(
        !shown.contains(password),
        "the password was echoed: {shown:?}"
    );
    let line = shown
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .find(|l| l.starts_with("prom:$2y$10$"))
        .unwrap_or_else(|| panic!("no bcrypt line: {shown:?}"));
    let hash = &line["prom:".len()..];
    assert_eq!(bcrypt::verify(password, hash).ok(), Some(true), "{line}");
}
