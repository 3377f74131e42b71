//! Measures the hand-written client protocol and metrics code against the crates that could
//! replace it, on the same inputs in one run (issue 18):
//!
//! - RESP parsing: `resp::parse_command` against `redis-protocol`'s RESP2 and RESP3 decoders, on
//!   pipelined `SET key:NNNNNN <100-byte value>` and `GET key:NNNNNN` commands (16 per buffer)
//!   and on 1 MiB values (whole, and arriving in 64 KiB reads);
//! - RESP encoding: `Reply::encode` against the crate's encoders, for simple strings, bulk strings
//!   and arrays of bulk strings;
//! - Prometheus text: `Metrics::render` against `prometheus-client` encoding the same families
//!   with the same values, label sets and buckets.
//!
//! Run: `cargo bench -p ringkv-net --bench protocol` (`-- --runs N` for more runs; default 11).
//! Each figure is the median over the runs, ours and the crate's taking turns within each run so
//! that other work on the machine weighs on both alike. Every case first checks that both sides
//! produce the same result, so the figures compare equal work.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use redis_protocol::resp2::types::BytesFrame as Resp2Frame;
use redis_protocol::resp3::types::BytesFrame as Resp3Frame;

use ringkv_net::metrics::Metrics;
use ringkv_net::resp::{parse_command, Reply, RespLimits};

/// Commands per buffer: the pipeline depth of the cluster benchmark (`bench/cluster.sh`, P16).
const PIPELINE: usize = 16;
/// Buffers per run of a small-command case: 16,384 commands, a few MiB, so a run takes
/// milliseconds and the inputs do not fit in the L2 cache any more than a server's would.
const BUFFERS: usize = 1_024;
/// Value size of the pipelined SETs.
const VALUE_BYTES: usize = 100;
/// Value size of the large-value case.
const LARGE_VALUE_BYTES: usize = 1 << 20;
/// Large-value commands per run.
const LARGE_COMMANDS: usize = 16;
/// Read size for the large value arriving in pieces (a typical socket read).
const READ_BYTES: usize = 64 * 1024;
/// Renders of the metrics per run.
const RENDERS: usize = 200;
/// Runs whose median is reported, unless `--runs N` says otherwise.
const RUNS_DEFAULT: usize = 11;

fn main() {
    let runs = runs_from_args();
    let mut table = Vec::new();
    parse_cases(runs, &mut table);
    encode_cases(runs, &mut table);
    metrics_case(runs, &mut table);
    println!("median of {runs} runs; ratio = ours / crate time (below 1: ours is faster)");
    println!("| part | case | ours | crate | ratio |");
    println!("|---|---|---|---|---|");
    for row in &table {
        println!(
            "| {} | {} | {} | {} | {:.2} |",
            row.part,
            row.case,
            row.unit.show(row.ours_ns),
            row.unit.show(row.crate_ns),
            row.ours_ns / row.crate_ns
        );
    }
}

/// `--runs N`; cargo passes `--bench` too, which is ignored like any other argument.
fn runs_from_args() -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|arg| arg == "--runs")
        .and_then(|index| args.get(index + 1))
        .and_then(|value| value.parse().ok())
        .filter(|runs: &usize| *runs > 0)
        .unwrap_or(RUNS_DEFAULT)
}

/// One line of the result table: median nanoseconds per item (command, reply or render).
struct Row {
    part: &'static str,
    case: String,
    ours_ns: f64,
    crate_ns: f64,
    unit: Unit,
}

/// How a row's figures are shown.
#[derive(Clone, Copy)]
enum Unit {
    /// Nanoseconds per command or reply, and millions per second (microseconds and a count per
    /// second for the large values).
    PerItem,
    /// Microseconds per render, and renders per second.
    PerRender,
}

impl Unit {
    fn show(self, ns: f64) -> String {
        match self {
            Unit::PerItem if ns < 10_000.0 => format!("{ns:.1} ns ({:.2} M/s)", 1e3 / ns),
            Unit::PerItem => format!("{:.1} us ({:.0}/s)", ns / 1e3, 1e9 / ns),
            Unit::PerRender => format!("{:.1} us ({:.0}/s)", ns / 1e3, 1e9 / ns),
        }
    }
}

/// Times `ours` and `theirs` over fresh inputs from `setup`, taking turns, once to warm up and
/// then `runs` times; returns the median nanoseconds per item of each. Making the inputs and
/// dropping the outputs (freeing a 1 MiB buffer costs more than parsing it) are not timed.
fn compare<T, O>(
    runs: usize,
    items: usize,
    mut setup: impl FnMut() -> T,
    mut ours: impl FnMut(T) -> O,
    mut theirs: impl FnMut(T) -> O,
) -> (f64, f64) {
    let mut ours_ns = Vec::with_capacity(runs);
    let mut theirs_ns = Vec::with_capacity(runs);
    for run in 0..=runs {
        // Alternate who goes first, so neither always runs on a cache the other warmed.
        let order = if run % 2 == 0 { [true, false] } else { [false, true] };
        for is_ours in order {
            let input = setup();
            let start = Instant::now();
            let output = if is_ours { ours(input) } else { theirs(input) };
            let elapsed_ns = start.elapsed().as_nanos() as f64;
            drop(black_box(output));
            if run > 0 {
                let per_item = elapsed_ns / items as f64;
                if is_ours {
                    ours_ns.push(per_item)
                } else {
                    theirs_ns.push(per_item)
                }
            }
        }
    }
    (median(&mut ours_ns), median(&mut theirs_ns))
}

fn median(values: &mut [f64]) -> f64 {
    assert!(!values.is_empty(), "no runs to take the median of");
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

// ---------------------------------------------------------------------------------------------
// RESP parsing
// ---------------------------------------------------------------------------------------------

/// The client-side encoding of one command: a multibulk array of bulk strings.
fn multibulk(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// `BUFFERS` buffers of `PIPELINE` commands each, keys numbered in order.
fn pipelined(command: impl Fn(usize) -> Vec<u8>) -> Vec<Vec<u8>> {
    (0..BUFFERS)
        .map(|buffer| (0..PIPELINE).flat_map(|index| command(buffer * PIPELINE + index)).collect())
        .collect()
}

fn value(bytes: usize, seed: usize) -> Vec<u8> {
    (0..bytes).map(|index| b'a' + ((index * 7 + seed) % 26) as u8).collect()
}

fn parse_cases(runs: usize, table: &mut Vec<Row>) {
    let set = pipelined(|n| {
        multibulk(&[b"SET", format!("key:{n:06}").as_bytes(), &value(VALUE_BYTES, n)])
    });
    let get = pipelined(|n| multibulk(&[b"GET", format!("key:{n:06}").as_bytes()]));
    let large: Vec<Vec<u8>> = (0..LARGE_COMMANDS)
        .map(|n| {
            multibulk(&[b"SET", format!("key:{n:06}").as_bytes(), &value(LARGE_VALUE_BYTES, n)])
        })
        .collect();
    let cases = [
        (format!("SET {VALUE_BYTES} B value, {PIPELINE} per buffer"), &set, BUFFERS * PIPELINE),
        (format!("GET, {PIPELINE} per buffer"), &get, BUFFERS * PIPELINE),
        ("SET 1 MiB value, whole buffer".to_string(), &large, LARGE_COMMANDS),
    ];
    for (case, inputs, commands) in cases {
        let setup = || inputs.iter().map(|bytes| BytesMut::from(&bytes[..])).collect::<Vec<_>>();
        let expected = parse_all(setup(), parse_ours);
        assert_eq!(expected, parse_all(setup(), parse_resp2), "RESP2 crate parsed differently");
        assert_eq!(expected, parse_all(setup(), parse_resp3), "RESP3 crate parsed differently");
        assert_eq!(expected.commands(), commands, "not every command was parsed");
        for (dialect, theirs) in [("RESP2", parse_resp2 as ParseFn), ("RESP3", parse_resp3)] {
            let (ours_ns, crate_ns) = compare(
                runs,
                commands,
                setup,
                |buffers| parse_all(buffers, parse_ours),
                |buffers| parse_all(buffers, theirs),
            );
            let case = format!("parse {case} ({dialect} decoder)");
            table.push(Row { part: "RESP", case, ours_ns, crate_ns, unit: Unit::PerItem });
        }
    }
    // The large value as a server sees it: appended read by read, a parse tried after each.
    let expected = parse_in_reads(&large, parse_ours);
    assert_eq!(expected, parse_in_reads(&large, parse_resp2), "RESP2 crate parsed differently");
    let (ours_ns, crate_ns) = compare(
        runs,
        LARGE_COMMANDS,
        || (),
        |()| parse_in_reads(&large, parse_ours),
        |()| parse_in_reads(&large, parse_resp2),
    );
    let case = format!("parse SET 1 MiB value in {} KiB reads (RESP2 decoder)", READ_BYTES / 1024);
    table.push(Row { part: "RESP", case, ours_ns, crate_ns, unit: Unit::PerItem });
}

/// Parses one command from the front of the buffer into the server's form, an argument list.
type ParseFn = fn(&mut BytesMut) -> Option<Vec<Bytes>>;

fn parse_ours(buffer: &mut BytesMut) -> Option<Vec<Bytes>> {
    parse_command(buffer, &RespLimits::default()).expect("valid input")
}

/// The crate's RESP2 decoder, converted to an argument list as the server would need. It checks
/// no limits (argument count, bulk length): a replacement would need a pass of its own for them,
/// so this figure is a lower bound for what the crate would cost in the server.
fn parse_resp2(buffer: &mut BytesMut) -> Option<Vec<Bytes>> {
    let (frame, _, _) =
        redis_protocol::resp2::decode::decode_bytes_mut(buffer).expect("valid input")?;
    let Resp2Frame::Array(items) = frame else { panic!("a command is an array") };
    let args = items.into_iter().map(|item| match item {
        Resp2Frame::BulkString(bytes) => bytes,
        other => panic!("an argument is a bulk string, got {other:?}"),
    });
    Some(args.collect())
}

/// The crate's RESP3 decoder (what a client that sent `HELLO 3` is read with), converted alike.
fn parse_resp3(buffer: &mut BytesMut) -> Option<Vec<Bytes>> {
    let (frame, _, _) =
        redis_protocol::resp3::decode::complete::decode_bytes_mut(buffer).expect("valid input")?;
    let Resp3Frame::Array { data, .. } = frame else { panic!("a command is an array") };
    let args = data.into_iter().map(|item| match item {
        Resp3Frame::BlobString { data, .. } => data,
        other => panic!("an argument is a blob string, got {other:?}"),
    });
    Some(args.collect())
}

/// What a parse of every buffer produced: the commands, kept until the timing has stopped.
#[derive(Debug, PartialEq)]
struct Parsed(Vec<Vec<Bytes>>);

impl Parsed {
    fn commands(&self) -> usize {
        self.0.len()
    }
}

fn parse_all(buffers: Vec<BytesMut>, parse: ParseFn) -> Parsed {
    let mut parsed = Vec::new();
    for mut buffer in buffers {
        while let Some(args) = parse(&mut buffer) {
            parsed.push(args);
        }
        assert!(buffer.is_empty(), "a command was left unparsed");
    }
    Parsed(parsed)
}

fn parse_in_reads(commands: &[Vec<u8>], parse: ParseFn) -> Parsed {
    let mut parsed = Vec::new();
    for command in commands {
        let mut buffer = BytesMut::with_capacity(command.len());
        for read in command.chunks(READ_BYTES) {
            buffer.extend_from_slice(read);
            while let Some(args) = parse(&mut buffer) {
                parsed.push(args);
            }
        }
        assert!(buffer.is_empty(), "a command was left unparsed");
    }
    Parsed(parsed)
}

// ---------------------------------------------------------------------------------------------
// RESP encoding
// ---------------------------------------------------------------------------------------------

/// The same replies as ours and as each dialect's crate frames.
struct Replies {
    case: &'static str,
    ours: Vec<Reply>,
    resp2: Vec<Resp2Frame>,
    resp3: Vec<Resp3Frame>,
}

fn replies(count: usize) -> Vec<Replies> {
    let bulk = |n: usize| Bytes::from(value(VALUE_BYTES, n));
    let resp3_bulk = |n: usize| Resp3Frame::BlobString { data: bulk(n), attributes: None };
    vec![
        Replies {
            case: "simple string +OK",
            ours: (0..count).map(|_| Reply::ok()).collect(),
            resp2: (0..count)
                .map(|_| Resp2Frame::SimpleString(Bytes::from_static(b"OK")))
                .collect(),
            resp3: (0..count)
                .map(|_| Resp3Frame::SimpleString {
                    data: Bytes::from_static(b"OK"),
                    attributes: None,
                })
                .collect(),
        },
        Replies {
            case: "bulk string, 100 B",
            ours: (0..count).map(|n| Reply::Bulk(bulk(n))).collect(),
            resp2: (0..count).map(|n| Resp2Frame::BulkString(bulk(n))).collect(),
            resp3: (0..count).map(resp3_bulk).collect(),
        },
        Replies {
            case: "array of 16 bulk strings, 100 B each",
            ours: (0..count / PIPELINE)
                .map(|n| Reply::Array((0..PIPELINE).map(|i| Reply::Bulk(bulk(n + i))).collect()))
                .collect(),
            resp2: (0..count / PIPELINE)
                .map(|n| {
                    Resp2Frame::Array(
                        (0..PIPELINE).map(|i| Resp2Frame::BulkString(bulk(n + i))).collect(),
                    )
                })
                .collect(),
            resp3: (0..count / PIPELINE)
                .map(|n| Resp3Frame::Array {
                    data: (0..PIPELINE).map(|i| resp3_bulk(n + i)).collect(),
                    attributes: None,
                })
                .collect(),
        },
    ]
}

fn encode_cases(runs: usize, table: &mut Vec<Row>) {
    for set in replies(BUFFERS * PIPELINE) {
        let replies = set.ours.len();
        for protocol in [2u8, 3] {
            let expected = encode_ours(&set.ours, protocol);
            let theirs =
                if protocol == 2 { encode_resp2(&set.resp2) } else { encode_resp3(&set.resp3) };
            assert_eq!(expected, theirs, "the crate encoded {} differently", set.case);
            let (ours_ns, crate_ns) = compare(
                runs,
                replies,
                || (),
                |()| encode_ours(&set.ours, protocol),
                |()| {
                    if protocol == 2 {
                        encode_resp2(&set.resp2)
                    } else {
                        encode_resp3(&set.resp3)
                    }
                },
            );
            let case = format!("encode {} (RESP{protocol})", set.case);
            table.push(Row { part: "RESP", case, ours_ns, crate_ns, unit: Unit::PerItem });
        }
    }
}

/// Encodes the replies as the server does: a pipeline's replies into one buffer, written out
/// (here: appended to one vector, the same copy for both sides) and cleared, the buffer reused.
/// Returns every byte, for the equality check.
fn encode_ours(replies: &[Reply], protocol: u8) -> Vec<u8> {
    let mut all = Vec::new();
    let mut out = Vec::with_capacity(64 * 1024);
    for pipeline in replies.chunks(PIPELINE) {
        for reply in pipeline {
            reply.encode(protocol, &mut out);
        }
        flush(&mut all, &mut out);
    }
    all
}

fn encode_resp2(frames: &[Resp2Frame]) -> Vec<u8> {
    let mut all = Vec::new();
    let mut out = BytesMut::with_capacity(64 * 1024);
    for pipeline in frames.chunks(PIPELINE) {
        for frame in pipeline {
            redis_protocol::resp2::encode::extend_encode(&mut out, frame, false)
                .expect("a frame encodes");
        }
        flush(&mut all, &mut out);
    }
    all
}

fn encode_resp3(frames: &[Resp3Frame]) -> Vec<u8> {
    let mut all = Vec::new();
    let mut out = BytesMut::with_capacity(64 * 1024);
    for pipeline in frames.chunks(PIPELINE) {
        for frame in pipeline {
            redis_protocol::resp3::encode::complete::extend_encode(&mut out, frame, false)
                .expect("a frame encodes");
        }
        flush(&mut all, &mut out);
    }
    all
}

/// Stands for the socket write: both sides pay the same copy of their output.
fn flush<B: AsRef<[u8]> + Clear>(all: &mut Vec<u8>, out: &mut B) {
    all.extend_from_slice(out.as_ref());
    out.clear_buffer();
}

/// Clearing either side's output buffer.
trait Clear {
    fn clear_buffer(&mut self);
}

impl Clear for Vec<u8> {
    fn clear_buffer(&mut self) {
        self.clear();
    }
}

impl Clear for BytesMut {
    fn clear_buffer(&mut self) {
        self.clear();
    }
}

// ---------------------------------------------------------------------------------------------
// Prometheus text
// ---------------------------------------------------------------------------------------------

/// The counters a node exports (`Metrics::render`), without the `_total` that
/// `prometheus-client` appends to every counter's name.
const COUNTERS: [&str; 10] = [
    "ringkv_client_connections_accepted",
    "ringkv_client_connections_refused",
    "ringkv_client_protocol_errors",
    "ringkv_peer_frames_refused",
    "ringkv_peer_messages_dropped",
    "ringkv_tls_handshakes_failed",
    "ringkv_client_auth_failures",
    "ringkv_storage_syncs",
    "ringkv_storage_scrubs",
    "ringkv_node_restarts",
];

/// The node's counters copied into the metrics every second (`export_node_counters`), the
/// storage engine's first, each shown as `ringkv_node_<name>`.
const NODE_COUNTERS: [&str; 23] = [
    "storage_flushes_total",
    "storage_compactions_total",
    "storage_user_bytes_written_total",
    "storage_wal_bytes_written_total",
    "storage_flush_bytes_written_total",
    "storage_compaction_bytes_written_total",
    "storage_compaction_bytes_read_total",
    "storage_block_cache_hits_total",
    "storage_block_cache_misses_total",
    "read_repairs_sent_total",
    "peer_messages_dropped_total",
    "tombstones_purged_total",
    "client_errors_total",
    "storage_errors_total",
    "duplicate_forwards_total",
    "gossip_rounds_total",
    "hints_stored_total",
    "hints_replayed_total",
    "hints_dropped_total",
    "repair_exchanges_total",
    "repair_keys_compared_total",
    "repair_keys_streamed_total",
    "repair_slices_narrowed_total",
];

/// The latency buckets of `ringkv_request_duration_seconds`, in microseconds (as in metrics.rs).
const LATENCY_BUCKETS_US: [u64; 12] =
    [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000];

/// The request label sets of a node under a mixed load: data commands at QUORUM, a few at other
/// levels, some errors, and connection commands without a consistency level.
fn request_labels() -> Vec<(&'static str, &'static str, bool)> {
    let mut labels = Vec::new();
    for command in ["GET", "SET", "DEL", "MGET", "MSET", "EXISTS", "INCR", "EXPIRE", "TTL", "SCAN"]
    {
        labels.push((command, "QUORUM", true));
    }
    for (command, consistency) in [("GET", "ONE"), ("GET", "ALL"), ("SET", "ONE"), ("SET", "ALL")] {
        labels.push((command, consistency, true));
    }
    labels.push(("GET", "QUORUM", false));
    labels.push(("SET", "QUORUM", false));
    for command in ["PING", "INFO", "HELLO", "CLIENT", "COMMAND"] {
        labels.push((command, "-", true));
    }
    labels
}

/// A request's labels in the crate's registry: command, consistency and outcome, as ours.
type RequestLabels = [(&'static str, &'static str); 3];

/// `prometheus-client`'s registry holding the same families as `Metrics`.
struct CrateMetrics {
    registry: Registry,
    counters: Vec<Counter>,
    gauges: Vec<Gauge<u64, AtomicU64>>,
    node_counters: Vec<Counter>,
    requests: Family<RequestLabels, Histogram, fn() -> Histogram>,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS_US.iter().map(|bound| *bound as f64 / 1e6))
}

impl CrateMetrics {
    fn new() -> CrateMetrics {
        let mut registry = Registry::default();
        let counters: Vec<Counter> = COUNTERS.iter().map(|_| Counter::default()).collect();
        for (name, counter) in COUNTERS.iter().zip(&counters) {
            registry.register(*name, "A ringkv counter", counter.clone());
        }
        let gauges: Vec<Gauge<u64, AtomicU64>> = (0..3).map(|_| Gauge::default()).collect();
        for (name, gauge) in
            ["ringkv_peers_up", "ringkv_client_connections_open", "ringkv_node_epoch"]
                .iter()
                .zip(&gauges)
        {
            registry.register(*name, "A ringkv gauge", gauge.clone());
        }
        let node_counters: Vec<Counter> =
            NODE_COUNTERS.iter().map(|_| Counter::default()).collect();
        for (name, counter) in NODE_COUNTERS.iter().zip(&node_counters) {
            let name = format!("ringkv_node_{}", name.trim_end_matches("_total"));
            registry.register(name, "A node counter", counter.clone());
        }
        let requests = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "ringkv_request_duration_seconds",
            "Client request latency",
            requests.clone(),
        );
        CrateMetrics { registry, counters, gauges, node_counters, requests }
    }

    fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Both registries with the same values: counters, gauges, and 1,000 requests per label set with
/// latencies spread over every bucket.
fn filled_metrics() -> (Metrics, CrateMetrics) {
    let ours = Metrics::default();
    let theirs = CrateMetrics::new();
    let our_counters = [
        &ours.connections_accepted,
        &ours.connections_refused,
        &ours.protocol_errors,
        &ours.peer_frames_refused,
        &ours.peer_messages_dropped,
        &ours.tls_handshakes_failed,
        &ours.auth_failures,
        &ours.storage_syncs,
        &ours.storage_scrubs,
        &ours.node_restarts,
    ];
    for (index, (our, their)) in our_counters.iter().zip(&theirs.counters).enumerate() {
        our.add(index as u64 * 1_000 + 7);
        their.inc_by(index as u64 * 1_000 + 7);
    }
    ours.peers_up.store(2, Ordering::Relaxed);
    ours.client_connections_open.store(50, Ordering::Relaxed);
    theirs.gauges[0].set(2);
    theirs.gauges[1].set(50);
    theirs.gauges[2].set(3);
    let node_values = NODE_COUNTERS.iter().enumerate().map(|(i, name)| (name, i as u64 * 12_345));
    ours.set_node_values(node_values.clone().map(|(name, value)| (name.to_string(), value)));
    ours.set_node_values([("epoch".to_string(), 3)]);
    for ((_, value), counter) in node_values.zip(&theirs.node_counters) {
        counter.inc_by(value);
    }
    for (command, consistency, ok) in request_labels() {
        let outcome = if ok { "ok" } else { "error" };
        let labels = [("command", command), ("consistency", consistency), ("outcome", outcome)];
        let histogram = theirs.requests.get_or_create_owned(&labels);
        for n in 0..1_000u64 {
            let latency_us = (n * n * 37) % 1_200_000;
            ours.observe_request(command, consistency, ok, latency_us);
            histogram.observe(latency_us as f64 / 1e6);
        }
    }
    (ours, theirs)
}

/// The samples of a text exposition, sorted: the lines that are not comments, with `_sum` values
/// rounded (ours divides a sum of microseconds, the crate sums seconds, so the last digits of a
/// float may differ).
fn samples(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| match line.rsplit_once(' ') {
            Some((name, value)) if name.contains("_sum") => {
                let value: f64 = value.parse().expect("a sum is a number");
                format!("{name} {value:.6}")
            }
            _ => line.to_string(),
        })
        .collect();
    lines.sort();
    lines
}

fn metrics_case(runs: usize, table: &mut Vec<Row>) {
    let (ours, theirs) = filled_metrics();
    let (our_text, their_text) = (ours.render(), theirs.render());
    assert_eq!(samples(&our_text), samples(&their_text), "the two expositions differ");
    let (ours_ns, crate_ns) = compare(
        runs,
        RENDERS,
        || (),
        |()| (0..RENDERS).map(|_| black_box(ours.render()).len() as u64).sum::<u64>(),
        |()| (0..RENDERS).map(|_| black_box(theirs.render()).len() as u64).sum::<u64>(),
    );
    let case = format!(
        "render {} series ({} KiB ours, {} KiB crate with HELP lines)",
        samples(&our_text).len(),
        our_text.len() / 1024,
        their_text.len() / 1024
    );
    table.push(Row { part: "Prometheus", case, ours_ns, crate_ns, unit: Unit::PerRender });
}
