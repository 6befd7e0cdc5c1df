//! `bench target`: the targets the clients scrape.

use super::*;

pub(crate) fn write_body(path: &str) -> Result<(), Fail> {
    std::fs::write(path, small_body()).map_err(|e| format!("cannot write {path}: {e}"))
}

pub(crate) fn target(hosts: &Hosts, lifetime: Duration) -> Result<(), Fail> {
    let addrs = hosts.targets()?;
    let mut small = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {SMALL_LEN}\r\n\r\n"
    )
    .into_bytes();
    small.extend_from_slice(&small_body());
    let small: Arc<[u8]> = small.into();
    for addr in &addrs {
        let listener =
            TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let small = small.clone();
        thread::Builder::new()
            .name("target-accept".into())
            .stack_size(STACK)
            .spawn(move || accept_loop(listener, small))
            .map_err(|e| format!("cannot start a thread: {e}"))?;
    }
    println!("target ready addresses={} first={}", addrs.len(), addrs[0]);
    let _ = io::stdout().flush();
    // Lives until killed, or at most --seconds.
    thread::sleep(lifetime);
    Ok(())
}

pub(crate) fn accept_loop(listener: TcpListener, small: Arc<[u8]>) {
    for conn in listener.incoming() {
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                eprintln!("bench target: accept failed: {e}");
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let small = small.clone();
        let spawned = thread::Builder::new()
            .name("target-conn".into())
            .stack_size(STACK)
            .spawn(move || {
                if let Err(e) = serve_target(conn, &small) {
                    if !matches!(
                        e.kind(),
                        io::ErrorKind::UnexpectedEof
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::BrokenPipe
                    ) {
                        eprintln!("bench target: connection failed: {e}");
                    }
                }
            });
        if let Err(e) = spawned {
            eprintln!("bench target: cannot start a connection thread: {e}");
        }
    }
}

/// Answers keep-alive requests on one connection until the peer closes it.
pub(crate) fn serve_target(conn: TcpStream, small: &[u8]) -> io::Result<()> {
    conn.set_nodelay(true)?;
    conn.set_read_timeout(Some(Duration::from_secs(300)))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::with_capacity(8 * 1024, conn.try_clone()?);
    let mut writer = conn;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split(' ');
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let mut close = line.trim_end().ends_with("HTTP/1.0");
        // Headers: only Connection and a (never expected) body length matter.
        let mut body_len = 0u64;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let h = line.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((name, value)) = h.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("connection") {
                    close = value.eq_ignore_ascii_case("close");
                } else if name.eq_ignore_ascii_case("content-length") {
                    body_len = value.parse().unwrap_or(0);
                }
            }
        }
        io::copy(&mut (&mut reader).take(body_len), &mut io::sink())?;
        // Absolute form (a scraper that talks to us as if we were a proxy) or origin form.
        let path = match target.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
            None => target.as_str(),
        };
        if method != "GET" && method != "HEAD" {
            writer.write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")?;
        } else if path == "/20k" {
            let n = if method == "HEAD" {
                small.len() - SMALL_LEN
            } else {
                small.len()
            };
            writer.write_all(&small[..n])?;
        } else if let Some(n) = path
            .strip_prefix("/big/")
            .and_then(|n| n.parse::<u64>().ok())
        {
            write!(
                writer,
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {n}\r\n\r\n"
            )?;
            if method == "GET" {
                let mut buf = vec![0u8; 64 * 1024];
                let mut sent = 0u64;
                while sent < n {
                    let k = buf.len().min((n - sent) as usize);
                    stream_at(sent, &mut buf[..k]);
                    writer.write_all(&buf[..k])?;
                    sent += k as u64;
                }
            }
        } else {
            writer.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\nnot found\n")?;
        }
        if close {
            return Ok(());
        }
    }
}
