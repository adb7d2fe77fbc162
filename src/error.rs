//! Configuration errors.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::key::MAX_KEY_LEN;

/// An invalid configuration, reported when the layer is built.
///
/// Every message names the setting at fault and what to do about it. None
/// contains a key, not even part of one.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// A configured key could not be sent by any client unchanged.
    InvalidKey {
        /// The source of the key, such as `ADMIN_API_KEY` or ``key `ci` ``.
        setting: String,
        /// The problem with the key.
        problem: KeyProblem,
    },
    /// A key name is empty, too long, or not visible ASCII.
    InvalidKeyName {
        /// The rejected name.
        name: String,
    },
    /// Two keys share a name.
    DuplicateKeyName {
        /// The name used twice.
        name: String,
    },
    /// The same key is configured under two names.
    DuplicateKey {
        /// The name of the key being added.
        name: String,
        /// The name the key is already configured under.
        other: String,
    },
    /// An environment variable contains bytes that are not valid UTF-8.
    EnvNotUnicode {
        /// The variable's name.
        var: String,
    },
    /// Both `VAR` and `VAR_FILE` are set, so the key to use is ambiguous.
    EnvConflict {
        /// The variable's name, without the `_FILE` suffix.
        var: String,
    },
    /// A key file could not be read.
    KeyFileRead {
        /// The setting that named the file, or an empty string for a file
        /// given to [`KeySet::from_file`](crate::KeySet::from_file).
        setting: String,
        /// The file's path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A key file is empty, or contains only a line break.
    KeyFileEmpty {
        /// The setting that named the file.
        setting: String,
        /// The file's path.
        path: PathBuf,
    },
    /// A key file of named keys contains no key.
    KeyFileNoKeys {
        /// The file's path.
        path: PathBuf,
    },
    /// A line of a key file is malformed.
    KeyFileLine {
        /// The file's path.
        path: PathBuf,
        /// The line number, starting at 1.
        line: usize,
        /// The problem with the line.
        problem: String,
    },
    /// The credential header name is not a valid HTTP header name.
    InvalidHeaderName {
        /// The rejected name.
        name: String,
    },
    /// The query parameter name for keys is empty or contains characters
    /// other than ASCII letters, digits, `-`, `_`, `.` and `~`.
    InvalidQueryParam {
        /// The rejected name.
        name: String,
    },
    /// The realm contains a quote, a backslash or a control character.
    InvalidRealm {
        /// The rejected realm.
        realm: String,
    },
    /// An exempt path is not one that the layer can match safely.
    InvalidExemptPath {
        /// The rejected path.
        path: String,
        /// The reason for the rejection.
        reason: &'static str,
    },
    /// [`ApiKeyLayerBuilder::require_key`](crate::ApiKeyLayerBuilder::require_key)
    /// was set, but no key is configured.
    KeyRequired {
        /// The settings that were checked.
        settings: Vec<String>,
    },
}

/// The reason a configured key is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyProblem {
    /// The key is empty.
    Empty,
    /// The key starts or ends with whitespace, which HTTP strips from
    /// header values.
    SurroundingWhitespace,
    /// The key contains a control character.
    ControlCharacter,
    /// The key contains a space or a byte outside visible ASCII.
    NotVisibleAscii,
    /// The key is longer than 4096 bytes.
    TooLong,
    /// The key starts with `sha256:` but the rest is not 64 hex digits.
    InvalidDigest,
    /// The key starts with `sha256:` but the `hashed-keys` feature is off.
    HashedKeysDisabled,
}

impl fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("is empty"),
            Self::SurroundingWhitespace => f.write_str(
                "starts or ends with whitespace, which clients and proxies strip from header values",
            ),
            Self::ControlCharacter => f.write_str("contains a control character"),
            Self::NotVisibleAscii => f.write_str(
                "contains a space or a character outside visible ASCII (0x21 to 0x7E)",
            ),
            Self::TooLong => write!(f, "is longer than {MAX_KEY_LEN} bytes"),
            Self::InvalidDigest => {
                f.write_str("starts with `sha256:` but is not followed by exactly 64 hex digits")
            }
            Self::HashedKeysDisabled => f.write_str(
                "is a `sha256:` digest, but the `hashed-keys` feature of tower-api-key is not enabled",
            ),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidKey { setting, problem } => write!(
                f,
                "{setting}: the API key {problem}; use a random key of visible ASCII characters \
                 such as the output of `openssl rand -hex 32`"
            ),
            Self::InvalidKeyName { name } => write!(
                f,
                "invalid key name {name:?}: use 1 to 128 visible ASCII characters"
            ),
            Self::DuplicateKeyName { name } => write!(
                f,
                "the key name {name:?} is used twice; give each key its own name"
            ),
            Self::DuplicateKey { name, other } => write!(
                f,
                "the key `{name}` is the same key as `{other}`; give each client its own key, \
                 so that logs and handlers can tell them apart"
            ),
            Self::EnvNotUnicode { var } => write!(
                f,
                "{var}: the value is not valid UTF-8; set it to a key of visible ASCII characters"
            ),
            Self::EnvConflict { var } => {
                write!(f, "{var} and {var}_FILE are both set; set only one of them")
            }
            Self::KeyFileRead {
                setting,
                path,
                source,
            } => {
                if !setting.is_empty() {
                    write!(f, "{setting}: ")?;
                }
                write!(f, "cannot read the key file {}: {source}", path.display())
            }
            Self::KeyFileEmpty { setting, path } => write!(
                f,
                "{setting}: the key file {} is empty; write the key into it, or unset {setting}",
                path.display()
            ),
            Self::KeyFileNoKeys { path } => write!(
                f,
                "the key file {} contains no key; add a `name:key` line",
                path.display()
            ),
            Self::KeyFileLine {
                path,
                line,
                problem,
            } => write!(f, "key file {}, line {line}: {problem}", path.display()),
            Self::InvalidHeaderName { name } => write!(
                f,
                "invalid credential header name {name:?}: use a valid HTTP header name such as X-API-Key"
            ),
            Self::InvalidQueryParam { name } => write!(
                f,
                "invalid query parameter name {name:?}: use ASCII letters, digits, `-`, `_`, `.` or `~`"
            ),
            Self::InvalidRealm { realm } => write!(
                f,
                "invalid realm {realm:?}: use visible ASCII and spaces, without `\"` or `\\`"
            ),
            Self::InvalidExemptPath { path, reason } => {
                write!(f, "invalid exempt path {path:?}: {reason}")
            }
            Self::KeyRequired { settings } => {
                if settings.is_empty() {
                    write!(f, "an API key is required, but none is configured")
                } else {
                    write!(
                        f,
                        "an API key is required, but none is configured; set {}",
                        settings.join(" or ")
                    )
                }
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::KeyFileRead { source, .. } => Some(source),
            _ => None,
        }
    }
}
