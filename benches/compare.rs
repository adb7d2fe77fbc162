//! Cost of comparing a presented value with a key: the crate's
//! `KeySet::verify` against `==` and `subtle`'s slice `ct_eq`.
//!
//! Each case compares a value of the key's length that differs from the key
//! at its first or at its last byte, so `==` returns early in the first
//! case and reads everything in the second. The crate is also measured with
//! 1, 8 and 64 keys of 32 bytes, the presented value matching the last one.
//!
//! ```text
//! cargo bench --bench compare
//! ```

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use subtle::ConstantTimeEq;
use tower_api_key::KeySet;

const LENGTHS: [usize; 5] = [16, 32, 64, 256, 4096];

/// The position at which the presented value differs from the key.
#[derive(Clone, Copy)]
enum Mismatch {
    First,
    Last,
}

impl Mismatch {
    fn name(self) -> &'static str {
        match self {
            Self::First => "first",
            Self::Last => "last",
        }
    }
}

/// Builds a key of `len` visible-ASCII bytes. Keys with different `seed`s
/// differ.
fn make_key(len: usize, seed: usize) -> Vec<u8> {
    (0..len)
        .map(|i| b'a' + ((i * 7 + seed * 13) % 26) as u8)
        .collect()
}

/// `key` with the byte at `mismatch` changed to another visible-ASCII byte.
fn presented_value(key: &[u8], mismatch: Mismatch) -> Vec<u8> {
    let mut value = key.to_vec();
    let at = match mismatch {
        Mismatch::First => 0,
        Mismatch::Last => value.len() - 1,
    };
    value[at] = if value[at] == b'X' { b'Y' } else { b'X' };
    value
}

/// Builds a key set of `count` keys of `len` bytes, and returns it with its
/// last key.
fn key_set(count: usize, len: usize) -> (KeySet, Vec<u8>) {
    let mut keys = KeySet::new();
    let mut last = Vec::new();
    for seed in 0..count {
        last = make_key(len, seed);
        let secret = String::from_utf8(last.clone()).expect("keys are ASCII");
        keys.insert(format!("key-{seed}"), secret)
            .expect("generated keys are valid");
    }
    (keys, last)
}

fn compare(c: &mut Criterion) {
    let mut group = c.benchmark_group("compare");

    for len in LENGTHS {
        let (keys, key) = key_set(1, len);

        for mismatch in [Mismatch::First, Mismatch::Last] {
            let presented = presented_value(&key, mismatch);
            assert!(keys.verify(&presented).is_none());
            let case = mismatch.name();

            group.bench_with_input(
                BenchmarkId::new(format!("crate/{case}"), len),
                &presented,
                |b, presented| b.iter(|| keys.verify(black_box(presented)).is_some()),
            );
            group.bench_with_input(
                BenchmarkId::new(format!("eq/{case}"), len),
                &presented,
                |b, presented| {
                    b.iter(|| black_box(key.as_slice()) == black_box(presented.as_slice()))
                },
            );
            group.bench_with_input(
                BenchmarkId::new(format!("subtle/{case}"), len),
                &presented,
                |b, presented| {
                    b.iter(|| bool::from(black_box(key.as_slice()).ct_eq(black_box(presented))))
                },
            );
        }
    }

    for count in [1, 8, 64] {
        let (keys, last) = key_set(count, 32);
        assert!(keys.verify(&last).is_some());
        group.bench_with_input(
            BenchmarkId::new("crate_keys", count),
            &last,
            |b, presented| b.iter(|| keys.verify(black_box(presented)).is_some()),
        );
    }
    group.finish();
}

criterion_group!(benches, compare);
criterion_main!(benches);
