//! What the client's integration tests share: the bound of every wait, free ports, the real
//! proxy binary, child processes killed on drop, tiny loopback servers that stop on drop, a
//! fake target, readers of HTTP request heads, a raw request, and the openssl command.

use std::ffi::OsStr;
use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use pushprox_protocol::{BodyReader, Framing, HeadLimits, Headers};

/// Upper bound of every wait in these tests.
pub const WAIT: Duration = Duration::from_secs(10);

/// A port that was free on 127.0.0.1 a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// Polls `cond` every 25 ms until it holds or [`WAIT`] passed; true when it held.
pub fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + WAIT;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        thread::sleep(Duration::from_millis(25));
    }
}

/// The proxy binary next to the client binary.
pub fn proxy_binary() -> PathBuf {
    let client = Path::new(env!("CARGO_BIN_EXE_pushprox-client"));
    let proxy = client.with_file_name(format!("pushprox-proxy{}", std::env::consts::EXE_SUFFIX));
    assert!(
        proxy.is_file(),
        "the proxy binary {} is missing: these tests start the real proxy; run `cargo build --workspace` first",
        proxy.display()
    );
    proxy
}

/// A command for `program` that ignores the proxy variables of the environment (the tests talk
/// to loopback directly), with stdin and stdout null; the caller sets stderr.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(program);
    command
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    command
}

/// A child process killed on drop.
pub struct ChildGuard(pub Child);

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

pub struct RequestHead {
    pub method: String,
    pub path: String,
    pub headers: Headers,
    pub framing: Framing,
}

/// The request line and header fields of the next request on `r` (read by the codec's head
/// reader, as the proxy reads them); `None` at its end.
pub fn read_request_head(r: &mut impl BufRead) -> Option<RequestHead> {
    let head = pushprox_protocol::read_request(r, HeadLimits::bytes(64 * 1024)).ok()?;
    Some(RequestHead {
        method: head.method,
        path: head.target,
        headers: head.headers,
        framing: head.framing,
    })
}

/// The next request on `r`, head and body (framed as its head says); `None` at the end of the
/// connection or when the body breaks off.
pub fn read_request(r: &mut impl BufRead) -> Option<(RequestHead, Vec<u8>)> {
    let head = read_request_head(r)?;
    let mut body = Vec::new();
    BodyReader::new(r, head.framing, None)
        .read_to_end(&mut body)
        .ok()?;
    Some((head, body))
}

/// A GET of `path` over HTTP/1.0; the whole answer.
pub fn http_get(addr: &str, path: &str) -> String {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(WAIT)).unwrap();
    write!(conn, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut out = String::new();
    conn.read_to_string(&mut out).unwrap();
    out
}

/// Sends `text` on a fresh connection and reads until the peer closes (at most [`WAIT`]).
pub fn request(port: u16, text: &str) -> Vec<u8> {
    let Ok(mut conn) = TcpStream::connect(("127.0.0.1", port)) else {
        return Vec::new();
    };
    let _ = conn.set_read_timeout(Some(WAIT));
    let _ = conn.write_all(text.as_bytes());
    let mut out = Vec::new();
    let _ = conn.read_to_end(&mut out);
    out
}

/// Runs openssl in `dir`; fails the test, with what to install, if openssl is missing or fails.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("this test needs the openssl command (apt-get install openssl): {e}")
        });
    assert!(
        out.status.success(),
        "`openssl {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The flags every test client gets: `proxy_url`, FQDN 127.0.0.1, any free metrics port and
/// `log_level`.
pub fn client_args<'a>(proxy_url: &'a str, log_level: &'a str) -> Vec<&'a str> {
    vec![
        "--proxy-url",
        proxy_url,
        "--fqdn",
        "127.0.0.1",
        "--metrics-addr",
        "127.0.0.1:0",
        "--log.level",
        log_level,
    ]
}

/// A raw HTTP/1.1 response with `fields` (header lines, each ending in `\r\n`) before its
/// Content-Length.
pub fn raw_response(status: u16, fields: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\n{fields}Content-Length: {}\r\n\r\n",
        pushprox_protocol::reason_phrase(status),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}
