//! Base64 decoding (RFC 4648, standard alphabet), for `Basic` credentials and PEM files.

fn value(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    } as u32)
}

/// Decodes `text`; padding is optional, but when present it must be right. `None` for any
/// other character (white space included), a length that cannot be base64, or non-zero
/// trailing bits.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let unpadded = match bytes.len() % 4 {
        0 if bytes.ends_with(b"==") => &bytes[..bytes.len() - 2],
        0 if bytes.ends_with(b"=") => &bytes[..bytes.len() - 1],
        _ => bytes,
    };
    if unpadded.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(unpadded.len() / 4 * 3 + 2);
    for group in unpadded.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in group.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * i);
        }
        let produced = group.len() - 1;
        let all = acc.to_be_bytes();
        out.extend_from_slice(&all[1..1 + produced]);
        // Bits below the last whole byte must be zero (canonical encoding).
        let unused_bits = 24 - 8 * produced as u32;
        if unused_bits < 24 && acc & ((1 << unused_bits) - 1) != 0 {
            return None;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(decode(encoded).unwrap(), plain.as_bytes(), "{encoded}");
            let bare = encoded.trim_end_matches('=');
            assert_eq!(decode(bare).unwrap(), plain.as_bytes(), "{bare}");
        }
        assert_eq!(
            decode("QWxhZGRpbjpvcGVuIHNlc2FtZQ==").unwrap(),
            b"Aladdin:open sesame"
        );
        assert_eq!(decode("+/+/").unwrap(), [0xfb, 0xff, 0xbf]);
    }

    #[test]
    fn rejects_what_is_not_base64() {
        for bad in [
            "Zg=",
            "Z",
            "Zm9v Yg==",
            "Zm9v\n",
            "Zh==",
            "Zm9=",
            "Z===",
            "====",
            "Zm-_",
            "Zg==Zg==",
        ] {
            assert!(decode(bad).is_none(), "{bad:?} accepted");
        }
    }
}
