//! `GET /clients`: the live clients as Prometheus file_sd / http_sd target groups, written
//! as a stream, one client at a time: the answer is never held whole, so its size (up to
//! `--registration.max-clients` × `--registration.max-label-bytes`) costs the proxy no memory.

use std::io::{self, BufReader, Read};

use crate::discovery::write_groups;
use crate::http::{After, Connection};
use crate::registry::ClientInfo;
use crate::state::State;

/// Writes the target groups: a client that announces exporters (`--sd.target`) gives one group
/// per port, `fqdn:port` with its labels; any other gives its FQDN with its labels (`{}` for a
/// Go client, where Go wrote `null`: both valid for Prometheus).
pub fn handle(state: &State, conn: Connection) -> After {
    let live = state.rendezvous.clients();
    let mut groups = Groups::new(live);
    let peer = conn.peer();
    let (after, relay) = conn.respond_stream(
        200,
        &[("Content-Type", "application/json")],
        None,
        &mut BufReader::new(&mut groups),
    );
    if let Some(e) = relay.sink_error {
        log::debug!("GET /clients from={peer} ended early: {e}");
    }
    after
}

/// The JSON array of every client's target groups, produced a client at a time.
struct Groups {
    clients: std::vec::IntoIter<ClientInfo>,
    /// Bytes produced and not read yet: `buf[pos..]`.
    buf: Vec<u8>,
    pos: usize,
    /// Whether a group has been written (a comma goes before the next).
    any: bool,
    done: bool,
}

impl Groups {
    fn new(clients: Vec<ClientInfo>) -> Groups {
        Groups {
            clients: clients.into_iter(),
            buf: b"[".to_vec(),
            pos: 0,
            any: false,
            done: false,
        }
    }

    /// Puts the next client's groups (or the closing bracket) in the buffer; false at the end.
    fn refill(&mut self) -> io::Result<bool> {
        self.buf.clear();
        self.pos = 0;
        match self.clients.next() {
            Some(client) => {
                if self.any {
                    self.buf.push(b',');
                }
                self.any = true;
                write_groups(&mut self.buf, &client.fqdn, &client.announced)?;
            }
            None if !self.done => {
                self.buf.extend_from_slice(b"]\n");
                self.done = true;
            }
            None => return Ok(false),
        }
        Ok(true)
    }
}

impl Read for Groups {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            if !self.refill()? {
                return Ok(0);
            }
        }
        let n = (self.buf.len() - self.pos).min(out.len());
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::Announcement;
    use crate::registry::Registry;
    use std::time::Duration;

    fn json(registry: &Registry, read_size: usize) -> String {
        let mut groups = Groups::new(registry.live(|_| true));
        let mut out = Vec::new();
        let mut buf = vec![0u8; read_size];
        loop {
            let n = groups.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_stream_is_the_whole_json_array_whatever_the_read_size() {
        let registry = Registry::new(Duration::from_secs(60), 10);
        assert_eq!(json(&registry, 1), "[]\n");
        let labels = [("env".to_string(), "prod".to_string())]
            .into_iter()
            .collect();
        let a = Announcement {
            labels,
            targets: Vec::new(),
        };
        registry.poll_started("b", "b.example", a).unwrap();
        registry
            .poll_started("a", "a.example", Announcement::default())
            .unwrap();
        let want = r#"[{"targets":["a.example"],"labels":{}},{"targets":["b.example"],"labels":{"env":"prod"}}]"#
            .to_string()
            + "\n";
        for size in [1, 3, 7, 16 * 1024] {
            assert_eq!(json(&registry, size), want, "read size {size}");
        }
    }
}
