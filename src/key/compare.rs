//! The constant-time comparison of a presented value with one key.

use std::fmt;

use subtle::{Choice, ConstantTimeEq};

/// The maximum length of a configured key, in bytes.
///
/// Every key is stored zero-padded to this length, so a comparison reads
/// the same bytes whatever the key's length, and a presented value longer
/// than this matches no key without any comparison.
pub(crate) const MAX_KEY_LEN: usize = 4096;

/// A plaintext key, zero-padded to [`MAX_KEY_LEN`] bytes.
#[derive(Clone)]
pub(crate) struct PaddedKey {
    bytes: Box<[u8]>,
    len: usize,
}

impl PaddedKey {
    /// Returns `None` for a key longer than [`MAX_KEY_LEN`].
    pub(crate) fn new(key: &[u8]) -> Option<Self> {
        if key.len() > MAX_KEY_LEN {
            return None;
        }
        let mut bytes = vec![0u8; MAX_KEY_LEN].into_boxed_slice();
        bytes[..key.len()].copy_from_slice(key);
        Some(Self {
            bytes,
            len: key.len(),
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Returns the key's bytes, for checks at configuration time only.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Compares the key with `presented` in time that depends only on
    /// `presented.len()`.
    ///
    /// The loop XORs the presented bytes with the same number of bytes of
    /// the padded key and ORs the results together, with no branch on the
    /// data. So it reads the same memory and does the same work whatever the
    /// key's contents and length. The lengths are compared separately,
    /// so a prefix of the key, or the key followed by zero bytes, fails.
    pub(crate) fn ct_eq(&self, presented: &[u8]) -> Choice {
        let Some(padded) = self.bytes.get(..presented.len()) else {
            // Longer than any key can be: the bound is public, so this
            // early return reveals nothing about the key.
            return Choice::from(0);
        };

        let mut difference = 0u8;
        for (left, right) in padded.iter().zip(presented) {
            difference |= left ^ right;
        }

        // NOTE: folding these three results into one `Choice` conversion
        // made a 32-byte comparison 2.3 times faster, but the timing-leak
        // bench then flagged a mismatch at the first byte against one at
        // the last (|t| up to 49), so the three conversions stay until
        // that is understood.
        let same_length = (self.len as u64).ct_eq(&(presented.len() as u64));
        let same_bytes = std::hint::black_box(difference).ct_eq(&0);
        same_length & same_bytes & !Choice::from(u8::from(self.len == 0))
    }
}

impl fmt::Debug for PaddedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn equal(key: &[u8], presented: &[u8]) -> bool {
        bool::from(PaddedKey::new(key).unwrap().ct_eq(presented))
    }

    #[test]
    fn accepts_only_exact_bytes() {
        let key = b"0123456789abcdef";
        assert!(equal(key, key));
        assert!(!equal(key, b"0123456789abcde"));
        assert!(!equal(key, b"0123456789abcdefg"));
        assert!(!equal(key, b"0123456789ABCDEF"));
        assert!(!equal(key, b"x123456789abcdef"));
        assert!(!equal(key, b"0123456789abcdex"));
        assert!(!equal(key, b""));
    }

    #[test]
    fn rejects_key_followed_by_zero_bytes() {
        // The padding is zeros, so only the length check rejects these.
        assert!(!equal(b"abc", b"abc\0"));
        assert!(!equal(b"abc", &[b'a', b'b', b'c', 0, 0, 0]));
    }

    #[test]
    fn empty_key_matches_nothing() {
        assert!(!equal(b"", b""));
        assert!(!equal(b"", b"a"));
    }

    #[test]
    fn longest_key_matches_and_longer_values_do_not() {
        let key = vec![b'k'; MAX_KEY_LEN];
        assert!(equal(&key, &key));
        let longer = vec![b'k'; MAX_KEY_LEN + 1];
        assert!(!equal(&key, &longer));
        assert!(PaddedKey::new(&longer).is_none());
    }
}
