//! Entry points for fuzzing what a node reads from the outside (behind the `fuzzing` feature):
//! client commands (RESP), peer frames and the node's RON configuration.
//!
//! Each function takes arbitrary bytes and panics only if a property fails: it is the body of
//! one cargo-fuzz target (`fuzz/fuzz_targets/`) and of the stable replay harness
//! (`tests/tests/fuzz_corpus.rs`), so both run the same checks.

use bytes::{Bytes, BytesMut};

use crate::config::NodeFileConfig;
use crate::frame::{self, FrameError, Wire, FRAME_VERSION};
use crate::resp::{parse_command, ParseError, Reply, RespLimits};

/// Small limits, so that short inputs reach every limit check.
const SMALL_LIMITS: RespLimits =
    RespLimits { args_count_max: 8, bulk_bytes_max: 64, inline_bytes_max: 64 };

/// What a run of the parser over a byte stream produced.
#[derive(Debug, PartialEq, Eq)]
struct Parsed {
    commands: Vec<Vec<Bytes>>,
    /// Whether a protocol error ended the stream.
    failed: bool,
}

/// Parses `data` as a client's byte stream, whole and delivered in pieces, with the default and
/// with small limits. Properties: a command is consumed only whole, and `Ok(None)` consumes
/// nothing; how the bytes are split into reads changes neither the commands nor whether the
/// stream fails; every accepted command, encoded as a RESP array of bulk strings, parses back to
/// the same arguments and consumes exactly that encoding.
pub fn resp(data: &[u8]) {
    for limits in [RespLimits::default(), SMALL_LIMITS] {
        let whole = parse_stream(data, &limits, &[data.len()]);
        for cuts in [[data.len() / 2, data.len()], [data.len() / 3, data.len()]] {
            let pieces = parse_stream(data, &limits, &cuts);
            assert_eq!(pieces, whole, "splitting the stream at {cuts:?} changed the parse");
        }
        for command in &whole.commands {
            let mut encoded = Vec::new();
            Reply::Array(command.iter().cloned().map(Reply::Bulk).collect())
                .encode(2, &mut encoded);
            let mut buffer = BytesMut::from(&encoded[..]);
            let again = parse_command(&mut buffer, &limits)
                .unwrap_or_else(|error| panic!("re-encoded command refused: {error}"));
            assert_eq!(again.as_ref(), Some(command), "re-encoded command parsed differently");
            assert!(buffer.is_empty(), "re-encoded command left {} bytes", buffer.len());
        }
    }
}

/// Feeds `data` to the parser as the server does: appended to a buffer in reads ending at each
/// of `cuts`, parsing after each read until more bytes are needed or an error ends the stream.
fn parse_stream(data: &[u8], limits: &RespLimits, cuts: &[usize]) -> Parsed {
    let mut buffer = BytesMut::new();
    let mut parsed = Parsed { commands: Vec::new(), failed: false };
    let mut start = 0;
    for &end in cuts {
        buffer.extend_from_slice(&data[start..end]);
        start = end;
        loop {
            let before = buffer.len();
            match parse_command(&mut buffer, limits) {
                Ok(Some(command)) => {
                    assert!(buffer.len() < before, "a command was parsed from no bytes");
                    parsed.commands.push(command);
                }
                Ok(None) => {
                    assert_eq!(buffer.len(), before, "an incomplete command consumed bytes");
                    break;
                }
                Err(ParseError::Protocol(message)) => {
                    assert!(!message.is_empty(), "a protocol error without a message");
                    parsed.failed = true;
                    return parsed;
                }
            }
        }
    }
    parsed
}

/// The cluster, secret and nonce the handshake checks use. No seed carries a proof made with
/// this secret, so a proof that verifies would be a forgery.
const CLUSTER: &str = "fuzz";
const SECRET: &[u8] = b"fuzzing-cluster-secret";
const OUR_NONCE: [u8; 32] = [7; 32];

/// Reads `data` as a peer's byte stream (with the handshake's and a large frame limit), decodes
/// it as one frame body, and decodes it as a payload under a valid header. Properties: a length
/// outside the limit is refused before anything is allocated for it; a frame is refused with a
/// clear error or decodes to a message that encodes to a frame reading back to the same
/// message; a proof in a handshake message never verifies against a secret it was not made
/// with.
pub fn peer_frame(data: &[u8]) {
    for max_bytes in [4096, 1 << 20] {
        read_stream(data, max_bytes);
    }
    check_body(data);
    let mut body = vec![FRAME_VERSION];
    body.extend_from_slice(&crc32c::crc32c(data).to_le_bytes());
    body.extend_from_slice(data);
    check_body(&body);
}

fn read_stream(data: &[u8], max_bytes: usize) {
    let mut reader = data;
    let mut body = Vec::new();
    // Every frame takes at least 9 bytes (length, version, checksum), which bounds the loop.
    for _ in 0..=data.len() / 9 {
        match futures::executor::block_on(frame::read_with(&mut reader, max_bytes, &mut body)) {
            Ok(wire) => check_wire(&wire),
            Err(FrameError::TooLarge { length_bytes, max_bytes: limit }) => {
                assert!(length_bytes > limit || length_bytes < 5, "{length_bytes} refused");
                assert!(body.capacity() <= limit.max(1 << 20), "buffer grew past the limit");
                return;
            }
            Err(error) => {
                assert!(!error.to_string().is_empty(), "a frame error without a message");
                return;
            }
        }
    }
}

fn check_body(body: &[u8]) {
    match frame::decode_body(body) {
        Ok(wire) => check_wire(&wire),
        Err(error) => assert!(!error.to_string().is_empty(), "a frame error without a message"),
    }
}

fn check_wire(wire: &Wire) {
    let encoded = frame::encode(wire).expect("a decoded message encodes");
    let mut reader = &encoded[..];
    let again = futures::executor::block_on(frame::read(&mut reader, encoded.len()))
        .expect("an encoded frame reads back");
    assert_eq!(&again, wire, "a frame did not round-trip");
    assert!(reader.is_empty(), "reading a frame left bytes behind");
    match wire {
        Wire::Hello { cluster, nonce, .. } => {
            let proof = frame::proof(SECRET, b"a", cluster, nonce, &OUR_NONCE);
            assert!(frame::verify(SECRET, b"a", cluster, nonce, &OUR_NONCE, &proof));
            assert!(!frame::verify(SECRET, b"c", cluster, nonce, &OUR_NONCE, &proof));
        }
        Wire::Challenge { nonce, proof, .. } => {
            assert!(!frame::verify(SECRET, b"a", CLUSTER, &OUR_NONCE, nonce, proof), "forged");
        }
        Wire::Proof { proof } => {
            assert!(!frame::verify(SECRET, b"c", CLUSTER, &OUR_NONCE, &OUR_NONCE, proof), "forged");
        }
        Wire::Message(_) | Wire::KeyspaceMessage { .. } => {}
    }
}

/// Parses `data` (as lossy UTF-8) as a node's RON configuration file. Properties: a bad file is
/// an error with a message; a good one serialises back to RON that parses to the same config.
pub fn node_config_ron(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match NodeFileConfig::parse(&text) {
        Ok(config) => {
            let again = ron::to_string(&config).expect("a parsed config serialises");
            let reparsed = NodeFileConfig::parse(&again)
                .unwrap_or_else(|error| panic!("a config's own RON is refused: {error}"));
            assert_eq!(reparsed, config, "a config did not round-trip through RON");
        }
        Err(error) => assert!(!error.to_string().is_empty(), "a config error without a message"),
    }
}

/// Valid inputs for the seed corpora, as (target, file name, bytes).
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let commands: [&[&[u8]]; 6] = [
        &[b"PING"],
        &[b"SET", b"key", b"value", b"EX", b"10"],
        &[b"GET", b"key"],
        &[b"MSET", b"a", b"1", b"b", b"\r\n\0binary"],
        &[b"HELLO", b"3", b"AUTH", b"default", b"secret"],
        &[b"CLIENT", b"SETNAME", b"fuzz"],
    ];
    for (i, command) in commands.iter().enumerate() {
        let mut bytes = Vec::new();
        Reply::Array(command.iter().map(|arg| Reply::Bulk(Bytes::copy_from_slice(arg))).collect())
            .encode(2, &mut bytes);
        out.push(("resp", format!("multibulk-{i}"), bytes));
    }
    out.push(("resp", "inline".into(), b"SET k v\r\nGET k\nPING\r\n".to_vec()));
    out.push(("resp", "pipelined".into(), [&out[0].2[..], &out[1].2, &out[2].2].concat()));

    let other_secret = b"not-the-fuzzing-secret";
    let nonce = [3u8; 32];
    let wires = [
        ("hello", Wire::Hello { cluster: CLUSTER.into(), node: ringkv_core::NodeId(2), nonce }),
        (
            "challenge",
            Wire::Challenge {
                node: ringkv_core::NodeId(1),
                nonce,
                proof: frame::proof(other_secret, b"a", CLUSTER, &OUR_NONCE, &nonce),
            },
        ),
        ("proof", Wire::Proof { proof: frame::proof(other_secret, b"c", CLUSTER, &nonce, &nonce) }),
    ];
    let mut handshake = Vec::new();
    for (name, wire) in wires {
        let bytes = frame::encode(&wire).expect("a seed frame encodes");
        handshake.extend_from_slice(&bytes);
        out.push(("peer_frame", format!("{name}.frame"), bytes));
    }
    out.push(("peer_frame", "handshake.stream".into(), handshake));

    out.push(("node_config_ron", "node.ron".into(), EXAMPLE_CONFIG.as_bytes().to_vec()));
    out
}

/// A node configuration using most fields.
const EXAMPLE_CONFIG: &str = r#"(
    node_id: 1,
    cluster: "fuzz",
    cluster_secret: "0123456789abcdef",
    client_addr: "127.0.0.1:7001",
    peer_addr: "127.0.0.1:8001",
    metrics_addr: Some("127.0.0.1:9001"),
    members: [
        (id: 1, peer_addr: "127.0.0.1:8001"),
        (id: 2, peer_addr: "127.0.0.1:8002"),
        (id: 3, peer_addr: "[::1]:8003"),
    ],
    data_dir: "/var/lib/ringkv",
    durability: Interval(20),
    replicas_n: 3,
    vnodes: 16,
    read_consistency: Quorum,
    write_consistency: All,
    password: Some("hunter2"),
    request_timeout_ms: 1000,
    cache_keys_max: 4096,
    datacenter: "dc1",
    rack: "r1",
    scrub_interval_s: 3600,
    worker_threads: 2,
)
"#;
