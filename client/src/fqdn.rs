//! The default FQDN: this host's fully qualified name, as `hostname -f` gives it.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `hostname -f` may wait on DNS; never wait longer than this for it.
const HOSTNAME_COMMAND_DEADLINE: Duration = Duration::from_secs(3);

/// The kernel's host name; if it has no dot, the canonical name of its `/etc/hosts` line; then
/// `hostname -f`; else the short name.
pub fn default_fqdn() -> String {
    let short = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| run_hostname(&[]))
        .unwrap_or_else(|| "localhost".to_string());
    let full = Some(short.clone())
        .filter(|s| s.contains('.'))
        .or_else(|| {
            let hosts = std::fs::read_to_string("/etc/hosts").ok()?;
            fqdn_from_hosts(&hosts, &short)
        })
        .or_else(|| run_hostname(&["-f"]).filter(|n| n.contains('.')));
    full.unwrap_or(short).to_ascii_lowercase()
}

/// The canonical (first) name of the `/etc/hosts` line that lists `short`, when it has a dot:
/// what the resolver, and so `hostname -f`, answers.
pub fn fqdn_from_hosts(hosts: &str, short: &str) -> Option<String> {
    let canonical = hosts.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("");
        // The address, then its names.
        let names: Vec<&str> = line.split_whitespace().skip(1).collect();
        names
            .iter()
            .any(|n| n.eq_ignore_ascii_case(short))
            .then(|| names[0])
    })?;
    canonical.contains('.').then(|| canonical.to_string())
}

/// Runs `hostname` with `args`, waiting at most [`HOSTNAME_COMMAND_DEADLINE`].
fn run_hostname(args: &[&str]) -> Option<String> {
    let mut child = Command::new("hostname")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => break,
            Ok(Some(_)) | Err(_) => return None,
            Ok(None) if started.elapsed() > HOSTNAME_COMMAND_DEADLINE => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let mut out = String::new();
    child.stdout.take()?.read_to_string(&mut out).ok()?;
    let name = out.trim();
    (!name.is_empty() && !name.contains(char::is_whitespace)).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTS: &str = "\
# The following lines are desirable for IPv4 capable hosts
127.0.0.1   localhost localhost.localdomain
127.0.1.1\tnode1.example.com   node1   # set by the installer
10.0.0.7    db7
::1         localhost ip6-localhost ip6-loopback
";

    #[test]
    fn canonical_name_of_the_line_that_lists_the_short_name() {
        assert_eq!(
            fqdn_from_hosts(HOSTS, "node1").as_deref(),
            Some("node1.example.com")
        );
        assert_eq!(
            fqdn_from_hosts(HOSTS, "NODE1").as_deref(),
            Some("node1.example.com")
        );
    }

    #[test]
    fn no_dotted_canonical_name_means_none() {
        assert_eq!(fqdn_from_hosts(HOSTS, "db7"), None);
        assert_eq!(fqdn_from_hosts(HOSTS, "unknown"), None);
        assert_eq!(fqdn_from_hosts("", "node1"), None);
        // A name that only appears in a comment does not count.
        assert_eq!(fqdn_from_hosts("10.0.0.1 a.b # node1\n", "node1"), None);
    }

    #[test]
    fn default_is_never_empty() {
        assert!(!default_fqdn().is_empty());
    }
}
