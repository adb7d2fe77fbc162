//! Configured keys: their names, storage, comparison, files and rotation.

mod compare;
mod file;
mod handle;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use subtle::{Choice, ConditionallySelectable};

pub(crate) use compare::MAX_KEY_LEN;
use compare::PaddedKey;

use crate::env;
use crate::error::{ConfigError, KeyProblem};

pub use handle::KeySetHandle;

/// Keys shorter than this get a warning at construction.
pub(crate) const RECOMMENDED_MIN_LEN: usize = 16;

/// The prefix that marks a key configured by its SHA-256 digest.
const SHA256_PREFIX: &str = "sha256:";

/// The name of the key that authenticated a request.
///
/// After a successful check the service inserts the matched key's name into
/// the request extensions, so a handler can tell clients apart without ever
/// seeing the key. With axum, take it as `Extension<KeyName>`; with a plain
/// hyper or tower service, read `request.extensions().get::<KeyName>()`.
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

/// A stored key: its bytes, or the SHA-256 digest of its bytes.
#[derive(Clone)]
enum Secret {
    Plain(PaddedKey),
    #[cfg(feature = "hashed-keys")]
    Sha256([u8; 32]),
}

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
/// one of these from its configuration. Use it directly to check keys that
/// arrive some other way (a WebSocket message, a job queue), or to replace
/// the keys of a running layer through a [`KeySetHandle`].
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
/// Each key is stored zero-padded to 4096 bytes, the longest key allowed.
/// For each key, the comparison XORs the presented bytes with as many bytes
/// of the padded key and ORs the results, without a branch on the data, and
/// checks the lengths separately. So the time and the memory read depend on
/// the presented length (which the client already knows) and the number of
/// keys, but not on the keys' contents or lengths. A presented value longer
/// than 4096 bytes is rejected without a comparison. Like [`subtle`], this is
/// best-effort: it relies on the compiler not turning the branch-free loop
/// into one that stops early.
///
/// A key whose `not_after` time has passed is rejected like a wrong key
/// once it matched; that it matched can show in the timing, which reveals
/// nothing to a client that does not already hold the key.
#[derive(Clone, Default)]
pub struct KeySet {
    entries: Vec<Entry>,
    #[cfg(feature = "hashed-keys")]
    has_hashed: bool,
}

#[derive(Clone)]
struct Entry {
    name: KeyName,
    secret: Secret,
    not_after: Option<SystemTime>,
    /// Set once the expiry has been logged, so the warning is not repeated
    /// per request. Shared by clones of the set.
    expiry_logged: Arc<AtomicBool>,
}

impl KeySet {
    /// Creates an empty key set. An empty set matches nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key under a name.
    ///
    /// With the `hashed-keys` feature, a key written as `sha256:` followed
    /// by 64 hex digits is stored as that digest, and matches a presented
    /// value whose SHA-256 digest it is.
    ///
    /// # Errors
    ///
    /// Returns an error, which names the key but never shows it, when the
    /// name is invalid or already used, or when the key is already in the
    /// set under another name. It also returns one when no client could
    /// send the key in a header, because it is empty, has leading or
    /// trailing whitespace, or contains control characters or bytes outside
    /// visible ASCII.
    pub fn insert(
        &mut self,
        name: impl Into<String>,
        secret: impl Into<String>,
    ) -> Result<(), ConfigError> {
        let name = KeyName::new(name)?;
        let setting = format!("key `{name}`");
        self.insert_checked(name, &setting, &secret.into(), None)
    }

    /// Adds a key that is rejected from `not_after` on; see
    /// [`insert`](Self::insert).
    ///
    /// # Errors
    ///
    /// The same as [`insert`](Self::insert).
    pub fn insert_with_expiry(
        &mut self,
        name: impl Into<String>,
        secret: impl Into<String>,
        not_after: SystemTime,
    ) -> Result<(), ConfigError> {
        let name = KeyName::new(name)?;
        let setting = format!("key `{name}`");
        self.insert_checked(name, &setting, &secret.into(), Some(not_after))
    }

    /// Adds the key found in the environment variable `var`, or in the file
    /// named by `{var}_FILE`, under a name.
    ///
    /// Returns `Ok(false)` and adds nothing when neither contains a key (unset,
    /// empty or whitespace-only). A file loses one trailing line break.
    ///
    /// # Errors
    ///
    /// Returns an error when both variables are set, the file cannot be
    /// read or is empty, or the key is unusable as for
    /// [`insert`](Self::insert).
    pub fn insert_from_env(
        &mut self,
        name: impl Into<String>,
        var: &str,
    ) -> Result<bool, ConfigError> {
        let name = KeyName::new(name)?;
        match env::read_key(var)? {
            Some(found) => {
                self.insert_checked(name, &found.setting, &found.secret, None)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Validates and stores a key. `setting` names where the key came from,
    /// for errors.
    pub(crate) fn insert_checked(
        &mut self,
        name: KeyName,
        setting: &str,
        secret: &str,
        not_after: Option<SystemTime>,
    ) -> Result<(), ConfigError> {
        let invalid = |problem| ConfigError::InvalidKey {
            setting: setting.to_owned(),
            problem,
        };

        check_secret(secret).map_err(invalid)?;
        let secret = parse_secret(secret).map_err(invalid)?;

        if self.entries.iter().any(|entry| entry.name == name) {
            return Err(ConfigError::DuplicateKeyName {
                name: name.as_str().to_owned(),
            });
        }
        self.check_not_present(&name, &secret)?;

        #[cfg(feature = "hashed-keys")]
        if matches!(secret, Secret::Sha256(_)) {
            self.has_hashed = true;
        }
        self.entries.push(Entry {
            name,
            secret,
            not_after,
            expiry_logged: Arc::new(AtomicBool::new(false)),
        });
        Ok(())
    }

    /// Adds every key of `other`.
    ///
    /// # Errors
    ///
    /// Returns [`ConfigError::DuplicateKeyName`] when a name is in both
    /// sets; `self` is then left unchanged.
    pub fn merge(&mut self, other: KeySet) -> Result<(), ConfigError> {
        if let Some(duplicate) = other
            .names()
            .find(|name| self.names().any(|own| own == *name))
        {
            return Err(ConfigError::DuplicateKeyName {
                name: duplicate.as_str().to_owned(),
            });
        }
        for entry in &other.entries {
            self.check_not_present(&entry.name, &entry.secret)?;
        }

        #[cfg(feature = "hashed-keys")]
        {
            self.has_hashed |= other.has_hashed;
        }
        self.entries.extend(other.entries);
        Ok(())
    }

    /// Rejects a key that is already in the set under another name, because
    /// the requests sending it would reach handlers under only one of the
    /// names. This runs at configuration time, so a
    /// plain comparison reveals nothing to a client.
    fn check_not_present(&self, name: &KeyName, secret: &Secret) -> Result<(), ConfigError> {
        let duplicate = self
            .entries
            .iter()
            .find(|entry| same_key(&entry.secret, secret));
        match duplicate {
            Some(entry) => Err(ConfigError::DuplicateKey {
                name: name.as_str().to_owned(),
                other: entry.name.as_str().to_owned(),
            }),
            None => Ok(()),
        }
    }

    /// Returns the number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Returns `true` when the set contains no key.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Returns the key names, in insertion order.
    pub fn names(&self) -> impl Iterator<Item = &KeyName> {
        self.entries.iter().map(|entry| &entry.name)
    }

    /// Returns the names of plaintext keys shorter than 16 bytes.
    pub(crate) fn short_keys(&self) -> impl Iterator<Item = &KeyName> {
        self.entries
            .iter()
            .filter(|entry| matches!(&entry.secret, Secret::Plain(key) if key.len() < RECOMMENDED_MIN_LEN))
            .map(|entry| &entry.name)
    }

    /// Compares a presented value against every key and returns the name of
    /// the one it equals, unless that key has expired.
    ///
    /// The time taken does not depend on which key matched, nor on the
    /// contents or lengths of the keys; see the type's documentation.
    pub fn verify(&self, presented: &[u8]) -> Option<&KeyName> {
        #[cfg(feature = "hashed-keys")]
        let digest = self.has_hashed.then(|| sha256(presented));

        // Every key is compared, and the index of a match is selected
        // without a branch, so a match on the first key costs the same as
        // one on the last, or none.
        let mut found = Choice::from(0);
        let mut index = 0u64;
        for (i, entry) in self.entries.iter().enumerate() {
            let matched = match &entry.secret {
                Secret::Plain(key) => key.ct_eq(presented),
                #[cfg(feature = "hashed-keys")]
                Secret::Sha256(expected) => match &digest {
                    Some(digest) => subtle::ConstantTimeEq::ct_eq(&expected[..], &digest[..]),
                    None => Choice::from(0),
                },
            };
            index = u64::conditional_select(&index, &(i as u64), matched);
            found |= matched;
        }

        if !bool::from(found) {
            return None;
        }
        let entry = self.entries.get(index as usize)?;
        if entry.is_expired() {
            return None;
        }
        Some(&entry.name)
    }
}

impl Entry {
    /// Returns `true` once `not_after` has passed, logging that once.
    fn is_expired(&self) -> bool {
        let Some(not_after) = self.not_after else {
            return false;
        };
        if SystemTime::now() < not_after {
            return false;
        }

        if !self.expiry_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                key = %self.name,
                "the API key `{}` has expired and is rejected; remove it or issue a new one",
                self.name,
            );
        }
        true
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

pub(crate) fn is_visible_ascii(byte: u8) -> bool {
    (0x21..=0x7e).contains(&byte)
}

/// Rejects keys that no client could send in a header value unchanged.
fn check_secret(secret: &str) -> Result<(), KeyProblem> {
    if secret.is_empty() {
        Err(KeyProblem::Empty)
    } else if secret.starts_with(char::is_whitespace) || secret.ends_with(char::is_whitespace) {
        Err(KeyProblem::SurroundingWhitespace)
    } else if secret.chars().any(char::is_control) {
        Err(KeyProblem::ControlCharacter)
    } else if !secret.bytes().all(is_visible_ascii) {
        Err(KeyProblem::NotVisibleAscii)
    } else {
        Ok(())
    }
}

/// Stores a plaintext key as its bytes, and a `sha256:<hex>` key as its
/// digest.
fn parse_secret(secret: &str) -> Result<Secret, KeyProblem> {
    let Some(hex) = secret.strip_prefix(SHA256_PREFIX) else {
        return PaddedKey::new(secret.as_bytes())
            .map(Secret::Plain)
            .ok_or(KeyProblem::TooLong);
    };

    #[cfg(feature = "hashed-keys")]
    {
        decode_digest(hex)
            .map(Secret::Sha256)
            .ok_or(KeyProblem::InvalidDigest)
    }
    #[cfg(not(feature = "hashed-keys"))]
    {
        let _ = hex;
        Err(KeyProblem::HashedKeysDisabled)
    }
}

/// Returns `true` when both secrets accept the same presented value.
fn same_key(left: &Secret, right: &Secret) -> bool {
    match (left, right) {
        (Secret::Plain(left), Secret::Plain(right)) => left.as_bytes() == right.as_bytes(),
        #[cfg(feature = "hashed-keys")]
        (Secret::Sha256(left), Secret::Sha256(right)) => left == right,
        #[cfg(feature = "hashed-keys")]
        (Secret::Plain(plain), Secret::Sha256(digest))
        | (Secret::Sha256(digest), Secret::Plain(plain)) => sha256(plain.as_bytes()) == *digest,
    }
}

#[cfg(feature = "hashed-keys")]
fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

/// Decodes 64 hex digits, in either case, into a digest.
#[cfg(feature = "hashed-keys")]
fn decode_digest(hex: &str) -> Option<[u8; 32]> {
    fn nibble(digit: u8) -> Option<u8> {
        (digit as char).to_digit(16).map(|value| value as u8)
    }

    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (byte, pair) in digest.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(digest)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn set(keys: &[(&str, &str)]) -> KeySet {
        let mut set = KeySet::new();
        for (name, secret) in keys {
            set.insert(*name, *secret).unwrap();
        }
        set
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
            (&"k".repeat(MAX_KEY_LEN + 1), KeyProblem::TooLong),
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
    fn insert_rejects_same_key_under_another_name() {
        let mut keys = set(&[("ci", "shared-key-0123456789")]);
        let error = keys.insert("x", "shared-key-0123456789").unwrap_err();
        assert!(
            matches!(error, ConfigError::DuplicateKey { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("`x`"), "{error}");
        assert!(!error.to_string().contains("shared-key"), "{error}");

        let mut other = KeySet::new();
        other.insert("y", "shared-key-0123456789").unwrap();
        assert!(matches!(
            keys.merge(other),
            Err(ConfigError::DuplicateKey { .. })
        ));
        assert_eq!(keys.len(), 1);
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

    #[test]
    fn expired_key_is_rejected() {
        let mut keys = KeySet::new();
        let past = SystemTime::now() - Duration::from_secs(60);
        let future = SystemTime::now() + Duration::from_secs(3600);
        keys.insert_with_expiry("old", "old-key-0123456789", past)
            .unwrap();
        keys.insert_with_expiry("new", "new-key-0123456789", future)
            .unwrap();

        assert_eq!(keys.verify(b"old-key-0123456789"), None);
        assert_eq!(keys.verify(b"new-key-0123456789").unwrap().as_str(), "new");
    }

    #[test]
    fn short_keys_lists_only_plain_short_keys() {
        let keys = set(&[("short", "abc"), ("long", "0123456789abcdef")]);
        let names: Vec<&str> = keys.short_keys().map(KeyName::as_str).collect();
        assert_eq!(names, ["short"]);
    }

    #[cfg(feature = "hashed-keys")]
    #[test]
    fn hashed_key_matches_its_plaintext() {
        let plaintext = "hashed-key-0123456789";
        let digest: String = sha256(plaintext.as_bytes())
            .iter()
            .map(|byte| format!("{byte:02X}"))
            .collect();
        let keys = set(&[
            ("hashed", &format!("sha256:{digest}")),
            ("plain", "plain-key-0123456789"),
        ]);

        assert_eq!(
            keys.verify(plaintext.as_bytes()).unwrap().as_str(),
            "hashed"
        );
        assert_eq!(
            keys.verify(b"plain-key-0123456789").unwrap().as_str(),
            "plain"
        );
        assert_eq!(keys.verify(format!("sha256:{digest}").as_bytes()), None);
        assert!(!format!("{keys:?}").contains(&digest));

        let mut keys = keys;
        let error = keys.insert("again", plaintext).unwrap_err();
        assert!(
            matches!(error, ConfigError::DuplicateKey { .. }),
            "{error:?}"
        );
    }

    #[cfg(feature = "hashed-keys")]
    #[test]
    fn malformed_digest_is_rejected() {
        for secret in [
            "sha256:",
            "sha256:abc",
            &format!("sha256:{}", "g".repeat(64)),
        ] {
            let error = KeySet::new().insert("h", secret).unwrap_err();
            assert!(
                matches!(
                    error,
                    ConfigError::InvalidKey {
                        problem: KeyProblem::InvalidDigest,
                        ..
                    }
                ),
                "{secret:?}"
            );
        }
    }

    #[cfg(not(feature = "hashed-keys"))]
    #[test]
    fn digest_without_feature_is_rejected() {
        let secret = format!("sha256:{}", "a".repeat(64));
        let error = KeySet::new().insert("h", secret).unwrap_err();
        assert!(error.to_string().contains("hashed-keys"), "{error}");
    }
}
