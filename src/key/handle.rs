//! [`KeySetHandle`]: replacing the keys of a running service.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use super::{KeyName, KeySet};

/// A shared, replaceable [`KeySet`], for rotating keys without a restart.
///
/// Every service built from one [`ApiKeyLayer`](crate::ApiKeyLayer) reads
/// its keys through the same handle; get it with
/// [`ApiKeyLayer::key_set_handle`](crate::ApiKeyLayer::key_set_handle).
/// [`replace`](Self::replace) swaps the whole set at once. Each request is
/// checked against one set, the old or the new, never a mix. A request
/// that was checked before the swap keeps the result it got.
///
/// ```
/// use tower_api_key::{ApiKeyLayer, KeySet};
///
/// let layer = ApiKeyLayer::builder()
///     .named_key("ci", "ci-0123456789abcdef")
///     .build()
///     .unwrap();
/// let handle = layer.key_set_handle().unwrap();
///
/// let mut rotated = KeySet::new();
/// rotated.insert("ci", "ci-fedcba9876543210").unwrap();
/// handle.replace(rotated);
///
/// let keys = handle.load();
/// assert!(keys.verify(b"ci-0123456789abcdef").is_none());
/// assert_eq!(keys.verify(b"ci-fedcba9876543210").unwrap().as_str(), "ci");
/// ```
#[derive(Clone)]
pub struct KeySetHandle {
    current: Arc<RwLock<Arc<KeySet>>>,
}

impl KeySetHandle {
    /// Creates a handle holding `keys`.
    pub fn new(keys: KeySet) -> Self {
        Self {
            current: Arc::new(RwLock::new(Arc::new(keys))),
        }
    }

    /// Replaces the whole key set.
    ///
    /// Logs the number and names of the new keys, never the keys, and warns
    /// about keys shorter than 16 characters as the builder does. An empty
    /// set is allowed and rejects every request that needs a key, with a
    /// warning.
    pub fn replace(&self, keys: KeySet) {
        let names: Vec<&str> = keys.names().map(KeyName::as_str).collect();
        crate::builder::warn_short_keys(&keys);
        if keys.is_empty() {
            tracing::warn!(
                "API key set replaced by an empty set: every request that needs a key is rejected"
            );
        } else {
            tracing::info!(keys = names.len(), names = ?names, "API key set replaced: {} key(s)", names.len());
        }

        let keys = Arc::new(keys);
        // A panic elsewhere while the lock was held cannot leave the set
        // half-written, because the only write is this one assignment.
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = keys;
    }

    /// Returns the current key set.
    pub fn load(&self) -> Arc<KeySet> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Runs the comparison under the read lock, so the whole check uses one
    /// set without cloning it.
    pub(crate) fn verify(&self, presented: &[u8]) -> Option<KeyName> {
        let keys = self.current.read().unwrap_or_else(PoisonError::into_inner);
        keys.verify(presented).cloned()
    }
}

impl fmt::Debug for KeySetHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("KeySetHandle").field(&self.load()).finish()
    }
}
