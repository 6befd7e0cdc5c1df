//! Tiny targets and servers on loopback: [`Target`] names itself in every body (so cross-talk
//! shows), [`FakeTarget`] answers fixed bytes and reports the heads it got, [`Server`] runs a
//! test's own handler per connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime};

use crate::http::{Reply, WAIT};

/// How a target answers.
#[derive(Clone)]
pub enum Answer {
    /// `200`, body `target=IP:PORT path=PATH n=COUNT\n`: names itself and the request.
    Echo,
    /// `200` with these headers and body; `chunks` set means `Transfer-Encoding: chunked` in
    /// pieces of these sizes (and no `Content-Length`), otherwise `Content-Length`.
    Bytes {
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        chunks: Option<Vec<usize>>,
    },
    /// Reads the request, sleeps this long, then answers as [`Answer::Echo`].
    Stall(Duration),
}

/// `127.0.0.N` for the `n`-th distinct loopback "host".
pub fn host(n: u8) -> String {
    format!("127.0.0.{n}")
}

/// A tiny HTTP server on `IP:free port`, one thread per connection, closing each connection
/// after its answer.
pub struct Target {
    pub ip: String,
    pub port: u16,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    events: Events,
}

/// What a target saw, with UTC times of day as in the binaries' logs, for failure messages.
type Events = Arc<Mutex<Vec<String>>>;

fn note(events: &Events, what: String) {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let (s, micros) = (now.as_secs() % 86_400, now.subsec_micros());
    let line = format!(
        "{:02}:{:02}:{:02}.{micros:06} {what}",
        s / 3600,
        s / 60 % 60,
        s % 60
    );
    events.lock().unwrap_or_else(|p| p.into_inner()).push(line);
}

impl Target {
    /// Starts a target on `ip` (a 127.0.0.0/8 address).
    pub fn start(ip: &str, answer: Answer) -> Target {
        assert!(ip.starts_with("127."), "targets are loopback only: {ip}");
        let listener = TcpListener::bind((ip, 0))
            .unwrap_or_else(|e| panic!("cannot bind a target on {ip}: {e}"));
        let port = listener.local_addr().expect("target address").port();
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let events = Events::default();
        let (h, s, e, name) = (
            hits.clone(),
            stop.clone(),
            events.clone(),
            format!("{ip}:{port}"),
        );
        thread::Builder::new()
            .name(format!("target-{name}"))
            .spawn(move || {
                for conn in listener.incoming() {
                    if s.load(Ordering::SeqCst) {
                        return;
                    }
                    let conn = match conn {
                        Ok(c) => c,
                        Err(err) => {
                            note(&e, format!("accept failed: {err}"));
                            continue;
                        }
                    };
                    let (h, e, answer, name) = (h.clone(), e.clone(), answer.clone(), name.clone());
                    let _ = thread::Builder::new()
                        .name("target-conn".into())
                        .stack_size(128 * 1024)
                        .spawn(move || serve_target(conn, &name, &h, &e, &answer));
                }
            })
            .expect("cannot start a target thread");
        Target {
            ip: ip.to_string(),
            port,
            hits,
            stop,
            events,
        }
    }

    /// An [`Answer::Echo`] target on each of `127.0.0.N` for N in `hosts`.
    pub fn echoes(hosts: RangeInclusive<u8>) -> Vec<Target> {
        hosts
            .map(|n| Target::start(&host(n), Answer::Echo))
            .collect()
    }

    /// `reply` when it is a 200 whose body starts with [`Target::echo_prefix`] of `path`;
    /// otherwise what scrape `i` of this target got, for a failure message.
    pub fn echoed(
        &self,
        i: usize,
        path: &str,
        reply: Result<Reply, String>,
    ) -> Result<Reply, String> {
        match reply {
            Ok(r) if r.status == 200 && r.text().starts_with(&self.echo_prefix(path)) => Ok(r),
            Ok(r) => Err(format!(
                "scrape {i} of {}: {} {:?}",
                self.url(path),
                r.status,
                r.text()
            )),
            Err(e) => Err(format!("scrape {i} of {}: {e}", self.url(path))),
        }
    }

    /// What it saw, one line per event, for failure messages.
    pub fn events(&self) -> String {
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        format!(
            "--- target {}:{} ---\n{}\n",
            self.ip,
            self.port,
            events.join("\n")
        )
    }

    /// `http://IP:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.ip, self.port)
    }

    /// The body [`Answer::Echo`] starts with for `path` (the count follows).
    pub fn echo_prefix(&self, path: &str) -> String {
        format!("target={}:{} path={path} n=", self.ip, self.port)
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(
            &SocketAddr::new(self.ip.parse().expect("ip"), self.port),
            Duration::from_secs(1),
        );
    }
}

fn serve_target(conn: TcpStream, name: &str, hits: &AtomicUsize, events: &Events, answer: &Answer) {
    let peer = conn
        .peer_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    note(events, format!("accepted from {peer}"));
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) => return note(events, format!("{peer} closed before a request")),
        Err(e) => return note(events, format!("{peer} reading the request line: {e}")),
        Ok(_) => {}
    }
    let path = line.split(' ').nth(1).unwrap_or("").to_string();
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) => return note(events, format!("{peer} closed within the head of {path}")),
            Err(e) => return note(events, format!("{peer} reading the head of {path}: {e}")),
            Ok(_) if header.trim_end().is_empty() => break,
            Ok(_) => {}
        }
    }
    let n = hits.fetch_add(1, Ordering::SeqCst) + 1;
    note(events, format!("{peer} asked for {path} (request {n})"));
    let echo = || {
        let body = format!("target={name} path={path} n={n}\n");
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    let bytes = match answer {
        Answer::Echo => echo(),
        Answer::Stall(d) => {
            thread::sleep(*d);
            echo()
        }
        Answer::Bytes {
            headers,
            body,
            chunks,
        } => {
            let mut out = b"HTTP/1.1 200 OK\r\n".to_vec();
            for (n, v) in headers {
                out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
            }
            match chunks {
                None => {
                    out.extend_from_slice(
                        format!(
                            "Content-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    );
                    out.extend_from_slice(body);
                }
                Some(sizes) => {
                    out.extend_from_slice(
                        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
                    );
                    let mut rest = &body[..];
                    for size in sizes.iter().copied().chain(std::iter::repeat(4096)) {
                        if rest.is_empty() {
                            break;
                        }
                        let (chunk, after) = rest.split_at(size.min(rest.len()));
                        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                        out.extend_from_slice(chunk);
                        out.extend_from_slice(b"\r\n");
                        rest = after;
                    }
                    out.extend_from_slice(b"0\r\n\r\n");
                }
            }
            out
        }
    };
    let mut conn = conn;
    match conn.write_all(&bytes).and_then(|()| conn.flush()) {
        Ok(()) => note(
            events,
            format!("{peer} answered {path} ({} bytes)", bytes.len()),
        ),
        Err(e) => note(events, format!("{peer} answering {path}: {e}")),
    }
}

/// `len` pseudo-random bytes (xorshift), the same for the same seed.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A server on a free loopback port that runs `handle` on a thread per connection, and stops
/// accepting when `stop` is set or it is dropped.
pub struct Server {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Server {
    pub fn start(
        stop: Arc<AtomicBool>,
        handle: impl Fn(TcpStream) + Send + Sync + 'static,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stopped = Arc::clone(&stop);
        let handle = Arc::new(handle);
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let handle = Arc::clone(&handle);
                thread::spawn(move || handle(conn));
            }
        });
        Server { addr, stop }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Reads a request head byte by byte up to its blank line; `None` if the peer stops first.
pub fn read_head(conn: &mut impl Read) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(head)
}

/// Answers every connection with the same bytes, optionally after a delay, and reports the
/// request heads it got.
pub struct FakeTarget {
    server: Server,
    requests: Receiver<String>,
}

impl FakeTarget {
    pub fn start(response: Vec<u8>, delay: Duration) -> FakeTarget {
        let (tx, requests) = mpsc::channel();
        let response = Arc::new(response);
        let server = Server::start(Arc::new(AtomicBool::new(false)), move |mut conn| {
            let _ = conn.set_read_timeout(Some(WAIT));
            let Some(head) = read_head(&mut conn) else {
                return;
            };
            let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
            thread::sleep(delay);
            let _ = conn.write_all(&response);
        });
        FakeTarget { server, requests }
    }

    pub fn url(&self) -> String {
        format!("http://{}/metrics", self.server.addr)
    }

    pub fn next_request(&self) -> String {
        self.requests
            .recv_timeout(WAIT)
            .expect("the target got no request in time")
    }
}
