//! An ordered header list with case-insensitive lookup, and the head-line reader both
//! directions share.

use std::io::BufRead;

use crate::error::{quoted, ProtocolError};

/// Header fields in the order they arrived; names compare case-insensitively.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// An empty list.
    pub fn new() -> Self {
        Headers(Vec::new())
    }

    /// The first value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All values of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Adds a field, keeping any existing ones of the same name.
    pub fn append(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((name.into(), value.into()));
    }

    /// Replaces every field of `name` with one field.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.remove(name);
        self.0.push((name.to_string(), value.into()));
    }

    /// Removes every field of `name`; returns the first removed value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let mut first = None;
        self.0.retain_mut(|(n, v)| {
            if n.eq_ignore_ascii_case(name) {
                if first.is_none() {
                    first = Some(std::mem::take(v));
                }
                false
            } else {
                true
            }
        });
        first
    }

    /// Every field, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no fields.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses `Name: value` lines up to the empty line; `first` is the first header line, if the
    /// caller already read it. `budget` counts down the bytes the head may still use.
    pub(crate) fn read_from<R: BufRead>(
        r: &mut R,
        budget: &mut usize,
        limit: usize,
        context: &'static str,
    ) -> Result<Headers, ProtocolError> {
        let mut headers = Headers::new();
        loop {
            let line = read_head_line(r, budget, limit, context)?;
            if line.is_empty() {
                return Ok(headers);
            }
            if line[0] == b' ' || line[0] == b'\t' {
                // Obsolete line folding (RFC 7230 3.2.4): refuse rather than guess.
                return Err(ProtocolError::MalformedHeader(quoted(&line)));
            }
            let colon = line
                .iter()
                .position(|&b| b == b':')
                .ok_or_else(|| ProtocolError::MalformedHeader(quoted(&line)))?;
            let name = &line[..colon];
            if name.is_empty() || !name.iter().all(|&b| is_token_byte(b)) {
                return Err(ProtocolError::MalformedHeader(quoted(&line)));
            }
            let value = trim_ows(&line[colon + 1..]);
            if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                return Err(ProtocolError::MalformedHeader(quoted(&line)));
            }
            // Header values are ASCII in practice; keep anything else byte-exact as Latin-1
            // would be lossy, so refuse non-UTF-8 instead of mangling it.
            let value = std::str::from_utf8(value)
                .map_err(|_| ProtocolError::MalformedHeader(quoted(&line)))?;
            let name = std::str::from_utf8(name).expect("token bytes are ASCII");
            headers.append(name, value);
        }
    }

    /// Writes `Name: value\r\n` for every field that a reader would read back as the same one
    /// field: a name that is not a token, or a value with CR, LF or another control character
    /// (a way to smuggle header lines), is never written.
    pub(crate) fn write_to(&self, out: &mut Vec<u8>) {
        for (n, v) in &self.0 {
            let name_ok = !n.is_empty() && n.bytes().all(is_token_byte);
            let value_ok = v.bytes().all(|b| b == b'\t' || (b >= b' ' && b != 0x7f));
            if !name_ok || !value_ok {
                continue;
            }
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// RFC 7230 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Reads one line of a message head without its CRLF (a bare LF is accepted too), charging it
/// against `budget`.
pub(crate) fn read_head_line<R: BufRead>(
    r: &mut R,
    budget: &mut usize,
    limit: usize,
    context: &'static str,
) -> Result<Vec<u8>, ProtocolError> {
    let mut line = Vec::new();
    loop {
        let buf = r.fill_buf().map_err(ProtocolError::Io)?;
        if buf.is_empty() {
            // A partial line at the end is returned as a line, so the caller can say what it
            // got ("garbage") rather than only that the stream ended.
            if line.is_empty() {
                return Err(ProtocolError::UnexpectedEof { context });
            }
            return Ok(line);
        }
        let (take, done) = match memchr_newline(buf) {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if take > *budget {
            return Err(ProtocolError::HeadTooLarge { limit });
        }
        *budget -= take;
        line.extend_from_slice(&buf[..take]);
        r.consume(take);
        if done {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(line);
        }
    }
}

fn memchr_newline(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_case_insensitive_and_ordered() {
        let mut h = Headers::new();
        h.append("Content-Type", "a");
        h.append("content-type", "b");
        h.append("Id", "x");
        assert_eq!(h.get("CONTENT-TYPE"), Some("a"));
        assert_eq!(h.get_all("content-type").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(h.remove("content-TYPE").as_deref(), Some("a"));
        assert_eq!(h.len(), 1);
        h.set("id", "y");
        assert_eq!(h.get("Id"), Some("y"));
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn head_lines_are_bounded() {
        let mut input: &[u8] = b"X-A: 1\r\nX-B: 22222222222222\r\n\r\n";
        let mut budget = 12;
        let err = Headers::read_from(&mut input, &mut budget, 12, "test").unwrap_err();
        assert!(
            matches!(err, ProtocolError::HeadTooLarge { limit: 12 }),
            "{err}"
        );
    }

    #[test]
    fn header_without_colon_is_refused() {
        let mut input: &[u8] = b"garbage\r\n\r\n";
        let mut budget = 100;
        let err = Headers::read_from(&mut input, &mut budget, 100, "test").unwrap_err();
        assert!(err.to_string().contains("garbage"), "{err}");
    }

    #[test]
    fn writer_never_writes_a_field_that_reads_back_as_another() {
        let mut h = Headers::new();
        h.append("X-Ok", "a\tb c");
        h.append("X-Smuggle", "1\nId: 5");
        h.append("X-Cr", "1\rId: 5");
        h.append("X-Nul", "a\0b");
        h.append("Bad Name", "x");
        h.append("X-Last", "z");
        let mut out = Vec::new();
        h.write_to(&mut out);
        assert_eq!(out, b"X-Ok: a\tb c\r\nX-Last: z\r\n");
    }
}
