//! Key files: one `name:key` per line.

use std::path::{Path, PathBuf};

use super::{KeyName, KeySet};
use crate::env;
use crate::error::ConfigError;

/// The largest key file read, in bytes: room for hundreds of the longest
/// keys, while a file such as `/dev/zero` fails instead of filling memory.
const MAX_NAMED_KEY_FILE_LEN: usize = 1 << 20;

impl KeySet {
    /// Reads a key file: one `name:key` (or, with the `hashed-keys`
    /// feature, `name:sha256:<64 hex digits>`) per line.
    ///
    /// Blank lines and lines starting with `#` are skipped, and a `\r`
    /// before the line break is removed. The key is everything after the
    /// first `:`, so keys may contain `:` but names may not. Names are
    /// logged, so a line holding a bare key that contains `:` would log the
    /// part before the colon: always write the name.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tower_api_key::KeySet;
    ///
    /// let path = std::env::temp_dir().join("tower-api-key-doc-keys.txt");
    /// std::fs::write(&path, "# clients\nci:ci-0123456789abcdef\n\nops:ops-0123456789abcdef\n")?;
    ///
    /// let keys = KeySet::from_file(&path)?;
    /// assert_eq!(keys.len(), 2);
    /// assert_eq!(keys.verify(b"ops-0123456789abcdef").unwrap().as_str(), "ops");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// Returns an error when the file cannot be read, is larger than 1 MiB
    /// or is not UTF-8, or contains no key, and
    /// [`ConfigError::KeyFileLine`] with the line number for a malformed
    /// line, an invalid or repeated name, or an unusable key. No error shows
    /// a key or a line's text.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = env::read_bounded(path, MAX_NAMED_KEY_FILE_LEN).map_err(|source| {
            ConfigError::KeyFileRead {
                setting: String::new(),
                path: path.to_owned(),
                source,
            }
        })?;
        parse(&text, path)
    }
}

fn parse(text: &str, path: &Path) -> Result<KeySet, ConfigError> {
    let mut keys = KeySet::new();

    for (index, line) in text.lines().enumerate() {
        let line_error = |problem: String| ConfigError::KeyFileLine {
            path: PathBuf::from(path),
            line: index + 1,
            problem,
        };

        let line = line.strip_suffix('\r').unwrap_or(line);
        let content = line.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }

        let Some((name, secret)) = line.split_once(':') else {
            return Err(line_error("expected `name:key`, found no `:`".to_owned()));
        };
        let name = KeyName::new(name).map_err(|error| line_error(error.to_string()))?;
        let setting = format!("key `{name}`");
        keys.insert_checked(name, &setting, secret, None)
            .map_err(|error| line_error(error.to_string()))?;
    }

    if keys.is_empty() {
        // An empty file is more likely a truncated write than an intent to
        // revoke every key, so it is an error rather than an empty set.
        return Err(ConfigError::KeyFileNoKeys {
            path: path.to_owned(),
        });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<KeySet, ConfigError> {
        parse(text, Path::new("keys.txt"))
    }

    fn line_of(error: ConfigError) -> usize {
        match error {
            ConfigError::KeyFileLine { line, .. } => line,
            other => panic!("expected a line error, got {other:?}"),
        }
    }

    #[test]
    fn comments_blank_lines_and_crlf_are_skipped() {
        let keys = parse_text(
            "# team keys\r\n\r\n  \nci:ci-0123456789abcdef\r\n  # old\nops:ops:with:colons\n",
        )
        .unwrap();
        let names: Vec<&str> = keys.names().map(KeyName::as_str).collect();
        assert_eq!(names, ["ci", "ops"]);
        assert_eq!(keys.verify(b"ci-0123456789abcdef").unwrap().as_str(), "ci");
        assert_eq!(keys.verify(b"ops:with:colons").unwrap().as_str(), "ops");
    }

    #[test]
    fn errors_name_the_line_never_the_key() {
        let cases = [
            ("ci:ci-0123456789abcdef\nsecret-without-name-0123\n", 2),
            ("ci:ci-0123456789abcdef\nci:other-0123456789abcdef\n", 2),
            ("# c\n\nbad name:secret-value-0123456789\n", 3),
            ("ci: secret-value-0123456789\n", 1),
            ("ci:\n", 1),
        ];
        for (text, line) in cases {
            let error = parse_text(text).unwrap_err();
            let message = error.to_string();
            assert!(!message.contains("secret-"), "{message}");
            assert!(!message.contains("other-"), "{message}");
            assert_eq!(line_of(error), line, "{text:?}");
        }
    }

    #[test]
    fn file_without_keys_is_an_error() {
        let error = parse_text("# nothing yet\n\n").unwrap_err();
        assert!(
            matches!(error, ConfigError::KeyFileNoKeys { .. }),
            "{error:?}"
        );
    }

    #[test]
    fn oversized_file_is_an_error() {
        let path =
            std::env::temp_dir().join(format!("tower-api-key-big-{}.keys", std::process::id()));
        let line = format!("# {}\n", "x".repeat(1021));
        std::fs::write(&path, line.repeat(1025)).unwrap();

        let error = KeySet::from_file(&path).unwrap_err();

        assert!(
            matches!(error, ConfigError::KeyFileRead { .. }),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("longer than 1048576 bytes"),
            "{error}"
        );
        std::fs::remove_file(&path).unwrap();
    }
}
