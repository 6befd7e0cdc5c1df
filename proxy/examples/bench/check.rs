//! Reading a response and checking its body byte for byte.

use super::*;

/// One keep-alive connection of a scraper.
pub(crate) struct Conn {
    pub(crate) reader: BufReader<TcpStream>,
    pub(crate) writer: TcpStream,
}

impl Conn {
    pub(crate) fn open(addr: SocketAddr) -> Result<Conn, Fail> {
        let s =
            TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| connect_error(addr, &e))?;
        let setup = || -> io::Result<Conn> {
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(IO_TIMEOUT))?;
            s.set_write_timeout(Some(IO_TIMEOUT))?;
            Ok(Conn {
                reader: BufReader::with_capacity(64 * 1024, s.try_clone()?),
                writer: s,
            })
        };
        setup().map_err(|e| format!("cannot set up the connection to {addr}: {e}"))
    }
}

pub(crate) fn connect_error(addr: SocketAddr, e: &io::Error) -> Fail {
    if e.raw_os_error() == Some(24) {
        format!("cannot connect to {addr}: out of file descriptors (EMFILE); raise the limit with `ulimit -n 65536` (bench.sh does, up to the hard limit `ulimit -Hn`)")
    } else {
        format!("cannot connect to {addr}: {e}")
    }
}

/// Reads one response and feeds its body to `check` as it arrives. Returns whether the server
/// will close the connection.
pub(crate) fn read_response(
    conn: &mut Conn,
    what: &str,
    mut check: impl FnMut(u64, &[u8]) -> Result<(), Fail>,
) -> Result<bool, Fail> {
    let head = ResponseHead::parse(&mut conn.reader, DEFAULT_MAX_HEAD)
        .map_err(|e| format!("{what}: bad response head: {e}"))?;
    let framing = head
        .framing()
        .map_err(|e| format!("{what}: bad framing: {e}"))?;
    let close = head
        .headers
        .get("Connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("close"));
    let mut body = BodyReader::new(&mut conn.reader, framing, None);
    if head.status != 200 {
        let mut text = Vec::new();
        let _ = body.by_ref().take(300).read_to_end(&mut text);
        return Err(format!(
            "{what}: status {} (expected 200): {}",
            head.status,
            String::from_utf8_lossy(&text).trim_end()
        ));
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = 0u64;
    loop {
        let n = body
            .read(&mut buf)
            .map_err(|e| format!("{what}: reading the body failed after {at} bytes: {e}"))?;
        if n == 0 {
            break;
        }
        check(at, &buf[..n])?;
        at += n as u64;
    }
    check(at, &[])?;
    Ok(close)
}

/// A checker of the known 20 KiB body: every byte, and the length.
pub(crate) fn small_checker<'a>(
    expected: &'a [u8],
    what: &'a str,
) -> impl FnMut(u64, &[u8]) -> Result<(), Fail> + 'a {
    move |at, chunk| {
        let at = at as usize;
        if chunk.is_empty() {
            return if at == expected.len() {
                Ok(())
            } else {
                Err(format!(
                    "{what}: body has {at} bytes, expected {}",
                    expected.len()
                ))
            };
        }
        let end = at + chunk.len();
        if end > expected.len() {
            return Err(format!(
                "{what}: body longer than the expected {} bytes",
                expected.len()
            ));
        }
        if chunk != &expected[at..end] {
            let i = chunk
                .iter()
                .zip(&expected[at..end])
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            return Err(format!("{what}: wrong byte at offset {}", at + i));
        }
        Ok(())
    }
}
