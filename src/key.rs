//! Configured keys, their names, and the constant-time comparison.

use std::fmt;
use std::sync::Arc;

use subtle::{Choice, ConditionallySelectable, ConstantTimeEq, ConstantTimeLess};

use crate::error::{ConfigError, KeyProblem};

/// Keys shorter than this get a warning at construction.
pub(crate) const RECOMMENDED_MIN_LEN: usize = 16;

/// The name of the key that authenticated a request.
///
/// After a successful check the service inserts the matched key's name into
/// the request extensions, so a handler can tell clients apart without ever
/// seeing the key. With axum, take it as `Extension<KeyName>`.
///
/// ```
/// use tower_api_key::KeyName;
///
/// let name = KeyName::new("ci").unwrap();
/// assert_eq!(name.as_str(), "ci");
/// assert_eq!(name.to_string(), "ci");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyName(Arc<str>);

impl KeyName {
    /// Creates a key name.
    ///
    /// # Errors
    ///
    /// Returns [`ConfigError::InvalidKeyName`] when the name is empty, longer
    /// than 128 bytes, or contains characters other than visible ASCII,
    /// because names end up in logs and response headers of downstream
    /// services.
    pub fn new(name: impl Into<String>) -> Result<Self, ConfigError> {
        let name = name.into();
        let valid = !name.is_empty() && name.len() <= 128 && name.bytes().all(is_visible_ascii);
        if !valid {
            return Err(ConfigError::InvalidKeyName { name });
        }
        Ok(Self(name.into()))
    }

    /// Returns the name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("KeyName").field(&&*self.0).finish()
    }
}

impl fmt::Display for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for KeyName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A secret key. Its bytes never leave this module except to be compared.
#[derive(Clone)]
struct Secret(Box<[u8]>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A named set of API keys, compared in constant time.
///
/// Every key in the set is compared against the presented value on every
/// call, so the time taken does not depend on which key matched or where
/// the first differing byte is. [`ApiKeyLayer`](crate::ApiKeyLayer) builds
/// one of these from its configuration; use it directly to check keys that
/// arrive some other way (a WebSocket message, a job queue).
///
/// ```
/// use tower_api_key::KeySet;
///
/// let mut keys = KeySet::new();
/// keys.insert("ci", "ci-0123456789abcdef").unwrap();
/// keys.insert("ops", "ops-0123456789abcdef").unwrap();
///
/// assert_eq!(keys.verify(b"ops-0123456789abcdef").unwrap().as_str(), "ops");
/// assert!(keys.verify(b"ops-0123456789abcde").is_none());
/// assert!(keys.verify(b"").is_none());
/// ```
///
/// # What the comparison reveals
///
/// For each key, the loop runs over the presented value's bytes and never
/// over the key's, and every step does the same work whether or not the
/// bytes so far matched. So the time depends on the presented length (which
/// the client already knows) and the number of keys, but not on the keys'
/// contents or lengths. Like [`subtle`], this is best-effort: it relies on
/// the compiler not turning the branch-free code back into branches.
///
/// NOTE: for keys longer than a cache line, a presented value longer than a
/// key reads that key's last byte repeatedly instead of walking on, which a
/// cache-timing attacker on the same machine could in theory observe.
#[derive(Clone, Default)]
pub struct KeySet {
    entries: Vec<Entry>,
}

#[derive(Clone)]
struct Entry {
    name: KeyName,
    secret: Secret,
}

impl KeySet {
    /// Creates an empty key set. An empty set matches nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key under a name.
    ///
    /// # Errors
    ///
    /// Returns an error, which names the key but never shows it, when the
    /// name is invalid or already used, or when no client could send the
    /// key in a header: it is empty, has leading or trailing whitespace, or
    /// contains control characters or bytes outside visible ASCII.
    pub fn insert(
        &mut self,
        name: impl Into<String>,
        secret: impl Into<String>,
    ) -> Result<(), ConfigError> {
        let name = KeyName::new(name)?;
        let secret = secret.into();
        let setting = format!("key `{name}`");
        check_secret(&setting, &secret)?;
        self.push(name, secret)
    }

    pub(crate) fn push(&mut self, name: KeyName, secret: String) -> Result<(), ConfigError> {
        if self.entries.iter().any(|entry| entry.name == name) {
            return Err(ConfigError::DuplicateKeyName {
                name: name.as_str().to_owned(),
            });
        }

        self.entries.push(Entry {
            name,
            secret: Secret(secret.into_bytes().into_boxed_slice()),
        });
        Ok(())
    }

    /// Returns the number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Returns `true` when the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Returns the key names, in insertion order.
    pub fn names(&self) -> impl Iterator<Item = &KeyName> {
        self.entries.iter().map(|entry| &entry.name)
    }

    /// Returns the names of keys shorter than 16 bytes.
    pub(crate) fn short_keys(&self) -> impl Iterator<Item = &KeyName> {
        self.entries
            .iter()
            .filter(|entry| entry.secret.0.len() < RECOMMENDED_MIN_LEN)
            .map(|entry| &entry.name)
    }

    /// Compares a presented value against every key and returns the name of
    /// the one it equals.
    ///
    /// The time taken does not depend on which key matched, nor on the
    /// contents or lengths of the keys; see the type's documentation.
    pub fn verify(&self, presented: &[u8]) -> Option<&KeyName> {
        // Every key is compared; the index of a match is selected without a
        // branch, so a match on the first key costs the same as one on the
        // last, or none.
        let mut found = Choice::from(0);
        let mut index = 0u64;
        for (i, entry) in self.entries.iter().enumerate() {
            let matched = ct_equal(&entry.secret.0, presented);
            index = u64::conditional_select(&index, &(i as u64), matched);
            found |= matched;
        }

        if bool::from(found) {
            self.entries.get(index as usize).map(|entry| &entry.name)
        } else {
            None
        }
    }
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for entry in &self.entries {
            map.entry(&entry.name.as_str(), &entry.secret);
        }
        map.finish()
    }
}

/// Compares `key` with `presented` in time that depends only on
/// `presented.len()`.
///
/// The loop walks the presented bytes. At each position it reads the key
/// byte at the same position, or the key's last byte once the position is
/// past the key's end, choosing the index without a branch. Equal lengths
/// are part of the result, so a prefix or an extension of the key fails.
fn ct_equal(key: &[u8], presented: &[u8]) -> Choice {
    let Some(last) = key.len().checked_sub(1) else {
        // Keys are validated to be non-empty; an empty one matches nothing.
        return Choice::from(0);
    };
    let key_len = key.len() as u64;

    let mut equal = key_len.ct_eq(&(presented.len() as u64));
    for (i, byte) in presented.iter().enumerate() {
        let i = i as u64;
        let in_key = i.ct_lt(&key_len);
        let at = u64::conditional_select(&(last as u64), &i, in_key);
        // `at <= last`, so the index is always in bounds.
        equal &= byte.ct_eq(&key[at as usize]);
    }
    equal
}

pub(crate) fn is_visible_ascii(byte: u8) -> bool {
    (0x21..=0x7e).contains(&byte)
}

/// Rejects keys that no client could send in a header value unchanged.
///
/// `setting` names where the key came from; the key itself is never part of
/// the error.
pub(crate) fn check_secret(setting: &str, secret: &str) -> Result<(), ConfigError> {
    let problem = if secret.is_empty() {
        Some(KeyProblem::Empty)
    } else if secret.starts_with(char::is_whitespace) || secret.ends_with(char::is_whitespace) {
        Some(KeyProblem::SurroundingWhitespace)
    } else if secret.chars().any(char::is_control) {
        Some(KeyProblem::ControlCharacter)
    } else if !secret.bytes().all(is_visible_ascii) {
        Some(KeyProblem::NotVisibleAscii)
    } else {
        None
    };

    match problem {
        Some(problem) => Err(ConfigError::InvalidKey {
            setting: setting.to_owned(),
            problem,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(keys: &[(&str, &str)]) -> KeySet {
        let mut set = KeySet::new();
        for (name, secret) in keys {
            set.insert(*name, *secret).unwrap();
        }
        set
    }

    #[test]
    fn ct_equal_accepts_only_exact_bytes() {
        let key = b"0123456789abcdef";
        assert!(bool::from(ct_equal(key, key)));
        assert!(!bool::from(ct_equal(key, b"0123456789abcde")));
        assert!(!bool::from(ct_equal(key, b"0123456789abcdefg")));
        assert!(!bool::from(ct_equal(key, b"0123456789ABCDEF")));
        assert!(!bool::from(ct_equal(key, b"x123456789abcdef")));
        assert!(!bool::from(ct_equal(key, b"0123456789abcdex")));
        assert!(!bool::from(ct_equal(key, b"")));
    }

    #[test]
    fn ct_equal_rejects_repeated_last_byte() {
        // Past the key's end the loop reads the last byte, so a value that
        // repeats it must still fail on length.
        assert!(!bool::from(ct_equal(b"abc", b"abcccc")));
    }

    #[test]
    fn ct_equal_with_empty_key_matches_nothing() {
        assert!(!bool::from(ct_equal(b"", b"")));
        assert!(!bool::from(ct_equal(b"", b"a")));
    }

    #[test]
    fn verify_returns_matching_name() {
        let keys = set(&[("a", "key-a-0123456789"), ("b", "key-b-0123456789")]);
        assert_eq!(keys.verify(b"key-a-0123456789").unwrap().as_str(), "a");
        assert_eq!(keys.verify(b"key-b-0123456789").unwrap().as_str(), "b");
        assert_eq!(keys.verify(b"key-c-0123456789"), None);
    }

    #[test]
    fn verify_on_empty_set_matches_nothing() {
        assert_eq!(KeySet::new().verify(b"anything"), None);
    }

    #[test]
    fn insert_rejects_unsendable_keys() {
        let cases = [
            ("", KeyProblem::Empty),
            (" leading-space-key", KeyProblem::SurroundingWhitespace),
            ("trailing-newline-key\n", KeyProblem::SurroundingWhitespace),
            ("inner\u{7}bell-character", KeyProblem::ControlCharacter),
            ("inner space key value", KeyProblem::NotVisibleAscii),
            ("non-ascii-key-é-value", KeyProblem::NotVisibleAscii),
        ];
        for (secret, expected) in cases {
            let error = KeySet::new().insert("k", secret).unwrap_err();
            match error {
                ConfigError::InvalidKey { problem, .. } => {
                    assert_eq!(problem, expected, "key {secret:?}")
                }
                other => panic!("unexpected error {other:?} for {secret:?}"),
            }
        }
    }

    #[test]
    fn insert_rejects_duplicate_name() {
        let mut keys = set(&[("a", "key-a-0123456789")]);
        let error = keys.insert("a", "key-b-0123456789").unwrap_err();
        assert!(matches!(error, ConfigError::DuplicateKeyName { .. }));
    }

    #[test]
    fn errors_never_contain_the_key() {
        let secret = " sk-live-0123456789abcdef";
        let error = KeySet::new().insert("prod", secret).unwrap_err();
        assert!(!error.to_string().contains(secret.trim()));
        assert!(!format!("{error:?}").contains(secret.trim()));
    }

    #[test]
    fn debug_redacts_secrets() {
        let keys = set(&[("prod", "sk-live-0123456789abcdef")]);
        let output = format!("{keys:?}");
        assert!(output.contains("prod"), "{output}");
        assert!(output.contains("[redacted]"), "{output}");
        assert!(!output.contains("sk-live"), "{output}");
    }

    #[test]
    fn key_name_rejects_invalid_names() {
        for name in ["", "has space", "tab\there", "ünicode", &"n".repeat(129)] {
            assert!(KeyName::new(name).is_err(), "{name:?}");
        }
        assert!(KeyName::new("ci-runner_01").is_ok());
    }
}
