//! The constant-time comparison of a presented value with one key.

use subtle::{Choice, ConditionallySelectable, ConstantTimeEq, ConstantTimeLess};

/// Compares `key` with `presented` in time that depends only on
/// `presented.len()`.
///
/// The loop walks the presented bytes. At each position it reads the key
/// byte at the same position, or the key's last byte once the position is
/// past the key's end, choosing the index without a branch. Equal lengths
/// are part of the result, so a prefix or an extension of the key fails.
pub(crate) fn ct_equal(key: &[u8], presented: &[u8]) -> Choice {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn equal(key: &[u8], presented: &[u8]) -> bool {
        bool::from(ct_equal(key, presented))
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
    fn rejects_repeated_last_byte() {
        // Past the key's end the loop reads the last byte, so a value that
        // repeats it must still fail on length.
        assert!(!equal(b"abc", b"abcccc"));
    }

    #[test]
    fn empty_key_matches_nothing() {
        assert!(!equal(b"", b""));
        assert!(!equal(b"", b"a"));
    }
}
