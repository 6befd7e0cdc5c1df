//! An ordered header list with case-insensitive lookup, and its writer. Heads are read in
//! `head.rs`.

/// Header fields in the order they arrived; names compare case-insensitively.
///
/// Names and values are kept one after another in one string, so that a head of twenty
/// fields costs two allocations rather than forty: every request and every pushed response
/// goes through one of these.
#[derive(Clone, Default)]
pub struct Headers {
    /// The names and values, one after another (removed fields leave their text behind).
    text: String,
    /// Each field: its name is `text[start..mid]`, its value `text[mid..end]`.
    fields: Vec<Field>,
}

#[derive(Debug, Clone, Copy)]
struct Field {
    start: usize,
    mid: usize,
    end: usize,
}

impl Headers {
    /// An empty list.
    pub fn new() -> Self {
        Headers::default()
    }

    /// An empty list with room for `fields` fields of `bytes` bytes of names and values.
    pub fn with_capacity(fields: usize, bytes: usize) -> Self {
        Headers {
            text: String::with_capacity(bytes),
            fields: Vec::with_capacity(fields),
        }
    }

    /// The first value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// All values of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Adds a field, keeping any existing ones of the same name.
    pub fn append(&mut self, name: impl AsRef<str>, value: impl AsRef<str>) {
        let start = self.text.len();
        self.text.push_str(name.as_ref());
        let mid = self.text.len();
        self.text.push_str(value.as_ref());
        let end = self.text.len();
        self.fields.push(Field { start, mid, end });
    }

    /// Replaces every field of `name` with one field.
    pub fn set(&mut self, name: &str, value: impl AsRef<str>) {
        self.drop_all(name);
        self.append(name, value);
    }

    /// Removes every field of `name`; returns the first removed value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let first = self.get(name).map(str::to_string);
        self.drop_all(name);
        first
    }

    /// Forgets every field of `name` (their text stays until the headers are dropped).
    fn drop_all(&mut self, name: &str) {
        let text = &self.text;
        self.fields
            .retain(|f| !text[f.start..f.mid].eq_ignore_ascii_case(name));
    }

    /// Every field, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields
            .iter()
            .map(|f| (&self.text[f.start..f.mid], &self.text[f.mid..f.end]))
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// True when there are no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Writes `Name: value\r\n` for every field that a reader would read back as the same one
    /// field: a name that is not a token, or a value with CR, LF or another control character
    /// (a way to smuggle header lines), is never written.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        for (n, v) in self.iter() {
            Headers::write_field(out, n, v);
        }
    }

    /// Writes one field as `name: value` and CRLF, unless it would read back as another: a
    /// name that is not a token, or a value with a control character (CR, LF, NUL) is left
    /// out. Every head this codebase writes goes through here.
    pub fn write_field(out: &mut Vec<u8>, name: &str, value: &str) {
        let name_ok = !name.is_empty() && name.bytes().all(is_token_byte);
        let value_ok = value
            .bytes()
            .all(|b| b == b'\t' || (b >= b' ' && b != 0x7f));
        if name_ok && value_ok {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

impl PartialEq for Headers {
    /// The same fields in the same order (names as written).
    fn eq(&self, other: &Headers) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Headers {}

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// RFC 7230 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
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
