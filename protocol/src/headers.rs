//! An ordered header list with case-insensitive lookup, and its writer. Heads are read in
//! `head.rs`.

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

    /// Writes `Name: value\r\n` for every field that a reader would read back as the same one
    /// field: a name that is not a token, or a value with CR, LF or another control character
    /// (a way to smuggle header lines), is never written.
    pub fn write_to(&self, out: &mut Vec<u8>) {
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
