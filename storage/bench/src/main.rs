//! `ringkv-storage-bench`: db_bench-style workloads against ringkv-storage and its peers, in
//! the same run on the same machine, printing ratios (or JSON lines with `--json`).
//!
//! Workloads: fillseq and fillrandom (each on a fresh database), overwrite, readrandom (hits),
//! readmissing, readseq, scan (short range scans), then a full compaction and the space used.
//! Keys are 16 bytes, values 100 bytes. Every engine runs every workload once per value kind
//! (`--values`: random bytes, which do not compress, and JSON-like text, which does) and per
//! block compression (`--compression`: none, lz4, zstd; fjall has no zstd), and the report gives
//! throughput and space on disk for each, with the ratios between engines and between
//! compressions. The WAL is on without a sync per write; `--sync` syncs after every batch. The
//! ringkv driver runs flushes and compactions on worker threads, as a production driver would:
//! the engine itself never spawns threads.

mod engines;

use std::path::Path;
use std::time::{Duration, Instant};

use clap::Parser;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use engines::{BenchEngine, Codec};

#[derive(Parser, Debug, Clone)]
#[command(about = "Benchmark ringkv-storage against fjall (and RocksDB with --features rocksdb)")]
struct Args {
    /// Number of keys.
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
    /// Writes per batch.
    #[arg(long, default_value_t = 1)]
    batch: u64,
    /// Sync the WAL after every batch.
    #[arg(long)]
    sync: bool,
    /// Point reads per read workload (defaults to --keys).
    #[arg(long)]
    reads: Option<u64>,
    /// Range scans in the scan workload, each reading --scan-len keys.
    #[arg(long, default_value_t = 10_000)]
    scans: u64,
    /// Keys read per range scan.
    #[arg(long, default_value_t = 100)]
    scan_len: usize,
    /// Engines to run, comma separated: ringkv, fjall, rocksdb.
    #[arg(long, default_value = "ringkv,fjall")]
    engines: String,
    /// Print one JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
    /// Also write an SVG plot of throughput and latency percentiles (ringkv-bench-plot's).
    #[arg(long, value_name = "OUT.svg")]
    plot: Option<std::path::PathBuf>,
    /// Directory for the databases (a temporary directory by default).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Seed of the key order and values.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Block cache budget of every engine, in MiB.
    #[arg(long, default_value_t = 64)]
    cache_mib: usize,
    /// Rounds of the whole suite; engines alternate order each round and every figure is the
    /// round with the median throughput, so a burst of load on a shared machine hits both.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Value kinds, comma separated: random (incompressible bytes), text (JSON-like records of
    /// words, which compress).
    #[arg(long, default_value = "random,text")]
    values: String,
    /// Block compressions, comma separated: none, lz4, zstd (ringkv only; fjall 3 has none).
    #[arg(long, default_value = "none,lz4")]
    compression: String,
    /// The Zstd level of `--compression zstd`.
    #[arg(long, default_value_t = 3)]
    zstd_level: i32,
}

/// What the values of a run look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueKind {
    /// Uniformly random bytes: no codec can shrink them.
    Random,
    /// JSON-like records of words from a small vocabulary, like typical application values.
    Text,
}

impl ValueKind {
    fn parse(name: &str) -> Result<ValueKind, String> {
        match name {
            "random" => Ok(ValueKind::Random),
            "text" => Ok(ValueKind::Text),
            other => Err(format!("unknown value kind {other:?} (random, text)")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            ValueKind::Random => "random",
            ValueKind::Text => "text",
        }
    }
}

/// One configuration of the suite: the value kind and the block compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Setup {
    values: ValueKind,
    codec: Codec,
}

impl Setup {
    fn label(self) -> String {
        format!("{} values, {}", self.values.name(), self.codec.name())
    }
}

/// One measured workload on one engine.
#[derive(Debug, Clone)]
struct Measurement {
    workload: &'static str,
    engine: &'static str,
    setup: Setup,
    ops: u64,
    elapsed: Duration,
    p50_us: f64,
    p99_us: f64,
    bytes_on_disk: u64,
    write_amp: Option<f64>,
}

impl Measurement {
    fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn json(&self) -> String {
        let wa = self.write_amp.map_or_else(|| "null".to_string(), |w| format!("{w:.3}"));
        format!(
            "{{\"workload\":\"{}\",\"engine\":\"{}\",\"values\":\"{}\",\"compression\":\"{}\",\"ops_per_s\":{:.1},\"p50_us\":{:.3},\"p99_us\":{:.3},\"bytes_on_disk\":{},\"write_amp\":{}}}",
            self.workload,
            self.engine,
            self.setup.values.name(),
            self.setup.codec.name(),
            self.ops_per_s(),
            self.p50_us,
            self.p99_us,
            self.bytes_on_disk,
            wa
        )
    }
}

fn main() {
    let args = Args::parse();
    let tmp = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).expect("create --dir");
            None
        }
        None => Some(tempfile::tempdir().expect("create a temporary directory")),
    };
    let root = args
        .dir
        .clone()
        .unwrap_or_else(|| tmp.as_ref().map(|t| t.path().to_path_buf()).unwrap_or_default());
    let names: Vec<String> = args.engines.split(',').map(|s| s.trim().to_string()).collect();
    let setups = match setups(&args) {
        Ok(setups) => setups,
        Err(error) => {
            eprintln!("ringkv-storage-bench: {error}");
            std::process::exit(2);
        }
    };
    let mut rounds: Vec<Measurement> = Vec::new();
    let mut space_rounds: Vec<Space> = Vec::new();
    for &setup in &setups {
        for round in 0..args.rounds.max(1) {
            let mut order = names.clone();
            if round % 2 == 1 {
                order.reverse();
            }
            for name in &order {
                if !engines::supports(name, setup.codec) {
                    continue;
                }
                if !args.json {
                    eprintln!(
                        "round {}: running {name} with {} keys, {}...",
                        round + 1,
                        args.keys,
                        setup.label()
                    );
                }
                let (ms, bytes) = run_engine(name, &args, &root.join(name), setup);
                rounds.extend(ms);
                space_rounds.push(Space { engine: engines::display_name(name), setup, bytes });
            }
        }
    }
    let results = median_rounds(&rounds);
    let space = median_space(&space_rounds);
    let logical = args.keys * (16 + args.value_bytes as u64);
    let mut lines: Vec<String> = results.iter().map(Measurement::json).collect();
    for s in &space {
        lines.push(format!(
            "{{\"workload\":\"space_after_full_compaction\",\"engine\":\"{}\",\"values\":\"{}\",\"compression\":\"{}\",\"ops_per_s\":null,\"p50_us\":null,\"p99_us\":null,\"bytes_on_disk\":{},\"write_amp\":null,\"space_amp\":{:.3}}}",
            s.engine,
            s.setup.values.name(),
            s.setup.codec.name(),
            s.bytes,
            s.bytes as f64 / logical as f64
        ));
    }
    if args.json {
        for line in &lines {
            println!("{line}");
        }
    } else {
        for &setup in &setups {
            let here: Vec<Measurement> =
                results.iter().filter(|m| m.setup == setup).cloned().collect();
            let space_here: Vec<(String, u64)> = space
                .iter()
                .filter(|s| s.setup == setup)
                .map(|s| (s.engine.to_string(), s.bytes))
                .collect();
            println!("== {} ==", setup.label());
            print_table(&here, &names, &space_here, logical);
            println!();
        }
        print_compression_summary(&results, &space, &names, &setups, logical);
    }
    if let Some(out) = &args.plot {
        // The plot reads the very lines --json prints, so it and ringkv-bench-plot agree.
        let title = format!(
            "ringkv-storage-bench: {}, {} keys, {}-byte values{}",
            names.join(" vs "),
            args.keys,
            args.value_bytes,
            if args.sync { ", sync" } else { "" }
        );
        if let Err(e) = ringkv_storage_bench::plot::write_svg(&lines.join("\n"), Some(&title), out)
        {
            eprintln!("ringkv-storage-bench: --plot {}: {e}", out.display());
            std::process::exit(1);
        }
        eprintln!("wrote {}", out.display());
    }
}

/// The value kinds and compressions of `--values` and `--compression`, every pair of them.
fn setups(args: &Args) -> Result<Vec<Setup>, String> {
    fn list(s: &str) -> Vec<&str> {
        s.split(',').map(str::trim).filter(|s| !s.is_empty()).collect()
    }
    let kinds =
        list(&args.values).into_iter().map(ValueKind::parse).collect::<Result<Vec<_>, _>>()?;
    let codecs = list(&args.compression)
        .into_iter()
        .map(|name| Codec::parse(name, args.zstd_level))
        .collect::<Result<Vec<_>, _>>()?;
    if kinds.is_empty() || codecs.is_empty() {
        return Err("--values and --compression each need at least one entry".into());
    }
    Ok(kinds
        .iter()
        .flat_map(|&values| codecs.iter().map(move |&codec| Setup { values, codec }))
        .collect())
}

/// Bytes on disk after a full compaction of one engine in one setup.
#[derive(Debug, Clone, Copy)]
struct Space {
    engine: &'static str,
    setup: Setup,
    bytes: u64,
}

/// Per (engine, setup), the median of its rounds' space, in first-seen order.
fn median_space(all: &[Space]) -> Vec<Space> {
    let mut out: Vec<Space> = Vec::new();
    for s in all {
        if out.iter().any(|o| o.engine == s.engine && o.setup == s.setup) {
            continue;
        }
        let mut bytes: Vec<u64> = all
            .iter()
            .filter(|o| o.engine == s.engine && o.setup == s.setup)
            .map(|o| o.bytes)
            .collect();
        bytes.sort_unstable();
        out.push(Space { bytes: bytes[bytes.len() / 2], ..*s });
    }
    out
}

/// Per (workload, engine, setup), the round with the median throughput, in first-seen order.
fn median_rounds(all: &[Measurement]) -> Vec<Measurement> {
    let same_test = |a: &Measurement, b: &Measurement| {
        a.workload == b.workload && a.engine == b.engine && a.setup == b.setup
    };
    let mut out: Vec<Measurement> = Vec::new();
    for m in all {
        if out.iter().any(|o| same_test(o, m)) {
            continue;
        }
        let mut same: Vec<&Measurement> = all.iter().filter(|o| same_test(o, m)).collect();
        same.sort_by(|a, b| a.ops_per_s().total_cmp(&b.ops_per_s()));
        out.push(same[same.len() / 2].clone());
    }
    out
}

/// Runs every workload on one engine; returns the measurements and the bytes on disk after a
/// full compaction.
fn run_engine(name: &str, args: &Args, dir: &Path, setup: Setup) -> (Vec<Measurement>, u64) {
    let _ = std::fs::remove_dir_all(dir);
    let mut out = Vec::new();
    let values = ValueSource::new(args.seed, args.value_bytes, setup.values);
    let n = args.keys;
    let open = |dir: &Path| engines::open(name, dir, args.sync, args.cache_mib << 20, setup.codec);

    // fillseq on its own fresh database.
    {
        let seq_dir = dir.join("fillseq");
        let mut e = open(&seq_dir);
        let order: Vec<u64> = (0..n).collect();
        out.push(fill("fillseq", e.as_mut(), &order, &values, args, &seq_dir, setup));
        drop(e);
        let _ = std::fs::remove_dir_all(&seq_dir);
    }

    let main_dir = dir.join("main");
    let mut e = open(&main_dir);
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let mut order: Vec<u64> = (0..n).collect();
    for i in (1..order.len()).rev() {
        let j = rng.random_range(0..=i);
        order.swap(i, j);
    }
    out.push(fill("fillrandom", e.as_mut(), &order, &values, args, &main_dir, setup));
    let over: Vec<u64> = (0..n).map(|_| rng.random_range(0..n)).collect();
    out.push(fill("overwrite", e.as_mut(), &over, &values, args, &main_dir, setup));
    e.settle();

    let reads = args.reads.unwrap_or(n);
    let hits: Vec<u64> = (0..reads).map(|_| rng.random_range(0..n)).collect();
    out.push(read("readrandom", e.as_mut(), &hits, false, &main_dir, setup));
    out.push(read("readmissing", e.as_mut(), &hits, true, &main_dir, setup));

    let start = Instant::now();
    let count = e.scan_all();
    assert_eq!(count as u64, n, "{name}: readseq saw every key");
    out.push(Measurement {
        workload: "readseq",
        engine: e.name(),
        setup,
        ops: count as u64,
        elapsed: start.elapsed(),
        p50_us: 0.0,
        p99_us: 0.0,
        bytes_on_disk: dir_bytes(&main_dir),
        write_amp: None,
    });

    let starts: Vec<u64> = (0..args.scans).map(|_| rng.random_range(0..n)).collect();
    let mut lat = Vec::with_capacity(starts.len());
    let begin = Instant::now();
    for s in &starts {
        let t = Instant::now();
        let got = e.scan(&key(*s), args.scan_len);
        lat.push(t.elapsed());
        assert!(got > 0, "{name}: a scan from an existing key finds it");
    }
    let (p50_us, p99_us) = percentiles(&mut lat);
    out.push(Measurement {
        workload: "scan",
        engine: e.name(),
        setup,
        ops: args.scans,
        elapsed: begin.elapsed(),
        p50_us,
        p99_us,
        bytes_on_disk: dir_bytes(&main_dir),
        write_amp: None,
    });

    if !args.json {
        let notes = e.notes();
        if !notes.is_empty() {
            eprintln!("{notes}");
        }
    }
    e.compact_all();
    let bytes = dir_bytes(&main_dir);
    drop(e);
    let _ = std::fs::remove_dir_all(dir);
    (out, bytes)
}

fn fill(
    workload: &'static str,
    e: &mut dyn BenchEngine,
    order: &[u64],
    values: &ValueSource,
    args: &Args,
    dir: &Path,
    setup: Setup,
) -> Measurement {
    let written_before = io_bytes_written();
    let mut lat = Vec::with_capacity(order.len() / args.batch.max(1) as usize + 1);
    let begin = Instant::now();
    for chunk in order.chunks(args.batch.max(1) as usize) {
        let t = Instant::now();
        let batch: Vec<([u8; 16], &[u8])> =
            chunk.iter().map(|&i| (key(i), values.get(i))).collect();
        e.write(&batch);
        if args.sync {
            e.sync();
        }
        lat.push(t.elapsed());
    }
    let elapsed = begin.elapsed();
    let (p50_us, p99_us) = percentiles(&mut lat);
    let user = order.len() as u64 * (16 + args.value_bytes as u64);
    let written = io_bytes_written().saturating_sub(written_before);
    Measurement {
        workload,
        engine: e.name(),
        setup,
        ops: order.len() as u64,
        elapsed,
        p50_us,
        p99_us,
        bytes_on_disk: dir_bytes(dir),
        write_amp: Some(written as f64 / user.max(1) as f64),
    }
}

fn read(
    workload: &'static str,
    e: &mut dyn BenchEngine,
    keys: &[u64],
    missing: bool,
    dir: &Path,
    setup: Setup,
) -> Measurement {
    let mut lat = Vec::with_capacity(keys.len());
    let mut found = 0u64;
    let begin = Instant::now();
    for &i in keys {
        let k = if missing { missing_key(i) } else { key(i) };
        let t = Instant::now();
        found += u64::from(e.get(&k));
        lat.push(t.elapsed());
    }
    let elapsed = begin.elapsed();
    let want = if missing { 0 } else { keys.len() as u64 };
    assert_eq!(found, want, "{}: {workload} found {found} of {want}", e.name());
    let (p50_us, p99_us) = percentiles(&mut lat);
    Measurement {
        workload,
        engine: e.name(),
        setup,
        ops: keys.len() as u64,
        elapsed,
        p50_us,
        p99_us,
        bytes_on_disk: dir_bytes(dir),
        write_amp: None,
    }
}

/// The 16-byte key of index `i`: its zero-padded decimal form.
fn key(i: u64) -> [u8; 16] {
    let mut k = [b'0'; 16];
    let mut n = i;
    for d in k.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    k
}

/// A key that sorts among the existing ones but is never written.
fn missing_key(i: u64) -> [u8; 16] {
    let mut k = key(i);
    k[15] = b'.';
    k
}

/// Values sliced from a 1 MiB pool by key index: random bytes, or JSON-like text.
struct ValueSource {
    pool: Vec<u8>,
    value_bytes: usize,
}

/// The vocabulary of text values: about as varied as the field names and enumerations of an
/// application's records.
const WORDS: [&str; 48] = [
    "alpha", "amber", "anchor", "apple", "arrow", "atlas", "basil", "beacon", "birch", "bloom",
    "bridge", "cedar", "cinder", "clover", "comet", "coral", "delta", "ember", "falcon", "fern",
    "garnet", "glacier", "harbor", "hazel", "indigo", "island", "jasper", "juniper", "kestrel",
    "lantern", "maple", "meadow", "nectar", "onyx", "orchid", "pebble", "quartz", "raven", "river",
    "saffron", "sierra", "spruce", "thistle", "tundra", "umber", "valley", "willow", "zephyr",
];

impl ValueSource {
    fn new(seed: u64, value_bytes: usize, kind: ValueKind) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
        let pool_bytes = (1 << 20) + value_bytes;
        let pool = match kind {
            ValueKind::Random => {
                let mut pool = vec![0u8; pool_bytes];
                rng.fill_bytes(&mut pool);
                pool
            }
            ValueKind::Text => text_pool(&mut rng, pool_bytes),
        };
        ValueSource { pool, value_bytes }
    }

    fn get(&self, i: u64) -> &[u8] {
        let off = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 44) as usize % (1 << 20);
        &self.pool[off..off + self.value_bytes]
    }
}

/// `bytes` of records like `{"id":4711,"name":"maple raven","city":"harbor","score":73,
/// "tags":["onyx","fern"],"note":"..."}`, one after another.
fn text_pool(rng: &mut ChaCha8Rng, bytes: usize) -> Vec<u8> {
    let mut pool = Vec::with_capacity(bytes + 256);
    let word = |rng: &mut ChaCha8Rng| WORDS[rng.random_range(0..WORDS.len())];
    while pool.len() < bytes {
        let note: Vec<&str> = (0..rng.random_range(3..9)).map(|_| word(rng)).collect();
        let record = format!(
            "{{\"id\":{},\"name\":\"{} {}\",\"city\":\"{}\",\"score\":{},\"tags\":[\"{}\",\"{}\"],\"note\":\"{}\"}}",
            rng.random_range(0..100_000),
            word(rng),
            word(rng),
            word(rng),
            rng.random_range(0..100),
            word(rng),
            word(rng),
            note.join(" ")
        );
        pool.extend_from_slice(record.as_bytes());
    }
    pool.truncate(bytes);
    pool
}

fn percentiles(lat: &mut [Duration]) -> (f64, f64) {
    if lat.is_empty() {
        return (0.0, 0.0);
    }
    lat.sort_unstable();
    let at = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    (at(0.50), at(0.99))
}

/// Bytes allocated under `dir`, recursively (blocks, so preallocated or sparse files count for
/// what they really take).
fn dir_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

/// Bytes this process has passed to write(2) so far (`wchar` in /proc/self/io): every engine's
/// WAL, flush and compaction writes alike, whichever thread made them.
fn io_bytes_written() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("wchar: ")).and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn print_table(results: &[Measurement], names: &[String], space: &[(String, u64)], logical: u64) {
    let workloads =
        ["fillseq", "fillrandom", "overwrite", "readrandom", "readmissing", "readseq", "scan"];
    let find = |w: &str, e: &str| results.iter().find(|m| m.workload == w && m.engine == e);
    print!(
        "{:<12} {:<8} {:>12} {:>9} {:>9} {:>12} {:>9}",
        "workload", "engine", "ops/s", "p50 us", "p99 us", "disk MiB", "w-amp"
    );
    for peer in names.iter().skip(1) {
        print!(" {:>12}", format!("vs {peer}"));
    }
    println!();
    for w in workloads {
        for name in names {
            let Some(m) = find(w, engines::display_name(name)) else {
                continue;
            };
            print!(
                "{:<12} {:<8} {:>12.0} {:>9.2} {:>9.2} {:>12.1} {:>9}",
                w,
                m.engine,
                m.ops_per_s(),
                m.p50_us,
                m.p99_us,
                m.bytes_on_disk as f64 / (1 << 20) as f64,
                m.write_amp.map_or_else(|| "-".to_string(), |a| format!("{a:.2}")),
            );
            if name == &names[0] {
                for peer in names.iter().skip(1) {
                    match find(w, engines::display_name(peer)) {
                        Some(p) => print!(" {:>11.2}x", m.ops_per_s() / p.ops_per_s()),
                        None => print!(" {:>12}", "-"),
                    }
                }
            }
            println!();
        }
    }
    println!();
    println!(
        "space after a full compaction (logical data {:.1} MiB):",
        logical as f64 / (1 << 20) as f64
    );
    for (engine, bytes) in space {
        println!(
            "  {engine:<8} {:>10.1} MiB  {:.3}x logical",
            *bytes as f64 / (1 << 20) as f64,
            *bytes as f64 / logical as f64
        );
    }
}

/// The compression figures across setups: per value kind, each engine's space after a full
/// compaction under every compression (and its ratio to no compression), and each engine's
/// throughput with compression over its throughput without.
fn print_compression_summary(
    results: &[Measurement],
    space: &[Space],
    names: &[String],
    setups: &[Setup],
    logical: u64,
) {
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "compression summary (space after a full compaction; logical data {:.1} MiB):",
        mib(logical)
    );
    let mut kinds: Vec<ValueKind> = Vec::new();
    for s in setups {
        if !kinds.contains(&s.values) {
            kinds.push(s.values);
        }
    }
    for kind in kinds {
        let codecs: Vec<Codec> =
            setups.iter().filter(|s| s.values == kind).map(|s| s.codec).collect();
        println!("  {} values:", kind.name());
        for name in names {
            let engine = engines::display_name(name);
            let bytes_of = |codec: Codec| {
                space
                    .iter()
                    .find(|s| s.engine == engine && s.setup == Setup { values: kind, codec })
                    .map(|s| s.bytes)
            };
            let baseline = bytes_of(Codec::None);
            print!("    {engine:<8}");
            for &codec in &codecs {
                match (bytes_of(codec), baseline) {
                    (Some(b), Some(base)) if codec != Codec::None => {
                        print!(
                            "  {}: {:>7.1} MiB ({:.2}x of none)",
                            codec.name(),
                            mib(b),
                            b as f64 / base as f64
                        )
                    }
                    (Some(b), _) => print!("  {}: {:>7.1} MiB", codec.name(), mib(b)),
                    (None, _) => print!("  {}: -", codec.name()),
                }
            }
            println!();
        }
    }
    let workloads =
        ["fillseq", "fillrandom", "overwrite", "readrandom", "readmissing", "readseq", "scan"];
    let ops = |w: &str, engine: &str, setup: Setup| {
        results
            .iter()
            .find(|m| m.workload == w && m.engine == engine && m.setup == setup)
            .map(Measurement::ops_per_s)
    };
    for s in setups.iter().filter(|s| s.codec != Codec::None) {
        let base = Setup { codec: Codec::None, ..*s };
        println!("throughput with {} over without ({} values):", s.codec.name(), s.values.name());
        print!("    {:<8}", "");
        for w in workloads {
            print!(" {w:>11}");
        }
        println!();
        for name in names {
            let engine = engines::display_name(name);
            print!("    {engine:<8}");
            for w in workloads {
                match (ops(w, engine, *s), ops(w, engine, base)) {
                    (Some(with), Some(without)) => print!(" {:>10.2}x", with / without),
                    _ => print!(" {:>11}", "-"),
                }
            }
            println!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_zero_padded_decimals_and_missing_keys_sort_among_them() {
        assert_eq!(&key(42), b"0000000000000042");
        assert_eq!(&key(9_999_999_999_999_999), b"9999999999999999");
        assert!(key(39) < missing_key(42) && missing_key(42) < key(40));
    }

    #[test]
    fn json_lines_carry_every_required_field() {
        let m = Measurement {
            workload: "readrandom",
            engine: "ringkv",
            setup: Setup { values: ValueKind::Text, codec: Codec::Lz4 },
            ops: 1000,
            elapsed: Duration::from_millis(10),
            p50_us: 1.5,
            p99_us: 4.25,
            bytes_on_disk: 4096,
            write_amp: None,
        };
        let line = m.json();
        for field in [
            "\"workload\":\"readrandom\"",
            "\"engine\":\"ringkv\"",
            "\"values\":\"text\"",
            "\"compression\":\"lz4\"",
            "\"ops_per_s\":100000.0",
            "\"p50_us\":1.500",
            "\"p99_us\":4.250",
            "\"bytes_on_disk\":4096",
            "\"write_amp\":null",
        ] {
            assert!(line.contains(field), "{line} lacks {field}");
        }
        assert!(line.starts_with('{') && line.ends_with('}') && !line.contains('\n'));
    }

    #[test]
    fn median_round_is_picked_per_workload_and_engine() {
        let m = |engine, secs| Measurement {
            workload: "fillrandom",
            engine,
            setup: Setup { values: ValueKind::Random, codec: Codec::None },
            ops: 100,
            elapsed: Duration::from_secs(secs),
            p50_us: secs as f64,
            p99_us: 0.0,
            bytes_on_disk: 0,
            write_amp: None,
        };
        let all = vec![m("ringkv", 1), m("fjall", 5), m("ringkv", 9), m("ringkv", 3)];
        let med = median_rounds(&all);
        assert_eq!(med.len(), 2);
        assert_eq!((med[0].engine, med[0].p50_us), ("ringkv", 3.0));
        assert_eq!((med[1].engine, med[1].p50_us), ("fjall", 5.0));
    }
}
