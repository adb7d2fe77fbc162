//! Keys read from environment variables and `*_FILE` secret files.

use std::env;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::error::ConfigError;
use crate::key::MAX_KEY_LEN;

/// The maximum size of a key file in bytes: the maximum key length and a
/// CRLF. Reading stops there, so a setting that names `/dev/zero` or a log
/// file fails at once instead of filling memory.
const MAX_KEY_FILE_LEN: usize = MAX_KEY_LEN + 2;

/// A key read from the environment, with the setting it came from.
pub(crate) struct EnvKey {
    pub(crate) secret: String,
    pub(crate) setting: String,
}

/// Reads the key from `var`, or from the file named by `{var}_FILE`.
///
/// Returns `Ok(None)` when neither contains a key: `var` unset, empty or
/// whitespace-only, and `{var}_FILE` unset or empty. Setting both is an
/// error, because silently preferring one hides a deployment mistake.
pub(crate) fn read_key(var: &str) -> Result<Option<EnvKey>, ConfigError> {
    let file_var = format!("{var}_FILE");
    let value = read_var(var)?.filter(|value| !value.trim().is_empty());
    let file = read_var(&file_var)?.filter(|path| !path.is_empty());

    match (value, file) {
        (Some(_), Some(_)) => Err(ConfigError::EnvConflict {
            var: var.to_owned(),
        }),
        (Some(secret), None) => Ok(Some(EnvKey {
            secret,
            setting: var.to_owned(),
        })),
        (None, Some(path)) => {
            let secret = read_key_file(&file_var, PathBuf::from(path))?;
            Ok(Some(EnvKey {
                secret,
                setting: file_var,
            }))
        }
        (None, None) => Ok(None),
    }
}

fn read_var(var: &str) -> Result<Option<String>, ConfigError> {
    match env::var_os(var).map(OsString::into_string) {
        None => Ok(None),
        Some(Ok(value)) => Ok(Some(value)),
        Some(Err(_)) => Err(ConfigError::EnvNotUnicode {
            var: var.to_owned(),
        }),
    }
}

/// Reads a secret file the way container runtimes write them: the whole
/// file is the key, less one trailing line break that editors and
/// `echo` add.
pub(crate) fn read_key_file(setting: &str, path: PathBuf) -> Result<String, ConfigError> {
    let mut secret = match read_bounded(&path, MAX_KEY_FILE_LEN) {
        Ok(secret) => secret,
        Err(source) => {
            return Err(ConfigError::KeyFileRead {
                setting: setting.to_owned(),
                path,
                source,
            });
        }
    };

    if secret.ends_with("\r\n") {
        secret.truncate(secret.len() - 2);
    } else if secret.ends_with('\n') {
        secret.truncate(secret.len() - 1);
    }

    if secret.is_empty() {
        return Err(ConfigError::KeyFileEmpty {
            setting: setting.to_owned(),
            path,
        });
    }
    Ok(secret)
}

/// Reads a whole file of at most [`MAX_KEY_FILE_LEN`] bytes as UTF-8.
pub(crate) fn read_bounded(path: &Path, max_len: usize) -> io::Result<String> {
    let mut bytes = Vec::new();
    File::open(path)?
        .take(max_len as u64 + 1)
        .read_to_end(&mut bytes)?;

    if bytes.len() > max_len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the file is longer than {max_len} bytes, which no key file is"),
        ));
    }
    String::from_utf8(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "the file is not valid UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tower-api-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn key_file_loses_one_line_break() {
        let cases: [(&str, &[u8], &str); 3] = [
            ("lf", b"file-key-0123456789\n", "file-key-0123456789"),
            ("crlf", b"file-key-0123456789\r\n", "file-key-0123456789"),
            ("none", b"file-key-0123456789", "file-key-0123456789"),
        ];
        for (name, contents, expected) in cases {
            let path = temp_file(name, contents);
            assert_eq!(read_key_file("K_FILE", path).unwrap(), expected, "{name}");
        }
    }

    #[test]
    fn key_file_keeps_second_line_break() {
        // Only one line break is removed; the second is part of the value
        // and is rejected later as trailing whitespace.
        let path = temp_file("two", b"file-key-0123456789\n\n");
        assert_eq!(
            read_key_file("K_FILE", path).unwrap(),
            "file-key-0123456789\n"
        );
    }

    #[test]
    fn empty_key_file_is_an_error() {
        for (name, contents) in [("empty", &b""[..]), ("newline", &b"\n"[..])] {
            let path = temp_file(name, contents);
            let error = read_key_file("K_FILE", path).unwrap_err();
            assert!(matches!(error, ConfigError::KeyFileEmpty { .. }), "{name}");
            assert!(error.to_string().starts_with("K_FILE: "), "{error}");
        }
    }

    #[test]
    fn oversized_key_file_is_an_error() {
        let longest = "k".repeat(MAX_KEY_LEN);
        let path = temp_file("longest", format!("{longest}\r\n").as_bytes());
        assert_eq!(read_key_file("K_FILE", path).unwrap(), longest);

        let path = temp_file("oversized", "k".repeat(MAX_KEY_FILE_LEN + 1).as_bytes());
        let error = read_key_file("K_FILE", path).unwrap_err();
        assert!(
            matches!(error, ConfigError::KeyFileRead { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("longer than"), "{error}");
    }

    #[cfg(unix)]
    #[test]
    fn endless_key_file_is_an_error() {
        let error = read_key_file("K_FILE", PathBuf::from("/dev/zero")).unwrap_err();
        assert!(
            matches!(error, ConfigError::KeyFileRead { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("/dev/zero"), "{error}");
    }

    #[test]
    fn missing_key_file_names_the_path() {
        let path = std::env::temp_dir().join("tower-api-key-no-such-file");
        let error = read_key_file("K_FILE", path.clone()).unwrap_err();
        assert!(matches!(error, ConfigError::KeyFileRead { .. }));
        assert!(
            error.to_string().contains(&path.display().to_string()),
            "{error}"
        );
    }
}
