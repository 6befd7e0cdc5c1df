//! `--hash-password USER`. The password it hashes: from a pipe, all of standard input (one
//! trailing newline removed), as before; on a terminal, typed twice after a prompt on standard
//! error, without echo, as `htpasswd` asks for it.

use std::io::{self, BufRead, Read, Write};
use std::process::ExitCode;

/// `--hash-password USER`: reads the password from stdin (a prompt without echo on a
/// terminal), prints the users-file line (bcrypt, cost 10).
pub fn hash_password(user: &str) -> ExitCode {
    if user.is_empty() || user.contains(':') {
        eprintln!("--hash-password: the user name must be non-empty and contain no ':'");
        return ExitCode::from(2);
    }
    let password = match read(user) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("--hash-password: cannot read the password from standard input: {e}");
            return ExitCode::from(1);
        }
    };
    if password.is_empty() {
        eprintln!("--hash-password: the password read from standard input is empty");
        return ExitCode::from(2);
    }
    match crate::auth::users::bcrypt_line(user, &password) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("--hash-password: cannot hash the password: {e}");
            ExitCode::from(1)
        }
    }
}

/// Reads the password for `user`.
fn read(user: &str) -> io::Result<String> {
    // SAFETY: isatty only inspects the descriptor.
    if unsafe { libc::isatty(libc::STDIN_FILENO) } != 1 {
        let mut input = String::new();
        io::stdin().read_to_string(&mut input)?;
        return Ok(without_newline(&input).to_string());
    }
    let first = prompt(&format!("Password for {user}: "))?;
    let again = prompt("Type it again: ")?;
    if first != again {
        return Err(io::Error::other("the two passwords typed differ"));
    }
    Ok(first)
}

fn without_newline(text: &str) -> &str {
    text.strip_suffix('\n')
        .map(|p| p.strip_suffix('\r').unwrap_or(p))
        .unwrap_or(text)
}

/// Shows `text` on standard error and reads one line from the terminal with echo off. Echo
/// goes off before the prompt shows: whoever types (or pastes) as soon as they see it is not
/// echoed.
fn prompt(text: &str) -> io::Result<String> {
    // SAFETY: termios is plain data; tcgetattr fills it for the terminal on descriptor 0.
    let mut term: libc::termios = unsafe { std::mem::zeroed() };
    if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut term) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let saved = term;
    term.c_lflag &= !libc::ECHO;
    // SAFETY: sets the attributes just read, with echo off, on the same descriptor.
    if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &term) } != 0 {
        return Err(io::Error::last_os_error());
    }
    eprint!("{text}");
    let _ = io::stderr().flush();
    let mut line = String::new();
    let read = io::stdin().lock().read_line(&mut line);
    // SAFETY: restores what tcgetattr returned, whatever the read did.
    unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &saved) };
    eprintln!();
    read?;
    Ok(without_newline(&line).to_string())
}
