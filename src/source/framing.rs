//! Framing: how an input splits into records.
//!
//! Logs arrive as JSON lines (one record per line: native events, Vault audit, Kubernetes
//! audit logs) or as one JSON document (a CloudTrail file `{"Records": [...]}`, a pretty-printed
//! array exported from a SIEM). [`Framing::detect`] tells them apart from the input's first
//! bytes; `decode::split_records` then splits a document into its elements.

use serde::de::IgnoredAny;

/// Largest JSON document read whole (256 MiB).
pub const MAX_DOCUMENT_BYTES: usize = 256 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// One record per line.
    Lines,
    /// The whole input is one JSON value.
    Document,
}

impl Framing {
    /// Looks at the start of an input: an array, or an object that does not end on its first
    /// line (pretty-printed, or a single line longer than `head`), is a document; anything
    /// else is read line by line (including garbage, which then fails line by line).
    pub fn detect(head: &[u8]) -> Framing {
        let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
        let start = head.iter().position(|b| !b.is_ascii_whitespace());
        let Some(start) = start else {
            return Framing::Lines;
        };
        let rest = &head[start..];
        // JSON is UTF-8: binary noise that happens to start with `[` is not a document. A
        // character cut at the end of `head` is fine.
        if let Err(error) = std::str::from_utf8(rest) {
            if error.error_len().is_some() {
                return Framing::Lines;
            }
        }
        match rest[0] {
            b'[' => Framing::Document,
            b'{' => match rest.iter().position(|&b| b == b'\n') {
                Some(end) if serde_json::from_slice::<IgnoredAny>(&rest[..end]).is_ok() => {
                    Framing::Lines
                }
                Some(_) => Framing::Document,
                None if serde_json::from_slice::<IgnoredAny>(rest).is_ok() => Framing::Lines,
                None => Framing::Document,
            },
            _ => Framing::Lines,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_lines_from_documents() {
        assert_eq!(Framing::detect(b"{\"a\":1}\n{\"a\":2}\n"), Framing::Lines);
        assert_eq!(Framing::detect(b"{\"a\":1}"), Framing::Lines);
        assert_eq!(Framing::detect(b"\n  [\n {\"a\":1}\n]"), Framing::Document);
        assert_eq!(
            Framing::detect(b"{\n  \"Records\": []\n}\n"),
            Framing::Document
        );
        assert_eq!(
            Framing::detect(b"{\"Records\":[{\"a\":1},"),
            Framing::Document,
            "cut long line"
        );
        assert_eq!(Framing::detect(b"\xEF\xBB\xBF[]"), Framing::Document);
        assert_eq!(Framing::detect(b"garbage\n{}"), Framing::Lines);
        assert_eq!(Framing::detect(b""), Framing::Lines);
        assert_eq!(
            Framing::detect(b"[\xff\xfe\n\x00"),
            Framing::Lines,
            "binary noise"
        );
    }
}
