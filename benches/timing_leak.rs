//! A timing-leak check in the style of dudect: does the time `KeySet::verify`
//! takes depend on the secret key?
//!
//! Each pair measures one operation on two classes of input. Every
//! measurement picks its class at random, copies that class's presented
//! value into one shared buffer (so both classes read the same memory), and
//! times one call with `Instant`. Welch's t-test then compares the two
//! classes, on all measurements and on measurements below a series of
//! percentiles, as dudect does, because the slow tail (interrupts, the other
//! core's builds) hides small differences. The largest |t| is printed.
//!
//! |t| above 4.5 means the two classes take measurably different time. The
//! crate's comparison should stay below it on every pair. `==` is the
//! control: it must exceed 4.5 on the long key, or the run was too noisy to
//! show anything.
//!
//! ```text
//! cargo bench --bench timing_leak                         # 1,000,000 per pair
//! cargo bench --bench timing_leak -- --measurements 4000000 crate
//! ```
//!
//! Without `--bench` on the command line (as under `cargo test --benches`)
//! every pair runs 1,000 measurements, only to check that it runs.

use std::hint::black_box;
use std::time::{Duration, Instant};

use tower_api_key::KeySet;

/// Measurements per pair in a full run, split between the two classes.
const DEFAULT_MEASUREMENTS: usize = 1_000_000;
/// Measurements per pair when run without `--bench`.
const SMOKE_MEASUREMENTS: usize = 1_000;
/// Calls made before measuring, to settle caches and the branch predictor.
const WARM_UP_CALLS: usize = 10_000;
/// The pass line: the usual threshold for Welch's t in dudect.
const T_THRESHOLD: f64 = 4.5;
/// Key lengths in bytes: a common one and a long one for the control.
const KEY_LENGTHS: [usize; 2] = [32, 512];
/// Number of percentile crops, as dudect does with its 100 (fewer here,
/// because each crop is a pass over all measurements).
const CROPS: usize = 20;

fn main() {
    let options = Options::from_args();
    let pairs: Vec<Pair> = pairs()
        .into_iter()
        .filter(|pair| {
            options
                .filter
                .as_ref()
                .is_none_or(|f| pair.name.contains(f))
        })
        .collect();

    println!(
        "{} measurements per pair, classes interleaved at random; pass line |t| < {T_THRESHOLD}",
        options.measurements
    );
    if !options.full {
        println!(
            "test mode (no --bench argument): too few measurements for the figures to mean anything"
        );
    }
    println!(
        "{:<44} {:>9} {:>11} {:>11}  verdict",
        "pair", "max |t|", "mean A", "mean B"
    );

    let started = Instant::now();
    for mut pair in pairs {
        let result = run(&mut pair, options.measurements);
        let verdict = match (pair.role, result.max_t.abs() < T_THRESHOLD) {
            (Role::Crate, true) => "pass",
            (Role::Crate, false) => "LEAK",
            (Role::Control, true) => "control did NOT detect the difference",
            (Role::Control, false) => "control detects the difference",
            (Role::Informational, _) => "expected to differ (the client knows it)",
        };
        println!(
            "{:<44} {:>9.2} {:>9.1}ns {:>9.1}ns  {verdict}",
            pair.name, result.max_t, result.mean_a, result.mean_b,
        );
    }
    println!("took {:.1?}", started.elapsed());
}

struct Options {
    measurements: usize,
    filter: Option<String>,
    /// `cargo bench` passes `--bench`; `cargo test --benches` does not.
    full: bool,
}

impl Options {
    fn from_args() -> Self {
        let mut measurements = None;
        let mut filter = None;
        let mut full = false;
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--bench" => full = true,
                "--measurements" => {
                    let value = args.next().unwrap_or_default();
                    let parsed = value.replace('_', "").parse().unwrap_or_else(|_| {
                        panic!("--measurements expects a positive integer, not {value:?}")
                    });
                    measurements = Some(parsed);
                }
                other if other.starts_with("--") => {}
                other => filter = Some(other.to_owned()),
            }
        }
        let default = if full {
            DEFAULT_MEASUREMENTS
        } else {
            SMOKE_MEASUREMENTS
        };
        Self {
            measurements: measurements.unwrap_or(default),
            filter,
            full,
        }
    }
}

// ==== pairs ====

/// The expected outcome of a pair.
#[derive(Clone, Copy)]
enum Role {
    /// The crate's comparison: |t| must stay under the threshold.
    Crate,
    /// `==`: must exceed the threshold on a long key.
    Control,
    /// A difference the client already has the information for, shown for scale.
    Informational,
}

/// Compares a presented value with the secret of class 0 or class 1.
type Compare = Box<dyn FnMut(usize, &[u8]) -> bool>;

/// One operation and its two classes of input.
struct Pair {
    name: String,
    role: Role,
    /// Presented values of class A and class B, of equal length unless the
    /// pair is about the presented length.
    presented: [Vec<u8>; 2],
    compare: Compare,
}

/// Builds a key of `len` visible-ASCII bytes. Keys with different `seed`s differ.
fn make_key(len: usize, seed: usize) -> Vec<u8> {
    (0..len)
        .map(|i| b'a' + ((i * 7 + seed * 13) % 26) as u8)
        .collect()
}

fn with_byte_changed(value: &[u8], at: usize) -> Vec<u8> {
    let mut value = value.to_vec();
    value[at] = if value[at] == b'X' { b'Y' } else { b'X' };
    value
}

fn single_key_set(key: &[u8]) -> KeySet {
    let mut keys = KeySet::new();
    let secret = String::from_utf8(key.to_vec()).expect("keys are ASCII");
    keys.insert("key", secret)
        .expect("generated keys are valid");
    keys
}

/// Builds a pair that runs the crate's comparison with one key per class.
/// Classes with the same key share one key set, so that they read the same
/// memory.
fn crate_pair(name: String, role: Role, keys: [Vec<u8>; 2], presented: [Vec<u8>; 2]) -> Pair {
    let compare: Compare = if keys[0] == keys[1] {
        let set = single_key_set(&keys[0]);
        Box::new(move |_, presented| set.verify(presented).is_some())
    } else {
        let sets = keys.map(|key| single_key_set(&key));
        Box::new(move |class, presented| sets[class].verify(presented).is_some())
    };
    Pair {
        name,
        role,
        presented,
        compare,
    }
}

/// Builds a pair that runs `==` with one key per class.
fn eq_pair(name: String, role: Role, keys: [Vec<u8>; 2], presented: [Vec<u8>; 2]) -> Pair {
    Pair {
        name,
        role,
        presented,
        compare: Box::new(move |class, presented| black_box(keys[class].as_slice()) == presented),
    }
}

fn pairs() -> Vec<Pair> {
    let mut pairs = Vec::new();
    for len in KEY_LENGTHS {
        let key = make_key(len, 0);
        let first = with_byte_changed(&key, 0);
        let last = with_byte_changed(&key, len - 1);

        // The key is fixed; where the presented value differs from it is
        // the secret-dependent part.
        let mismatch =
            |implementation: &str| format!("{implementation} {len}B: mismatch first vs last");
        pairs.push(crate_pair(
            mismatch("crate"),
            Role::Crate,
            [key.clone(), key.clone()],
            [first.clone(), last.clone()],
        ));
        pairs.push(eq_pair(
            mismatch("==   "),
            Role::Control,
            [key.clone(), key.clone()],
            [first, last],
        ));

        // The presented value is fixed (and matches no key); the configured
        // key is shorter than it, as long, or longer. Only the key's length
        // differs between classes, and `KeySet`'s documentation says the
        // comparison does not reveal it.
        let presented = with_byte_changed(&make_key(len, 1), len - 1);
        let shorter = make_key(len / 2, 1);
        let equal = make_key(len, 1);
        let longer = make_key(len * 2, 1);
        let length_pairs = [
            ("key shorter vs equal", &shorter, &equal),
            ("key equal vs longer", &equal, &longer),
            ("key shorter vs longer", &shorter, &longer),
        ];
        for (case, a, b) in length_pairs {
            let name = |implementation: &str| format!("{implementation} {len}B: {case}");
            let keys = [a.clone(), b.clone()];
            let presented = [presented.clone(), presented.clone()];
            pairs.push(crate_pair(
                name("crate"),
                Role::Crate,
                keys.clone(),
                presented.clone(),
            ));
            pairs.push(eq_pair(name("==   "), Role::Control, keys, presented));
        }
    }

    // With several keys, every key is compared: a match on the first key
    // must cost what a match on the last one does.
    let keys: Vec<Vec<u8>> = (0..8).map(|seed| make_key(32, seed)).collect();
    let mut set = KeySet::new();
    for (i, key) in keys.iter().enumerate() {
        let secret = String::from_utf8(key.clone()).expect("keys are ASCII");
        set.insert(format!("key-{i}"), secret)
            .expect("generated keys are valid");
    }
    pairs.push(Pair {
        name: "crate 32B x8 keys: match first vs last key".to_owned(),
        role: Role::Crate,
        presented: [keys[0].clone(), keys[7].clone()],
        compare: Box::new(move |_, presented| set.verify(presented).is_some()),
    });

    // For scale: the presented length is the client's own choice, and the
    // comparison time grows with it by design.
    let key = make_key(32, 0);
    pairs.push(crate_pair(
        "crate 32B: presented 16B vs 64B".to_owned(),
        Role::Informational,
        [key.clone(), key],
        [make_key(16, 2), make_key(64, 2)],
    ));
    pairs
}

// ==== measuring ====

struct PairResult {
    max_t: f64,
    mean_a: f64,
    mean_b: f64,
}

/// Takes `measurements` timings of `pair`, classes chosen at random, and
/// returns the largest |t| over the uncropped and cropped tests.
fn run(pair: &mut Pair, measurements: usize) -> PairResult {
    let mut rng = SplitMix64::from_clock();
    let buffer_len = pair.presented.iter().map(Vec::len).max().unwrap_or(0);
    let mut buffer = vec![0u8; buffer_len];

    for i in 0..WARM_UP_CALLS {
        let class = i % 2;
        let presented = &pair.presented[class];
        buffer[..presented.len()].copy_from_slice(presented);
        black_box((pair.compare)(class, black_box(&buffer[..presented.len()])));
    }

    let mut samples: Vec<(u8, u64)> = Vec::with_capacity(measurements);
    for _ in 0..measurements {
        let class = (rng.next() & 1) as usize;
        let presented = &pair.presented[class];
        buffer[..presented.len()].copy_from_slice(presented);
        let input = black_box(&buffer[..presented.len()]);

        let start = Instant::now();
        let result = (pair.compare)(class, input);
        let elapsed = start.elapsed();

        black_box(result);
        samples.push((class as u8, duration_ns(elapsed)));
    }

    let mut sorted: Vec<u64> = samples.iter().map(|&(_, ns)| ns).collect();
    sorted.sort_unstable();
    let mut thresholds = vec![u64::MAX];
    for k in 0..CROPS {
        // dudect's crops: 1 - 0.5^(10 (k + 1) / CROPS) of the distribution.
        let fraction = 1.0 - 0.5f64.powf(10.0 * (k as f64 + 1.0) / CROPS as f64);
        let index = ((sorted.len() as f64 * fraction) as usize).min(sorted.len() - 1);
        thresholds.push(sorted[index]);
    }

    let mut max_t: f64 = 0.0;
    let mut uncropped = [Welford::default(), Welford::default()];
    for threshold in thresholds {
        let mut classes = [Welford::default(), Welford::default()];
        for &(class, ns) in &samples {
            if ns <= threshold {
                classes[class as usize].push(ns as f64);
            }
        }
        let t = welch_t(&classes[0], &classes[1]);
        if t.abs() > max_t.abs() {
            max_t = t;
        }
        if threshold == u64::MAX {
            uncropped = classes;
        }
    }

    PairResult {
        max_t: max_t.abs(),
        mean_a: uncropped[0].mean,
        mean_b: uncropped[1].mean,
    }
}

fn duration_ns(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Running mean and variance (Welford's algorithm).
#[derive(Default, Clone, Copy)]
struct Welford {
    count: f64,
    mean: f64,
    m2: f64,
}

impl Welford {
    fn push(&mut self, x: f64) {
        self.count += 1.0;
        let delta = x - self.mean;
        self.mean += delta / self.count;
        self.m2 += delta * (x - self.mean);
    }

    fn variance(&self) -> f64 {
        if self.count < 2.0 {
            0.0
        } else {
            self.m2 / (self.count - 1.0)
        }
    }
}

/// Welch's t statistic; 0 when either class has too few samples.
fn welch_t(a: &Welford, b: &Welford) -> f64 {
    if a.count < 2.0 || b.count < 2.0 {
        return 0.0;
    }
    let standard_error = (a.variance() / a.count + b.variance() / b.count).sqrt();
    if standard_error == 0.0 {
        return 0.0;
    }
    (a.mean - b.mean) / standard_error
}

/// SplitMix64 (Steele, Lea and Flood, 2014): enough randomness to choose a
/// class, with no dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn from_clock() -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self(duration_ns(now))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}
