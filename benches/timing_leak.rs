//! A timing-leak check in the style of dudect: does the time `KeySet::verify`
//! takes depend on the secret key?
//!
//! Each pair times one operation on two classes of input. Every measurement
//! picks its class at random and copies that class's presented value into
//! one shared buffer. Pairs whose classes differ in the key then build the key
//! set again, so that both classes' keys get the same memory. A few untimed
//! calls follow, then one call timed with `Instant`. Welch's t-test compares
//! the two classes on all measurements, on measurements below a series of
//! percentiles (the slow tail of interrupts and other processes hides small
//! differences), and on squared distances from the class mean (a difference
//! in spread), as `dudect.h` (github.com/oreparaz/dudect) does. The largest
//! |t| is printed.
//!
//! |t| at or above 4.5 means the two classes take measurably different time.
//! The crate's comparison should stay below it on every pair; a pair over
//! the line is run once more and fails only if the rerun is over it too,
//! because on a shared machine a single run is occasionally over it with
//! nothing differing. `==` is the control: it must exceed 4.5 on the long
//! key, or the run was too noisy to show anything. A null pair (the same key
//! in both classes) shows what the harness alone gives.
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
const WARM_UP_CALLS: usize = 100_000;
/// Busy time before the first pair.
const START_UP_SPIN: Duration = Duration::from_millis(500);
/// Untimed calls made before each measurement, after preparing the class.
const SETTLE_CALLS: usize = 3;
/// The pass line. It is stricter than the 10 above which `dudect.h` reports
/// "probably not constant time".
const T_THRESHOLD: f64 = 4.5;
/// The long key, on which the `==` control must exceed the pass line.
const LONG_KEY_LEN: usize = 512;
/// Key lengths in bytes: a common one and the long one.
const KEY_LENGTHS: [usize; 2] = [32, LONG_KEY_LEN];
/// Number of percentile crops. `dudect.h` uses 100; fewer here, because
/// each crop is a pass over all measurements.
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
    // The first pair measured right after start-up was over the line more
    // often than the others; busy time first evens that out.
    while started.elapsed() < START_UP_SPIN {
        black_box(started.elapsed());
    }

    let mut crate_pairs = 0;
    let mut crate_failures = 0;
    let mut crate_reruns = 0;
    let mut required_controls = 0;
    let mut controls_detected = 0;
    for mut pair in pairs {
        let mut result = run(&mut pair, options.measurements);
        let mut below = result.max_t < T_THRESHOLD;
        let mut rerun = None;
        if matches!(pair.role, Role::Crate | Role::Null) && !below {
            // A leak shows again; noise from the other core's work rarely
            // lands on the same pair twice.
            let first = result.max_t;
            result = run(&mut pair, options.measurements);
            below = result.max_t < T_THRESHOLD;
            rerun = Some(first);
        }

        let verdict = match (pair.role, below) {
            (Role::Crate, true) if rerun.is_some() => "pass on the rerun",
            (Role::Crate, true) => "pass",
            (Role::Crate, false) => "FAIL (twice)",
            (Role::Control { .. }, false) => "control detects the difference",
            (Role::Control { required: true }, true) => "control did NOT detect it: run too noisy",
            (Role::Control { required: false }, true) => "control did not detect it (short key)",
            (Role::Informational, _) => "expected to differ (the client chose it)",
            (Role::Null, true) if rerun.is_some() => "pass on the rerun (nothing differs)",
            (Role::Null, true) => "pass (nothing differs)",
            (Role::Null, false) => "FAIL (twice): the harness alone exceeds the line",
        };
        match pair.role {
            Role::Crate => {
                crate_pairs += 1;
                crate_failures += usize::from(!below);
                crate_reruns += usize::from(rerun.is_some());
            }
            Role::Control { required: true } => {
                required_controls += 1;
                controls_detected += usize::from(!below);
            }
            _ => {}
        }
        let rerun_note = match rerun {
            Some(first) => format!(" (first run: {first:.2})"),
            None => String::new(),
        };
        println!(
            "{:<44} {:>9.2} {:>9.1}ns {:>9.1}ns  {verdict}{rerun_note}",
            pair.name, result.max_t, result.mean_a, result.mean_b,
        );
    }
    println!(
        "crate pairs at or over {T_THRESHOLD} twice: {crate_failures} of {crate_pairs} \
         ({crate_reruns} rerun); {LONG_KEY_LEN}-byte controls over it: \
         {controls_detected} of {required_controls}"
    );
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
                    let parsed = value.replace('_', "").parse().ok().filter(|&n| n >= 2);
                    let Some(parsed) = parsed else {
                        panic!("--measurements expects an integer of at least 2, not {value:?}");
                    };
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
    /// `==`: must exceed the threshold where `required` (on the long key).
    /// On the short key the difference is below a nanosecond, and whether
    /// it shows depends on the run.
    Control { required: bool },
    /// A difference the client already has the information for, shown for scale.
    Informational,
    /// The same set-up as a crate pair, with nothing differing between the
    /// classes: |t| shows what the harness alone gives.
    Null,
}

/// One operation and its two classes of input.
struct Pair {
    name: String,
    role: Role,
    /// Presented values of class 0 and class 1, of equal length unless the
    /// pair is about the presented length.
    presented: [Vec<u8>; 2],
    operation: Operation,
}

/// The operation a pair times.
enum Operation {
    /// `KeySet::verify` on one key set that both classes share.
    Shared(KeySet),
    /// `KeySet::verify` with a key per class. The set is dropped and built
    /// again with the class's key before each measurement (outside the timed
    /// part), so the allocator hands both classes the same memory and only
    /// the key differs.
    Rebuilt { keys: [Vec<u8>; 2], set: KeySet },
    /// `==` with a key per class.
    Eq([Vec<u8>; 2]),
}

impl Operation {
    /// Runs before each measurement, outside the timed part.
    fn prepare(&mut self, class: usize) {
        if let Self::Rebuilt { keys, set } = self {
            // Drop first, so that the new set reuses the old one's memory.
            drop(std::mem::take(set));
            *set = single_key_set(&keys[class]);
        }
    }

    /// Compares `presented` with the class's key: the timed call.
    fn compare(&self, class: usize, presented: &[u8]) -> bool {
        match self {
            Self::Shared(set) | Self::Rebuilt { set, .. } => set.verify(presented).is_some(),
            Self::Eq(keys) => black_box(keys[class].as_slice()) == presented,
        }
    }
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

fn rebuilt(keys: [&[u8]; 2]) -> Operation {
    Operation::Rebuilt {
        keys: keys.map(<[u8]>::to_vec),
        set: KeySet::new(),
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
        pairs.push(Pair {
            name: format!("crate {len}B: mismatch first vs last"),
            role: Role::Crate,
            presented: [first.clone(), last.clone()],
            operation: Operation::Shared(single_key_set(&key)),
        });
        pairs.push(Pair {
            name: format!("==    {len}B: mismatch first vs last"),
            role: Role::Control {
                required: len == LONG_KEY_LEN,
            },
            presented: [first, last],
            operation: Operation::Eq([key.clone(), key]),
        });

        // The presented value is fixed (and matches no key); the configured
        // key is shorter than it, as long, or longer. Only the key's length
        // differs between classes, and `KeySet`'s documentation says the
        // comparison does not reveal it. `==` differs only when one class
        // has the presented value's length, so it is the control for the
        // first two pairs and not the third.
        let presented = with_byte_changed(&make_key(len, 1), len - 1);
        let shorter = make_key(len / 2, 1);
        let equal = make_key(len, 1);
        let longer = make_key(len * 2, 1);
        let length_pairs = [
            ("key shorter vs equal", &shorter, &equal, true),
            ("key equal vs longer", &equal, &longer, true),
            ("key shorter vs longer", &shorter, &longer, false),
        ];
        for (case, a, b, with_control) in length_pairs {
            pairs.push(Pair {
                name: format!("crate {len}B: {case}"),
                role: Role::Crate,
                presented: [presented.clone(), presented.clone()],
                operation: rebuilt([a, b]),
            });
            if with_control {
                pairs.push(Pair {
                    name: format!("==    {len}B: {case}"),
                    role: Role::Control {
                        required: len == LONG_KEY_LEN,
                    },
                    presented: [presented.clone(), presented.clone()],
                    operation: Operation::Eq([a.clone(), b.clone()]),
                });
            }
        }

        pairs.push(Pair {
            name: format!("crate {len}B: same key, rebuilt (null)"),
            role: Role::Null,
            presented: [presented.clone(), presented],
            operation: rebuilt([&equal, &equal]),
        });
    }

    // With several keys, every key is compared: a match on the first key
    // must cost what a match on the last one does.
    // The keys share one pattern and differ in their first byte, so no two
    // are equal (a key set rejects the same key under two names).
    let keys: Vec<Vec<u8>> = (0..8u8)
        .map(|index| {
            let mut key = make_key(32, 1);
            key[0] = b'A' + index;
            key
        })
        .collect();
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
        operation: Operation::Shared(set),
    });

    // For scale: the presented length is the client's own choice, and the
    // comparison time grows with it by design.
    pairs.push(Pair {
        name: "crate 32B: presented 16B vs 64B".to_owned(),
        role: Role::Informational,
        presented: [make_key(16, 2), make_key(64, 2)],
        operation: Operation::Shared(single_key_set(&make_key(32, 0))),
    });
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

    // No more warm-up calls than measurements, so that a short run stays short.
    for i in 0..WARM_UP_CALLS.min(measurements) {
        let class = i % 2;
        let input = load(&mut buffer, &pair.presented[class]);
        pair.operation.prepare(class);
        black_box(pair.operation.compare(class, input));
    }

    // Written in full first, so that no page fault lands in a measurement.
    let mut samples: Vec<(u8, u64)> = vec![(0, 0); measurements];
    for sample in &mut samples {
        let class = (rng.next() & 1) as usize;
        let input = load(&mut buffer, &pair.presented[class]);
        pair.operation.prepare(class);
        // Building a key set of the class's key leaves traces of that key's
        // length in the caches and the branch predictor. Untimed calls of
        // the operation itself replace them before the timed one.
        for _ in 0..SETTLE_CALLS {
            black_box(pair.operation.compare(class, input));
        }

        let start = Instant::now();
        let result = pair.operation.compare(class, input);
        let elapsed = start.elapsed();

        black_box(result);
        *sample = (class as u8, duration_ns(elapsed));
    }

    let mut sorted: Vec<u64> = samples.iter().map(|&(_, ns)| ns).collect();
    sorted.sort_unstable();
    let mut thresholds = vec![u64::MAX];
    for k in 0..CROPS {
        // The crop schedule of `dudect.h`: 1 - 0.5^(10 (k + 1) / CROPS).
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

    // The second-order test: a difference in spread, not in mean.
    let mut spread = [Welford::default(), Welford::default()];
    for &(class, ns) in &samples {
        let centered = ns as f64 - uncropped[class as usize].mean;
        spread[class as usize].push(centered * centered);
    }
    let t = welch_t(&spread[0], &spread[1]);
    if t.abs() > max_t.abs() {
        max_t = t;
    }

    PairResult {
        max_t: max_t.abs(),
        mean_a: uncropped[0].mean,
        mean_b: uncropped[1].mean,
    }
}

/// Copies `presented` into the shared buffer and returns that part of it.
fn load<'b>(buffer: &'b mut [u8], presented: &[u8]) -> &'b [u8] {
    let input = &mut buffer[..presented.len()];
    input.copy_from_slice(presented);
    black_box(input)
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
