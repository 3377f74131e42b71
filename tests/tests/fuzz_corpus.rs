//! The stable-toolchain half of fuzzing (README.md, "Fuzzing"): every fuzz target's body runs
//! here over the committed seed corpus (`fuzz/corpus/<target>/`), over every input that once
//! broke it (`fuzz/regressions/<target>/`), and over a bounded number of inputs mutated from the
//! corpus with a fixed seed. libFuzzer (`cargo +nightly fuzz run <target>`, local only) explores
//! far more; this keeps CI on stable and makes every crash found there a permanent test.
//!
//! `RINGKV_FUZZ_CASES=<n>` runs n mutated inputs per target instead of the default budget.
//! `RINGKV_WRITE_FUZZ_SEEDS=1` rewrites the generated seed files (after a format change).

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One fuzz target: its name (the `fuzz/fuzz_targets/<name>.rs` file and corpus folder), its
/// body, and how many mutated inputs the default run feeds it (sized by cost per input, so the
/// whole file stays within a few seconds at the test profile's opt-level 1).
struct Target {
    name: &'static str,
    body: fn(&[u8]),
    cases: usize,
}

const TARGETS: [Target; 8] = [
    Target { name: "resp", body: ringkv_net::fuzzing::resp, cases: 20_000 },
    Target { name: "peer_frame", body: ringkv_net::fuzzing::peer_frame, cases: 20_000 },
    Target { name: "node_config_ron", body: ringkv_net::fuzzing::node_config_ron, cases: 5_000 },
    Target { name: "sstable_block", body: ringkv_storage::fuzzing::sstable_block, cases: 20_000 },
    Target { name: "sstable_footer", body: ringkv_storage::fuzzing::sstable_footer, cases: 5_000 },
    Target { name: "wal_replay", body: ringkv_storage::fuzzing::wal_replay, cases: 2_000 },
    Target { name: "manifest", body: ringkv_storage::fuzzing::manifest, cases: 3_000 },
    Target { name: "scenario_ron", body: ringkv_scenarios::fuzzing::scenario_ron, cases: 2_000 },
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of `dir`, sorted by name; none if it does not exist.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<(String, Vec<u8>)> = entries
        .map(|entry| entry.expect("reading a corpus folder").path())
        .filter(|path| path.is_file())
        .map(|path| {
            let name = path.file_name().expect("a file name").to_string_lossy().into_owned();
            (name, fs::read(&path).expect("reading a corpus file"))
        })
        .collect();
    out.sort();
    out
}

/// Runs `target` on `input`; a panic becomes a description of the failure.
fn run(target: &Target, label: &str, input: &[u8]) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(|| (target.body)(input))).map_err(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("(no message)");
        // Kept for a regression file: fuzz/regressions/<target>/ takes it as it is.
        let saved = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "fuzz-failure-{}-{}",
            target.name,
            label.replace(' ', "-")
        ));
        let saved = match fs::write(&saved, input) {
            Ok(()) => saved.display().to_string(),
            Err(error) => format!("not saved: {error}"),
        };
        format!("{} on {label} ({} bytes, {saved}): {message}", target.name, input.len())
    })
}

#[test]
fn every_corpus_and_regression_file_replays_cleanly() {
    let mut failures = Vec::new();
    for target in &TARGETS {
        let corpus = files(&fuzz_dir().join("corpus").join(target.name));
        assert!(!corpus.is_empty(), "fuzz/corpus/{} has no seeds", target.name);
        let regressions = files(&fuzz_dir().join("regressions").join(target.name));
        for (name, input) in corpus.iter().chain(&regressions) {
            failures.extend(run(target, name, input).err());
        }
    }
    assert!(failures.is_empty(), "{} inputs failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn mutated_corpus_inputs_keep_every_property() {
    let scale: Option<usize> = std::env::var("RINGKV_FUZZ_CASES").ok().and_then(|n| n.parse().ok());
    let mut failures = Vec::new();
    let mut ran = 0;
    for (index, target) in TARGETS.iter().enumerate() {
        let corpus: Vec<Vec<u8>> = files(&fuzz_dir().join("corpus").join(target.name))
            .into_iter()
            .map(|(_, bytes)| bytes)
            .collect();
        assert!(!corpus.is_empty(), "fuzz/corpus/{} has no seeds", target.name);
        let mut rng = ChaCha8Rng::seed_from_u64(0x5eed_0000 + index as u64);
        let failures_before = failures.len();
        for case in 0..scale.unwrap_or(target.cases) {
            let input = mutated(&mut rng, &corpus);
            failures.extend(run(target, &format!("mutated case {case}"), &input).err());
            ran += 1;
            // One failure per target is enough to act on; the rest are usually the same bug.
            if failures.len() > failures_before {
                break;
            }
        }
    }
    assert!(ran > 0, "no mutated inputs ran");
    assert!(failures.is_empty(), "{} inputs failed:\n{}", failures.len(), failures.join("\n"));
}

/// A corpus entry (or fresh random bytes) after one to four random mutations.
fn mutated(rng: &mut ChaCha8Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut data = if rng.random_ratio(1, 16) {
        (0..rng.random_range(0..256)).map(|_| rng.random()).collect()
    } else {
        corpus[rng.random_range(0..corpus.len())].clone()
    };
    for _ in 0..rng.random_range(1..=4) {
        mutate(rng, &mut data, corpus);
    }
    data
}

/// Bytes that parsers treat specially: CR, LF and the RESP type markers, RON's punctuation,
/// and the extremes of a byte.
const INTERESTING_BYTES: &[u8] = b"\r\n*$:+-0123456789()[],:\"\x00\x01\x7f\x80\xff";

fn mutate(rng: &mut ChaCha8Rng, data: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    let len = data.len();
    let at = if len == 0 { 0 } else { rng.random_range(0..len) };
    match rng.random_range(0..9) {
        0 if len > 0 => data[at] ^= 1 << rng.random_range(0..8),
        1 if len > 0 => data[at] = INTERESTING_BYTES[rng.random_range(0..INTERESTING_BYTES.len())],
        2 => {
            let count = rng.random_range(1..=8);
            let bytes: Vec<u8> = (0..count).map(|_| rng.random()).collect();
            data.splice(at..at, bytes);
        }
        3 if len > 0 => {
            let end = (at + rng.random_range(1..=16)).min(len);
            data.drain(at..end);
        }
        4 if len > 0 => {
            let end = (at + rng.random_range(1..=32)).min(len);
            let chunk = data[at..end].to_vec();
            data.splice(at..at, chunk);
        }
        5 => data.truncate(at),
        6 => {
            // Length fields: a 4- or 8-byte little-endian integer near a boundary.
            let values = [0u64, 1, 0x7f, 0x80, 0xffff, len as u64, u32::MAX as u64, u64::MAX];
            let value = values[rng.random_range(0..values.len())];
            let width = if rng.random_bool(0.5) { 4 } else { 8 };
            let bytes = &value.to_le_bytes()[..width];
            let end = (at + width).min(len);
            data.splice(at..end, bytes.iter().copied());
        }
        7 => {
            let other = &corpus[rng.random_range(0..corpus.len())];
            if !other.is_empty() {
                let from = rng.random_range(0..other.len());
                let end = (from + rng.random_range(1..=64)).min(other.len());
                data.splice(at..at, other[from..end].iter().copied());
            }
        }
        _ => {
            // A decimal number where text is parsed (RESP lengths, RON fields).
            let values = ["-1", "0", "18446744073709551615", "9223372036854775808", "1e308"];
            let text = values[rng.random_range(0..values.len())].as_bytes();
            data.splice(at..at, text.iter().copied());
        }
    }
}

/// A seed file: its target, file name and bytes.
type Seed = (&'static str, String, Vec<u8>);

/// The seeds the crates generate, by target, which must match the committed files (a format
/// change shows up here), and copies of the repository's scenario files, which need not (a new
/// scenario is not a reason to fail).
fn generated_seeds() -> (Vec<Seed>, Vec<Seed>) {
    let mut generated = ringkv_net::fuzzing::seeds();
    generated.extend(ringkv_storage::fuzzing::seeds());
    let scenarios = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let copied = files(&scenarios)
        .into_iter()
        .chain(files(&scenarios.join("regressions")))
        .filter(|(name, _)| name.ends_with(".ron"))
        .map(|(name, bytes)| ("scenario_ron", name, bytes))
        .collect();
    (generated, copied)
}

#[test]
fn the_committed_seed_corpus_matches_what_the_generators_write() {
    let write = std::env::var_os("RINGKV_WRITE_FUZZ_SEEDS").is_some();
    let (generated, copied) = generated_seeds();
    let mut stale = Vec::new();
    for (target, name, bytes) in generated.iter().chain(if write { &copied[..] } else { &[] }) {
        assert!(TARGETS.iter().any(|t| t.name == *target), "seed for unknown target {target}");
        let path = fuzz_dir().join("corpus").join(target).join(name);
        if write {
            fs::create_dir_all(path.parent().expect("a corpus folder")).expect("corpus folder");
            fs::write(&path, bytes).expect("writing a seed");
        } else if fs::read(&path).ok().as_ref() != Some(bytes) {
            stale.push(path.display().to_string());
        }
    }
    for target in &TARGETS {
        let seeded = generated.iter().chain(&copied).any(|(t, _, _)| *t == target.name);
        assert!(seeded, "no seeds for {}", target.name);
    }
    assert!(
        stale.is_empty(),
        "seed files differ from what the generators write (a format changed?); rerun with \
         RINGKV_WRITE_FUZZ_SEEDS=1:\n{}",
        stale.join("\n")
    );
}

/// Runs one file of `fuzz/regressions/<target>/` and fails naming it.
fn assert_regression_passes(target: &str, name: &str) {
    let target = TARGETS.iter().find(|t| t.name == target).expect("a known target");
    let path = fuzz_dir().join("regressions").join(target.name).join(name);
    let input = fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let outcome = run(target, name, &input);
    assert!(outcome.is_ok(), "regression {}/{name} fails again: {outcome:?}", target.name);
}

#[test]
fn regression_sstable_readahead_over_blocks_out_of_order() {
    // An index whose next block starts before the current one made the readahead buffer shorter
    // than the block it was read for: slicing it panicked.
    assert_regression_passes("sstable_footer", "readahead-blocks-out-of-order");
}

#[test]
fn regression_wal_sequence_number_overflow() {
    // A WAL record whose first sequence number is near u64::MAX overflowed computing its last.
    assert_regression_passes("wal_replay", "sequence-number-overflow");
}

#[test]
fn regression_peer_frame_body_shorter_than_header() {
    // `decode_body` split a checksum out of a body of fewer than 5 bytes.
    assert_regression_passes("peer_frame", "body-shorter-than-header");
}

#[test]
fn regression_manifest_table_on_two_levels() {
    // A manifest naming one table on two levels tripped the engine's invariant check (tables
    // are kept by number, so the version counted one more file than the engine held).
    assert_regression_passes("manifest", "table-on-two-levels");
}

#[test]
fn regression_scenario_with_a_nan_knob() {
    // `crashes_per_sec: Fixed(NaN)` was accepted, and NaN != NaN broke the scenario's RON
    // round trip (libFuzzer, 600 s run of scenario_ron); a knob must now be finite and >= 0.
    assert_regression_passes("scenario_ron", "nan-knob");
    let refused = ringkv_scenarios::scenario::Scenario::parse(
        "Scenario(name: \"x\", faults: (crashes_per_sec: Fixed(NaN)))",
        "nan.ron",
    )
    .expect_err("a NaN knob is refused");
    assert!(refused.to_string().contains("faults.crashes_per_sec"), "{refused}");
}

#[test]
fn regression_resp_long_length_line_split_into_reads() {
    // A 47-byte length line with its CR at the end was an incomplete command when read whole
    // but an error when read in two pieces.
    assert_regression_passes("resp", "long-length-line-split");
}
