//! Bodies as their head's [`Framing`] says: `Content-Length`, `chunked` and read-to-end, with a
//! size limit; and the chunked encoder.

use std::io::{self, BufRead, Read};

use crate::error::{quoted, ProtocolError};
use crate::head::{self, Framing};

/// Largest chunk-size line we accept (size, extensions and CRLF).
const MAX_CHUNK_LINE: usize = 1024;
/// Largest trailer section we accept after the last chunk.
const MAX_TRAILERS: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Bytes left in a length-framed body, or in the current chunk.
    Remaining(u64),
    /// Expecting a chunk-size line.
    ChunkHeader,
    /// Expecting the CRLF after a chunk's data.
    ChunkEnd,
    /// Reading to EOF.
    Eof,
    Done,
}

/// Reads a body with the given framing from the bytes after the head, and stops at its end.
///
/// Errors of the framing come out as `io::Error`s carrying a [`ProtocolError`]
/// (`ProtocolError::from(io_error)` recovers it).
pub struct BodyReader<R> {
    inner: R,
    chunked: bool,
    state: State,
    limit: Option<u64>,
    read: u64,
}

impl<R: BufRead> BodyReader<R> {
    /// A reader of the body framed by `framing`; reading more than `limit` bytes of body
    /// (decoded) fails with [`ProtocolError::BodyTooLarge`].
    pub fn new(inner: R, framing: Framing, limit: Option<u64>) -> Self {
        let (chunked, state) = match framing {
            Framing::Length(0) => (false, State::Done),
            Framing::Length(n) => (false, State::Remaining(n)),
            Framing::Chunked => (true, State::ChunkHeader),
            Framing::UntilEof => (false, State::Eof),
        };
        BodyReader {
            inner,
            chunked,
            state,
            limit,
            read: 0,
        }
    }

    /// Bytes of body returned so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// True once the whole body has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The underlying reader, to adjust it (a deadline) while the body is read.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// The underlying reader (after the body, if it was read to its end).
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// A chunk-size line: hex digits, then extensions after a `;`, then CRLF; no spaces
    /// around the size and no bare LF, so that every reader finds the same chunks.
    fn read_chunk_header(&mut self) -> Result<(), ProtocolError> {
        let size = head::read_line(&mut self.inner, MAX_CHUNK_LINE, "chunked body", |line| {
            let size_text = line.split(|&b| b == b';').next().unwrap_or(&[]);
            std::str::from_utf8(size_text)
                .ok()
                .filter(|t| t.len() <= 15 && t.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|t| u64::from_str_radix(t, 16).ok())
                .ok_or_else(|| ProtocolError::InvalidChunk(quoted(line)))
        })?;
        if size == 0 {
            head::skip_trailers(&mut self.inner, MAX_TRAILERS)?;
            self.state = State::Done;
        } else {
            self.state = State::Remaining(size);
        }
        Ok(())
    }

    /// The CRLF after a chunk's data.
    fn read_chunk_end(&mut self) -> Result<(), ProtocolError> {
        let extra = head::read_line(&mut self.inner, 2, "chunked body", |line| {
            Ok((!line.is_empty()).then(|| quoted(line)))
        })
        .map_err(|e| match e {
            ProtocolError::InvalidChunk(_) => {
                ProtocolError::InvalidChunk("chunk data longer than its size".into())
            }
            other => other,
        })?;
        if let Some(extra) = extra {
            return Err(ProtocolError::InvalidChunk(extra));
        }
        self.state = State::ChunkHeader;
        Ok(())
    }
}

impl<R: BufRead> Read for BodyReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// The body's bytes straight from the inner reader's buffer, without a copy: a relay writes
/// them on as they are.
impl<R: BufRead> BufRead for BodyReader<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        loop {
            match self.state {
                State::Done => return Ok(&[]),
                State::ChunkHeader => self.read_chunk_header()?,
                State::ChunkEnd => self.read_chunk_end()?,
                State::Eof | State::Remaining(_) => break,
            }
        }
        let allowed = self.limit.map_or(u64::MAX, |l| l.saturating_sub(self.read));
        let available = self.inner.fill_buf()?;
        let left = match self.state {
            State::Remaining(left) => left,
            _ => u64::MAX,
        };
        if available.is_empty() {
            if self.state == State::Eof {
                self.state = State::Done;
                return Ok(&[]);
            }
            return Err(ProtocolError::UnexpectedEof {
                context: if self.chunked { "chunked body" } else { "body" },
            }
            .into());
        }
        if allowed == 0 {
            let limit = self.limit.unwrap_or_default();
            return Err(ProtocolError::BodyTooLarge { limit }.into());
        }
        let n =
            usize::try_from(left.min(allowed)).map_or(available.len(), |m| m.min(available.len()));
        Ok(&available[..n])
    }

    fn consume(&mut self, n: usize) {
        self.inner.consume(n);
        self.read += n as u64;
        if let State::Remaining(left) = self.state {
            let left = left.saturating_sub(n as u64);
            self.state = match (left, self.chunked) {
                (0, true) => State::ChunkEnd,
                (0, false) => State::Done,
                (left, _) => State::Remaining(left),
            };
        }
    }
}

/// Reads a whole body into memory, at most `limit` bytes.
pub fn read_body<R: BufRead>(
    inner: R,
    framing: Framing,
    limit: Option<u64>,
) -> Result<Vec<u8>, ProtocolError> {
    let mut body = Vec::new();
    BodyReader::new(inner, framing, limit).read_to_end(&mut body)?;
    Ok(body)
}

/// Room for the size line of any chunk: 16 hex digits and CRLF.
pub const CHUNK_LINE: usize = 18;

/// The last chunk of a chunked body, without trailers, and the body's end.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// The size line of a chunk of `n` bytes (`1f40\r\n`), made in `buf` without an allocation:
/// what [`ChunkedEncoder`] writes, and a relay writing the data of a chunk as it is.
pub fn chunk_size_line(n: usize, buf: &mut [u8; CHUNK_LINE]) -> &[u8] {
    let mut at = CHUNK_LINE - 2;
    buf[at..].copy_from_slice(b"\r\n");
    let mut n = n;
    loop {
        at -= 1;
        buf[at] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// Size of the chunks a [`ChunkedEncoder`] produces: large enough to keep the framing
/// overhead negligible, small enough that streaming a body needs little memory.
const ENCODER_CHUNK: usize = 32 * 1024;

/// A reader that yields its inner reader's bytes in chunked encoding, ending with the
/// zero-size last chunk: it lets a body of unknown length be streamed, never buffered whole.
///
/// Each `read` of the inner reader becomes one chunk of at most 32 KiB. Errors of the inner
/// reader are passed through unchanged; an encoder that failed should not be read again.
pub struct ChunkedEncoder<R: Read> {
    inner: R,
    /// Encoded bytes not yet handed out: `out[pos..]`.
    out: Vec<u8>,
    pos: usize,
    /// The last chunk has been produced.
    finished: bool,
}

impl<R: Read> ChunkedEncoder<R> {
    /// Encodes the bytes of `inner`.
    pub fn new(inner: R) -> Self {
        ChunkedEncoder {
            inner,
            out: Vec::new(),
            pos: 0,
            finished: false,
        }
    }

    /// Reads the next chunk of the inner reader into `out`, or the last chunk at its end.
    fn refill(&mut self) -> io::Result<()> {
        // Room for the size line (at most 8 hex digits for 32 KiB, plus CRLF), data, CRLF.
        const SIZE_LINE: usize = 10;
        self.out.clear();
        self.pos = 0;
        self.out.resize(SIZE_LINE + ENCODER_CHUNK, 0);
        let n = loop {
            match self.inner.read(&mut self.out[SIZE_LINE..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.out.clear();
                    return Err(e);
                }
            }
        };
        if n == 0 {
            self.out.clear();
            self.out.extend_from_slice(LAST_CHUNK);
            self.finished = true;
            return Ok(());
        }
        let mut line = [0; CHUNK_LINE];
        let size_line = chunk_size_line(n, &mut line);
        // Right-align the size line against the data so nothing has to move.
        self.pos = SIZE_LINE - size_line.len();
        self.out[self.pos..SIZE_LINE].copy_from_slice(size_line);
        self.out.truncate(SIZE_LINE + n);
        self.out.extend_from_slice(b"\r\n");
        Ok(())
    }
}

impl<R: Read> Read for ChunkedEncoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.pos >= self.out.len() {
            if self.finished {
                return Ok(0);
            }
            self.refill()?;
        }
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(bytes: &[u8], limit: Option<u64>) -> Result<Vec<u8>, ProtocolError> {
        read_body(bytes, Framing::Chunked, limit)
    }

    #[test]
    fn chunked_round_trip() {
        let out = encode_trickled(b"hello world", 6);
        assert_eq!(out, b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n");
        assert_eq!(chunked(&out, None).unwrap(), b"hello world");
    }

    /// A body read through `fill_buf`/`consume`, as a relay reads it.
    fn by_buffer(bytes: &[u8], framing: Framing, limit: Option<u64>) -> io::Result<Vec<u8>> {
        let mut reader = BodyReader::new(io::BufReader::with_capacity(7, bytes), framing, limit);
        let mut out = Vec::new();
        for _ in 0..1000 {
            let got = reader.fill_buf()?;
            if got.is_empty() {
                assert!(reader.is_done());
                return Ok(out);
            }
            let n = got.len().min(5);
            out.extend_from_slice(&got[..n]);
            reader.consume(n);
        }
        panic!("the body did not end");
    }

    #[test]
    fn buffered_reads_see_the_same_body_and_limits_as_reads() {
        let coded = b"6\r\nhello \r\n5;x=1\r\nworld\r\n0\r\nT: 1\r\n\r\nNEXT";
        assert_eq!(
            by_buffer(coded, Framing::Chunked, None).unwrap(),
            b"hello world"
        );
        assert_eq!(
            by_buffer(b"0123456789NEXT", Framing::Length(10), None).unwrap(),
            b"0123456789"
        );
        assert_eq!(
            by_buffer(b"0123456789", Framing::UntilEof, None).unwrap(),
            b"0123456789"
        );
        for (bytes, framing) in [
            (&coded[..], Framing::Chunked),
            (b"0123456789", Framing::Length(10)),
            (b"0123456789", Framing::UntilEof),
        ] {
            let err = ProtocolError::from(by_buffer(bytes, framing, Some(5)).unwrap_err());
            assert!(
                matches!(err, ProtocolError::BodyTooLarge { limit: 5 }),
                "{err}"
            );
            // At the limit exactly, the body is whole.
            assert_eq!(
                by_buffer(bytes, framing, Some(11)).unwrap().len(),
                framing_len(framing)
            );
        }
        let err = ProtocolError::from(by_buffer(b"01234", Framing::Length(10), None).unwrap_err());
        assert!(matches!(err, ProtocolError::UnexpectedEof { .. }), "{err}");
        let err = ProtocolError::from(
            by_buffer(b"5\r\nhelloXX\r\n0\r\n\r\n", Framing::Chunked, None).unwrap_err(),
        );
        assert!(matches!(err, ProtocolError::InvalidChunk(_)), "{err}");
    }

    fn framing_len(framing: Framing) -> usize {
        match framing {
            Framing::Chunked => 11,
            _ => 10,
        }
    }

    #[test]
    fn chunk_extensions_and_trailers_are_accepted() {
        let body = b"5;name=x\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n";
        assert_eq!(chunked(body, None).unwrap(), b"hello");
    }

    #[test]
    fn bad_chunks_are_refused() {
        for bad in [
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhelloXX\r\n0\r\n\r\n",
            b"5\r\nhel",
            b"\r\n",
            b"ffffffffffffffffffff\r\n",
            b"",
            // A bare LF, or spaces around the size: another reader may see other chunks.
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhello\r\n0\n\r\n",
            b"5\r\nhello\r\n0\r\n\n",
            b"5\r\nhello\r\n0\r\nX: 1\n\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"5\t\r\nhello\r\n0\r\n\r\n",
            b"5 ;x=y\r\nhello\r\n0\r\n\r\n",
            b"5\rX\r\nhello\r\n0\r\n\r\n",
        ] {
            assert!(
                chunked(bad, None).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn limits_apply_to_every_framing() {
        let err = read_body(&b"0123456789"[..], Framing::Length(10), Some(5)).unwrap_err();
        assert!(
            matches!(err, ProtocolError::BodyTooLarge { limit: 5 }),
            "{err}"
        );
        let err = read_body(&b"0123456789"[..], Framing::UntilEof, Some(5)).unwrap_err();
        assert!(
            matches!(err, ProtocolError::BodyTooLarge { limit: 5 }),
            "{err}"
        );
        let err = chunked(b"a\r\n0123456789\r\n0\r\n\r\n", Some(5)).unwrap_err();
        assert!(
            matches!(err, ProtocolError::BodyTooLarge { limit: 5 }),
            "{err}"
        );
        assert_eq!(
            read_body(&b"01234"[..], Framing::Length(5), Some(5)).unwrap(),
            b"01234"
        );
    }

    #[test]
    fn length_framing_stops_at_length_and_detects_truncation() {
        let mut input: &[u8] = b"abcdeREST";
        let body = read_body(&mut input, Framing::Length(5), None).unwrap();
        assert_eq!(body, b"abcde");
        assert_eq!(input, b"REST");
        let err = read_body(&b"abc"[..], Framing::Length(5), None).unwrap_err();
        assert!(matches!(err, ProtocolError::UnexpectedEof { .. }), "{err}");
    }

    /// Hands out at most `step` bytes per read, to exercise chunk boundaries.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.step).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// `data` chunked by a [`ChunkedEncoder`] reading it `step` bytes at a time.
    fn encode_trickled(data: &[u8], step: usize) -> Vec<u8> {
        let mut out = Vec::new();
        ChunkedEncoder::new(Trickle { data, step })
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn chunked_encoder_writes_exact_chunks() {
        let out = encode_trickled(b"hello world", 6);
        assert_eq!(out, b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n");

        let mut out = Vec::new();
        ChunkedEncoder::new(&b""[..]).read_to_end(&mut out).unwrap();
        assert_eq!(out, b"0\r\n\r\n");
    }

    #[test]
    fn chunked_encoder_round_trips_through_body_reader() {
        // Binary data with CRLFs and zero bytes, larger than one chunk, read through small
        // and large buffers.
        let data: Vec<u8> = (0..70_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .chain(*b"\r\n0\r\n\r\n\x1f\x8b\0")
            .collect();
        for (step, read_buf) in [
            (3, 7),
            (100, 3),
            (ENCODER_CHUNK + 5, 64 * 1024),
            (usize::MAX, 1),
        ] {
            let mut enc = ChunkedEncoder::new(Trickle { data: &data, step });
            let mut encoded = Vec::new();
            let mut buf = vec![0; read_buf];
            loop {
                let n = enc.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                encoded.extend_from_slice(&buf[..n]);
            }
            assert!(encoded.ends_with(b"0\r\n\r\n"));
            let mut rest = &encoded[..];
            let mut reader = BodyReader::new(&mut rest, Framing::Chunked, None);
            let mut decoded = Vec::new();
            reader.read_to_end(&mut decoded).unwrap();
            assert!(reader.is_done());
            assert_eq!(decoded, data, "step {step}, read buffer {read_buf}");
            assert!(rest.is_empty(), "bytes after the last chunk");
        }
    }

    #[test]
    fn chunked_encoder_passes_errors_through() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::TimedOut, "target too slow"))
            }
        }
        let err = ChunkedEncoder::new(Broken).read(&mut [0; 16]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
