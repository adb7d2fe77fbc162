//! Paths that skip authentication, matched so that they fail closed.
//!
//! A request path is exempt when it equals an exact entry byte for byte. It
//! is also exempt when it sits under a prefix entry at a segment boundary
//! and contains nothing that a router, proxy or file server behind the
//! layer could resolve to another path. Nothing is decoded or normalised: a path that
//! would need either is simply not exempt, and so gets checked.

use crate::error::ConfigError;

/// The exempt path entries of a layer.
#[derive(Debug, Clone, Default)]
pub(crate) struct ExemptPaths {
    exact: Vec<Box<str>>,
    prefixes: Vec<Box<str>>,
}

impl ExemptPaths {
    pub(crate) fn add_exact(&mut self, path: &str) -> Result<(), ConfigError> {
        validate_entry(path)?;
        self.exact.push(path.into());
        Ok(())
    }

    pub(crate) fn add_prefix(&mut self, prefix: &str) -> Result<(), ConfigError> {
        validate_entry(prefix)?;
        if prefix == "/" {
            return Err(invalid(
                prefix,
                "a prefix of \"/\" would exempt every path; use ApiKeyLayer::disabled() \
                 to turn authentication off, or exempt(\"/\") for the root alone",
            ));
        }
        if prefix.ends_with('/') {
            return Err(invalid(
                prefix,
                "a prefix must not end with \"/\"; write \"/static\" to exempt /static and \
                 everything under /static/",
            ));
        }
        self.prefixes.push(prefix.into());
        Ok(())
    }

    /// Returns `true` when a request to `path` skips authentication.
    ///
    /// `path` must be `Uri::path()`: the query never takes part.
    pub(crate) fn is_exempt(&self, path: &str) -> bool {
        if self.exact.iter().any(|exact| **exact == *path) {
            return true;
        }

        self.prefixes
            .iter()
            .any(|prefix| under_prefix(path, prefix))
            && is_plain(path)
    }

    /// Lists the entries for the startup log, prefixes marked with `/*`.
    pub(crate) fn describe(&self) -> Vec<String> {
        let exact = self.exact.iter().map(|path| path.to_string());
        let prefixes = self.prefixes.iter().map(|prefix| format!("{prefix}/*"));
        exact.chain(prefixes).collect()
    }
}

/// `path` is the prefix itself or continues with `/` right after it, so
/// `/docs` covers `/docs/x` but never `/docs-private`.
fn under_prefix(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Returns `true` when no component behind the layer could read `path` as
/// a different path: no dot or empty segment, no backslash, no `;`
/// parameter, and only plain percent-escapes (see [`escapes_are_plain`]).
fn is_plain(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };

    if path.contains(['\\', ';']) || !escapes_are_plain(path) {
        return false;
    }

    // A trailing slash is allowed (`/static/`), so the last segment may be
    // empty; every other segment must have content other than dots.
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        let is_last = segments.peek().is_none();
        match segment {
            "" if is_last => {}
            "" | "." | ".." => return false,
            _ => {}
        }
    }
    true
}

/// Returns `true` when every `%` starts an escape of two hex digits, no
/// escape encodes `.`, `/`, `\` or `%` (in either case), and the decoded
/// bytes are valid UTF-8.
///
/// `%25` is rejected because a second decoding turns `%252e` into `.`.
/// Invalid UTF-8 is rejected because lenient decoders read overlong forms
/// such as `%c0%ae` as `.`. Malformed escapes such as IIS's `%u002e` are
/// rejected because servers disagree on what they mean.
fn escapes_are_plain(path: &str) -> bool {
    let mut bytes = path.bytes();
    let mut sequence = Utf8Sequence::default();

    while let Some(byte) = bytes.next() {
        let decoded = if byte == b'%' {
            let (Some(high), Some(low)) = (bytes.next(), bytes.next()) else {
                return false;
            };
            let Some(decoded) = hex_value(high).zip(hex_value(low)) else {
                return false;
            };
            let decoded = decoded.0 << 4 | decoded.1;
            if matches!(decoded, b'.' | b'/' | b'\\' | b'%') {
                return false;
            }
            decoded
        } else {
            byte
        };

        if !sequence.push(decoded) {
            return false;
        }
    }
    sequence.is_complete()
}

fn hex_value(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|value| value as u8)
}

/// A UTF-8 sequence being checked one decoded byte at a time, so that
/// validating a path needs no allocation.
#[derive(Default)]
struct Utf8Sequence {
    bytes: [u8; 4],
    filled: usize,
    expected: usize,
}

impl Utf8Sequence {
    /// Adds a byte. Returns `false` once the bytes cannot be valid UTF-8.
    fn push(&mut self, byte: u8) -> bool {
        if self.filled == 0 {
            self.expected = match byte {
                0x00..=0x7f => return true,
                0xc2..=0xdf => 2,
                0xe0..=0xef => 3,
                0xf0..=0xf4 => 4,
                // A continuation byte without a lead byte, or a lead byte
                // that only overlong or out-of-range sequences start with.
                _ => return false,
            };
        }

        self.bytes[self.filled] = byte;
        self.filled += 1;
        if self.filled < self.expected {
            return true;
        }

        // The standard check rejects overlong forms and surrogates.
        let valid = std::str::from_utf8(&self.bytes[..self.expected]).is_ok();
        self.filled = 0;
        valid
    }

    /// Returns `true` when no sequence was left unfinished.
    fn is_complete(&self) -> bool {
        self.filled == 0
    }
}

/// Entries are compared as raw bytes, so they must be written the way the
/// path arrives: absolute, undecoded, with nothing a matcher would skip.
fn validate_entry(path: &str) -> Result<(), ConfigError> {
    if !path.starts_with('/') {
        return Err(invalid(path, "an exempt path must start with \"/\""));
    }
    if path.contains(['?', '#']) {
        return Err(invalid(
            path,
            "an exempt path must not contain a query or fragment; exemption is decided on the path alone",
        ));
    }
    if !path.bytes().all(crate::key::is_visible_ascii) {
        return Err(invalid(
            path,
            "an exempt path must be visible ASCII; percent-encode other characters",
        ));
    }
    if path != "/" && !is_plain(path) {
        return Err(invalid(
            path,
            "an exempt path must not contain dot or empty segments, backslashes, \";\", \
             percent-encoded \".\", \"/\", \"\\\" or \"%\", or escapes that are malformed \
             or not UTF-8",
        ));
    }
    Ok(())
}

fn invalid(path: &str, reason: &'static str) -> ConfigError {
    ConfigError::InvalidExemptPath {
        path: path.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths() -> ExemptPaths {
        let mut paths = ExemptPaths::default();
        for exact in ["/", "/docs", "/openapi.json"] {
            paths.add_exact(exact).unwrap();
        }
        paths.add_prefix("/static").unwrap();
        paths
    }

    #[test]
    fn exact_entries_match_only_themselves() {
        let paths = paths();
        assert!(paths.is_exempt("/"));
        assert!(paths.is_exempt("/docs"));
        assert!(paths.is_exempt("/openapi.json"));
        for path in [
            "/docs/",
            "/DOCS",
            "/docs;x=1",
            "//docs",
            "/docs/.",
            "/memories",
            "",
        ] {
            assert!(!paths.is_exempt(path), "{path:?}");
        }
    }

    #[test]
    fn prefix_matches_at_segment_boundary() {
        let paths = paths();
        for path in [
            "/static",
            "/static/",
            "/static/app.js",
            "/static/css/site.css",
        ] {
            assert!(paths.is_exempt(path), "{path:?}");
        }
        for path in ["/staticfoo", "/static-private/x", "/Static/app.js"] {
            assert!(!paths.is_exempt(path), "{path:?}");
        }
    }

    #[test]
    fn prefix_never_covers_resolvable_paths() {
        let paths = paths();
        for path in [
            "/static/../memories",
            "/static/./app.js",
            "/static//app.js",
            "/static/%2e%2E/memories",
            "/static/%2E./memories",
            "/static%2fx",
            "/static/%2Fmemories",
            "/static/%5cmemories",
            "/static/%252e%252e/memories",
            "/static\\..\\memories",
            "/static/app.js;jsessionid=1",
            "/static/..",
        ] {
            assert!(!paths.is_exempt(path), "{path:?}");
        }
    }

    #[test]
    fn prefix_never_covers_unclear_escapes() {
        let paths = paths();
        for path in [
            "/static/%c0%ae%c0%ae/memories",
            "/static/%C0%AE",
            "/static/%e0%80%ae",
            "/static/%f0%80%80%ae",
            "/static/%ed%a0%80",
            "/static/%80",
            "/static/%c3",
            "/static/%c3/",
            "/static/%c3a",
            "/static/%u002e%u002e/memories",
            "/static/%",
            "/static/%2",
            "/static/%zz",
            "/static/100%",
        ] {
            assert!(!paths.is_exempt(path), "{path:?}");
        }
    }

    #[test]
    fn prefix_covers_valid_escapes() {
        let paths = paths();
        for path in [
            "/static/caf%C3%A9.css",
            "/static/caf\u{e9}.css",
            "/static/%E2%82%AC.txt",
            "/static/%F0%9F%A6%80.png",
            "/static/a%20b.txt",
            "/static/%41pp.js",
        ] {
            assert!(paths.is_exempt(path), "{path:?}");
        }
    }

    #[test]
    fn root_entry_exempts_only_root() {
        let paths = paths();
        assert!(paths.is_exempt("/"));
        assert!(!paths.is_exempt("//"));
        assert!(!paths.is_exempt("/memories"));
    }

    #[test]
    fn entries_are_validated() {
        let mut paths = ExemptPaths::default();
        for entry in [
            "docs",
            "/docs?x=1",
            "/docs#top",
            "/do cs",
            "/static/../x",
            "//docs",
            "/a%2fb",
            "/a%zz",
            "/a%c0%ae",
        ] {
            assert!(paths.add_exact(entry).is_err(), "{entry:?}");
        }
        assert!(paths.add_prefix("/").is_err());
        assert!(paths.add_prefix("/static/").is_err());
        assert!(paths.describe().is_empty());
    }
}
