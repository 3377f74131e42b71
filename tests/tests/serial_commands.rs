//! Serial (Paxos) commands on real nodes over loopback, through a real Redis client: replies and
//! error messages as Redis gives them, and a shared counter that counts every acknowledged
//! increment exactly once and an unknown-outcome one at most once, with all nodes up and with one
//! of the three replicas killed mid-run (an in-process kill: every task of the node is aborted, as
//! the other real-network tests of this crate kill a node).

// Test helpers fail the test loudly on any setup error; that is what unwrap does here.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncCommands, RedisResult};
use ringkv_tests::{call, cluster_configs, connect, error_line, start_writable_cluster};

/// The value limit of the clusters here, small so that growing a string past it is cheap.
const VALUE_BYTES_MAX: usize = 1_024;

/// Clients of the counter tests.
const CLIENTS_N: usize = 4;
/// Increments each client performs.
const INCREMENTS_PER_CLIENT_M: usize = 200;
/// Most tries of one increment refused with "nothing applied" before the test gives up on it.
const ATTEMPTS_MAX: usize = 100;

/// Starts a 3-node cluster and returns it once a write at ALL succeeds (every peer link is up
/// and every node is ready).
async fn running_cluster(data: &std::path::Path) -> Vec<ringkv_net::RunningNode> {
    let mut configs = cluster_configs(3, data);
    for config in &mut configs {
        config.value_bytes_max = VALUE_BYTES_MAX;
    }
    start_writable_cluster(&configs).await
}

async fn shutdown(nodes: Vec<ringkv_net::RunningNode>) {
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_behave_as_in_redis_with_redis_error_messages() {
    let data = tempfile::tempdir().unwrap();
    let nodes = running_cluster(data.path()).await;
    let mut first = connect(nodes[0].client_addr).await;
    let mut second = connect(nodes[1].client_addr).await;

    // An absent key counts from 0; each node sees the others' increments.
    assert_eq!(call::<i64>(&mut first, &["INCR", "counter"]).await.unwrap(), 1);
    assert_eq!(call::<i64>(&mut second, &["INCR", "counter"]).await.unwrap(), 2);
    assert_eq!(call::<i64>(&mut first, &["DECR", "counter"]).await.unwrap(), 1);
    assert_eq!(call::<i64>(&mut second, &["INCRBY", "counter", "10"]).await.unwrap(), 11);
    assert_eq!(call::<i64>(&mut first, &["DECRBY", "counter", "20"]).await.unwrap(), -9);
    assert_eq!(call::<i64>(&mut second, &["INCRBY", "counter", "-1"]).await.unwrap(), -10);
    let read: Option<String> = second.get("counter").await.unwrap();
    assert_eq!(read.as_deref(), Some("-10"), "a plain GET reads the serial result");

    let not_integer = "ERR value is not an integer or out of range";
    assert_eq!(
        error_line(call::<i64>(&mut first, &["INCRBY", "counter", "1.5"]).await),
        not_integer
    );
    assert_eq!(error_line(call::<i64>(&mut first, &["DECRBY", "counter", "x"]).await), not_integer);
    assert_eq!(
        error_line(call::<i64>(&mut first, &["DECRBY", "counter", &i64::MIN.to_string()]).await),
        "ERR decrement would overflow"
    );
    let () = first.set("word", "hello").await.unwrap();
    assert_eq!(error_line(call::<i64>(&mut second, &["INCR", "word"]).await), not_integer);
    let () = first.set("padded", " 1").await.unwrap();
    assert_eq!(error_line(call::<i64>(&mut second, &["INCR", "padded"]).await), not_integer);
    let () = first.set("top", i64::MAX.to_string()).await.unwrap();
    assert_eq!(
        error_line(call::<i64>(&mut second, &["INCR", "top"]).await),
        "ERR increment or decrement would overflow"
    );
    let top: String = second.get("top").await.unwrap();
    assert_eq!(top, i64::MAX.to_string(), "a refused increment changes nothing");
    let () = first.set("bottom", i64::MIN.to_string()).await.unwrap();
    assert_eq!(
        error_line(call::<i64>(&mut second, &["DECR", "bottom"]).await),
        "ERR increment or decrement would overflow"
    );

    // INCRBYFLOAT, with the examples of Redis's documentation.
    let () = first.set("float", "10.50").await.unwrap();
    assert_eq!(
        call::<String>(&mut second, &["INCRBYFLOAT", "float", "0.1"]).await.unwrap(),
        "10.6"
    );
    assert_eq!(call::<String>(&mut first, &["INCRBYFLOAT", "float", "-5"]).await.unwrap(), "5.6");
    let () = first.set("float", "5.0e3").await.unwrap();
    assert_eq!(
        call::<String>(&mut second, &["INCRBYFLOAT", "float", "2.0e2"]).await.unwrap(),
        "5200"
    );
    assert_eq!(call::<String>(&mut second, &["INCRBYFLOAT", "fresh", "3"]).await.unwrap(), "3");
    let not_float = "ERR value is not a valid float";
    assert_eq!(
        error_line(call::<String>(&mut first, &["INCRBYFLOAT", "float", "abc"]).await),
        not_float
    );
    assert_eq!(
        error_line(call::<String>(&mut first, &["INCRBYFLOAT", "word", "1"]).await),
        not_float
    );
    assert_eq!(
        error_line(call::<String>(&mut first, &["INCRBYFLOAT", "float", "inf"]).await),
        "ERR increment would produce NaN or Infinity"
    );
    let float: String = second.get("float").await.unwrap();
    assert_eq!(float, "5200", "refused float increments change nothing");

    // INCR keeps the key's time to live, as Redis does.
    let () = first.set_ex("expiring", "1", 100).await.unwrap();
    assert_eq!(call::<i64>(&mut second, &["INCR", "expiring"]).await.unwrap(), 2);
    let ttl: i64 = first.ttl("expiring").await.unwrap();
    assert!((1..=100).contains(&ttl), "INCR dropped the TTL: {ttl}");

    for (args, name) in [
        (&["INCR"][..], "incr"),
        (&["INCR", "a", "b"], "incr"),
        (&["DECR"], "decr"),
        (&["INCRBY", "a"], "incrby"),
        (&["DECRBY", "a", "1", "2"], "decrby"),
        (&["INCRBYFLOAT", "a"], "incrbyfloat"),
    ] {
        let expected = format!("ERR wrong number of arguments for '{name}' command");
        assert_eq!(error_line(call::<i64>(&mut first, args).await), expected, "{args:?}");
    }
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn string_edits_and_conditional_sets_behave_as_in_redis() {
    let data = tempfile::tempdir().unwrap();
    let nodes = running_cluster(data.path()).await;
    let mut first = connect(nodes[0].client_addr).await;
    let mut second = connect(nodes[1].client_addr).await;

    // APPEND and SETRANGE, with the examples of Redis's documentation.
    assert_eq!(call::<i64>(&mut first, &["APPEND", "greeting", "Hello"]).await.unwrap(), 5);
    assert_eq!(call::<i64>(&mut second, &["APPEND", "greeting", " World"]).await.unwrap(), 11);
    assert_eq!(call::<i64>(&mut first, &["SETRANGE", "greeting", "6", "Redis"]).await.unwrap(), 11);
    let greeting: String = second.get("greeting").await.unwrap();
    assert_eq!(greeting, "Hello Redis");
    assert_eq!(call::<i64>(&mut second, &["SETRANGE", "padded", "6", "Redis"]).await.unwrap(), 11);
    let padded: Vec<u8> = first.get("padded").await.unwrap();
    assert_eq!(padded, b"\0\0\0\0\0\0Redis");
    // An empty write changes nothing and creates nothing, at any offset.
    assert_eq!(call::<i64>(&mut first, &["SETRANGE", "none", "5", ""]).await.unwrap(), 0);
    assert_eq!(
        call::<i64>(&mut first, &["SETRANGE", "greeting", "99999999", ""]).await.unwrap(),
        11
    );
    let none: i64 = second.exists("none").await.unwrap();
    assert_eq!(none, 0);
    assert_eq!(
        error_line(call::<i64>(&mut first, &["SETRANGE", "greeting", "-1", "x"]).await),
        "ERR offset is out of range"
    );
    assert_eq!(
        error_line(call::<i64>(&mut first, &["SETRANGE", "greeting", "one", "x"]).await),
        "ERR value is not an integer or out of range"
    );
    let too_large = "ERR string exceeds maximum allowed size";
    let offset = VALUE_BYTES_MAX.to_string();
    assert_eq!(
        error_line(call::<i64>(&mut first, &["SETRANGE", "greeting", &offset, "x"]).await),
        too_large
    );
    let () = first.set("full", "x".repeat(VALUE_BYTES_MAX - 1)).await.unwrap();
    assert_eq!(
        call::<i64>(&mut second, &["APPEND", "full", "y"]).await.unwrap(),
        VALUE_BYTES_MAX as i64
    );
    assert_eq!(error_line(call::<i64>(&mut second, &["APPEND", "full", "z"]).await), too_large);
    let full: i64 = first.strlen("full").await.unwrap();
    assert_eq!(full, VALUE_BYTES_MAX as i64, "a refused APPEND changes nothing");

    // SETNX, GETSET, GETDEL.
    assert_eq!(call::<i64>(&mut first, &["SETNX", "once", "one"]).await.unwrap(), 1);
    assert_eq!(call::<i64>(&mut second, &["SETNX", "once", "two"]).await.unwrap(), 0);
    assert_eq!(
        call::<Option<String>>(&mut second, &["GETSET", "once", "three"]).await.unwrap().as_deref(),
        Some("one")
    );
    assert_eq!(call::<Option<String>>(&mut first, &["GETSET", "fresh", "v"]).await.unwrap(), None);
    assert_eq!(
        call::<Option<String>>(&mut first, &["GETDEL", "once"]).await.unwrap().as_deref(),
        Some("three")
    );
    assert_eq!(call::<Option<String>>(&mut second, &["GETDEL", "once"]).await.unwrap(), None);
    let gone: Option<String> = second.get("once").await.unwrap();
    assert_eq!(gone, None, "GETDEL deleted the key");
    // GETSET clears the time to live, as a SET does.
    let () = first.set_ex("ttl", "a", 100).await.unwrap();
    let _: Option<String> = call(&mut second, &["GETSET", "ttl", "b"]).await.unwrap();
    assert_eq!(first.ttl::<_, i64>("ttl").await.unwrap(), -1);

    // SET with NX, XX, GET and KEEPTTL.
    assert_eq!(
        call::<Option<String>>(&mut first, &["SET", "s", "1", "NX"]).await.unwrap().as_deref(),
        Some("OK")
    );
    assert_eq!(call::<Option<String>>(&mut second, &["SET", "s", "2", "NX"]).await.unwrap(), None);
    assert_eq!(
        call::<Option<String>>(&mut second, &["SET", "s", "3", "XX"]).await.unwrap().as_deref(),
        Some("OK")
    );
    assert_eq!(
        call::<Option<String>>(&mut first, &["SET", "absent", "x", "XX"]).await.unwrap(),
        None
    );
    assert_eq!(
        call::<Option<String>>(&mut first, &["SET", "s", "4", "GET"]).await.unwrap().as_deref(),
        Some("3")
    );
    assert_eq!(
        call::<Option<String>>(&mut second, &["SET", "s", "5", "NX", "GET"])
            .await
            .unwrap()
            .as_deref(),
        Some("4")
    );
    assert_eq!(
        call::<Option<String>>(&mut second, &["SET", "absent", "x", "XX", "GET"]).await.unwrap(),
        None
    );
    let s: String = first.get("s").await.unwrap();
    assert_eq!(s, "4", "SET NX GET on a present key returns it and writes nothing");
    assert_eq!(first.exists::<_, i64>("absent").await.unwrap(), 0, "SET XX wrote an absent key");
    assert_eq!(
        error_line(call::<Option<String>>(&mut first, &["SET", "s", "6", "NX", "XX"]).await),
        "ERR syntax error"
    );
    assert_eq!(
        error_line(
            call::<Option<String>>(&mut first, &["SET", "s", "6", "KEEPTTL", "EX", "5"]).await
        ),
        "ERR syntax error"
    );
    assert_eq!(
        error_line(call::<Option<String>>(&mut first, &["SET", "s", "6", "EX", "soon"]).await),
        "ERR value is not an integer or out of range"
    );
    let () = first.set_ex("kept", "a", 100).await.unwrap();
    assert_eq!(
        call::<Option<String>>(&mut second, &["SET", "kept", "b", "KEEPTTL"])
            .await
            .unwrap()
            .as_deref(),
        Some("OK")
    );
    let ttl: i64 = first.ttl("kept").await.unwrap();
    assert!((1..=100).contains(&ttl), "KEEPTTL dropped the TTL: {ttl}");
    assert_eq!(
        call::<Option<String>>(&mut second, &["SET", "kept", "c", "XX"]).await.unwrap().as_deref(),
        Some("OK")
    );
    assert_eq!(first.ttl::<_, i64>("kept").await.unwrap(), -1, "SET XX without KEEPTTL clears it");
    // EXAT in the future sets a TTL; a time already past writes a value that is expired at once.
    let now_s =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let at = (now_s + 100).to_string();
    assert_eq!(
        call::<Option<String>>(&mut first, &["SET", "at", "v", "XX", "EXAT", &at]).await.unwrap(),
        None
    );
    assert_eq!(
        call::<Option<String>>(&mut first, &["SET", "at", "v", "NX", "EXAT", &at])
            .await
            .unwrap()
            .as_deref(),
        Some("OK")
    );
    let ttl: i64 = second.ttl("at").await.unwrap();
    assert!((1..=100).contains(&ttl), "EXAT left a TTL of {ttl}");
    assert_eq!(
        call::<Option<String>>(&mut second, &["SET", "at", "w", "XX", "PXAT", "1"])
            .await
            .unwrap()
            .as_deref(),
        Some("OK")
    );
    assert_eq!(
        first.get::<_, Option<String>>("at").await.unwrap(),
        None,
        "a past PXAT expires the key"
    );

    // The extensions: RK.CAS applies only on the expected value; RK.SERIALGET reads at SERIAL.
    let () = first.set("cas", "a").await.unwrap();
    assert_eq!(call::<i64>(&mut second, &["RK.CAS", "cas", "a", "b"]).await.unwrap(), 1);
    assert_eq!(call::<i64>(&mut first, &["RK.CAS", "cas", "a", "z"]).await.unwrap(), 0);
    assert_eq!(call::<i64>(&mut first, &["RK.CAS", "cas-absent", "", "z"]).await.unwrap(), 0);
    assert_eq!(
        call::<Option<String>>(&mut first, &["RK.SERIALGET", "cas"]).await.unwrap().as_deref(),
        Some("b")
    );
    assert_eq!(
        call::<Option<String>>(&mut second, &["RK.SERIALGET", "cas-absent"]).await.unwrap(),
        None
    );
    let cas: String = second.get("cas").await.unwrap();
    assert_eq!(cas, "b", "the refused RK.CAS wrote nothing");

    for (args, name) in [
        (&["APPEND", "a"][..], "append"),
        (&["SETRANGE", "a", "1"], "setrange"),
        (&["SETNX", "a"], "setnx"),
        (&["GETSET", "a", "b", "c"], "getset"),
        (&["GETDEL"], "getdel"),
        (&["RK.CAS", "a", "b"], "rk.cas"),
        (&["RK.SERIALGET"], "rk.serialget"),
    ] {
        let expected = format!("ERR wrong number of arguments for '{name}' command");
        assert_eq!(error_line(call::<i64>(&mut first, args).await), expected, "{args:?}");
    }
    shutdown(nodes).await;
}

/// What one client's increments saw.
#[derive(Debug, Default)]
struct Tally {
    /// Increments answered with the counter's new value.
    acked: u64,
    /// Increments answered with an unknown outcome (TIMEOUT): applied or not.
    unknown: u64,
    /// Tries refused with nothing applied (NOQUORUM, UNAVAILABLE, BUSY), then retried.
    retried: u64,
    /// The value each acknowledged increment returned.
    values: Vec<i64>,
}

/// Increments `key` `count` times through `connection`. A try refused with nothing applied is
/// retried (at most [`ATTEMPTS_MAX`] tries); an unknown outcome is counted and not retried,
/// since a retry could count it twice.
async fn increment(
    mut connection: MultiplexedConnection,
    key: &'static str,
    count: usize,
    progress: Arc<AtomicU64>,
) -> Tally {
    let mut tally = Tally::default();
    for _ in 0..count {
        let mut tries = 0;
        loop {
            tries += 1;
            let result: RedisResult<i64> = connection.incr(key, 1).await;
            match result {
                Ok(value) => {
                    tally.acked += 1;
                    tally.values.push(value);
                    break;
                }
                Err(error) if error.code() == Some("TIMEOUT") => {
                    tally.unknown += 1;
                    break;
                }
                Err(error)
                    if matches!(error.code(), Some("NOQUORUM" | "UNAVAILABLE" | "BUSY"))
                        && tries < ATTEMPTS_MAX =>
                {
                    tally.retried += 1;
                }
                Err(error) => panic!("increment failed after {tries} tries: {error}"),
            }
        }
        progress.fetch_add(1, Ordering::Relaxed);
    }
    tally
}

/// Runs [`CLIENTS_N`] clients of [`INCREMENTS_PER_CLIENT_M`] increments each on one key, client
/// `i` on `addresses[i % len]`; `during` runs once half the increments are done.
async fn count_together(
    addresses: &[std::net::SocketAddr],
    key: &'static str,
    during: impl FnOnce(),
) -> Tally {
    let progress = Arc::new(AtomicU64::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..CLIENTS_N {
        let connection = connect(addresses[client % addresses.len()]).await;
        clients.spawn(increment(connection, key, INCREMENTS_PER_CLIENT_M, progress.clone()));
    }
    let half = (CLIENTS_N * INCREMENTS_PER_CLIENT_M / 2) as u64;
    let mut tallies = Vec::new();
    // Clients that finish (or fail) early are collected while waiting, so a failed client
    // fails the test instead of leaving it waiting for progress that never comes.
    while progress.load(Ordering::Relaxed) < half && !clients.is_empty() {
        tokio::select! {
            Some(tally) = clients.join_next() => tallies.push(tally.unwrap()),
            () = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
    }
    during();
    while let Some(tally) = clients.join_next().await {
        tallies.push(tally.unwrap());
    }
    let mut total = Tally::default();
    for tally in tallies {
        total.acked += tally.acked;
        total.unknown += tally.unknown;
        total.retried += tally.retried;
        total.values.extend(tally.values);
    }
    total
}

/// Checks a counting run: every increment was acknowledged or unknown; the final value counts
/// every acknowledged one and at most the unknown ones (exactly the total when none is
/// unknown); and, the counter being linearizable, no two acknowledged increments returned the
/// same value, nor one above the final count.
fn check_count(tally: &Tally, final_value: i64) {
    let total = (CLIENTS_N * INCREMENTS_PER_CLIENT_M) as u64;
    assert_eq!(tally.acked + tally.unknown, total, "{tally:?}");
    let final_value = u64::try_from(final_value).unwrap();
    assert!(
        (tally.acked..=tally.acked + tally.unknown).contains(&final_value),
        "final {final_value}, acknowledged {}, unknown {}",
        tally.acked,
        tally.unknown
    );
    if tally.unknown == 0 {
        assert_eq!(final_value, total, "every increment acknowledged, so the count is exact");
    }
    let distinct: BTreeSet<i64> = tally.values.iter().copied().collect();
    assert_eq!(distinct.len(), tally.values.len(), "two increments returned the same value");
    assert!(distinct.iter().all(|value| (1..=final_value as i64).contains(value)), "{distinct:?}");
    eprintln!(
        "counted {final_value}: {} acknowledged, {} unknown, {} clean refusals retried",
        tally.acked, tally.unknown, tally.retried
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_through_every_node_count_every_acknowledged_one_once() {
    let data = tempfile::tempdir().unwrap();
    let nodes = running_cluster(data.path()).await;
    let addresses: Vec<_> = nodes.iter().map(|node| node.client_addr).collect();
    let tally = count_together(&addresses, "shared", || {}).await;
    let mut reader = connect(nodes[2].client_addr).await;
    let serial: String = call(&mut reader, &["RK.SERIALGET", "shared"]).await.unwrap();
    let final_value: i64 = serial.parse().unwrap();
    check_count(&tally, final_value);
    let quorum: String = reader.get("shared").await.unwrap();
    assert_eq!(quorum, serial, "a QUORUM read sees the last committed increment");
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_keep_counting_with_one_replica_killed_mid_run() {
    let data = tempfile::tempdir().unwrap();
    let mut nodes = running_cluster(data.path()).await;
    // Clients talk to the two survivors only: they are a Paxos quorum of the key's 3 replicas.
    let addresses = [nodes[0].client_addr, nodes[1].client_addr];
    let victim = nodes.remove(2);
    let tally = count_together(&addresses, "shared", move || victim.kill()).await;
    let mut reader = connect(nodes[1].client_addr).await;
    let serial: String = call(&mut reader, &["RK.SERIALGET", "shared"]).await.unwrap();
    check_count(&tally, serial.parse().unwrap());
    shutdown(nodes).await;
}

/// The guarantees README.md states for a key used by plain and serial commands, one by one:
/// a serial command sees every plain write acknowledged before it (its prepare reads a quorum),
/// a plain QUORUM read sees every serial result acknowledged before it (the commit is written
/// at a quorum), and a serial command that meets concurrent siblings works on the newest one
/// and replaces them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_and_serial_commands_on_one_key_keep_the_documented_guarantees() {
    let data = tempfile::tempdir().unwrap();
    let nodes = running_cluster(data.path()).await;
    let mut connections = Vec::new();
    for node in &nodes {
        connections.push(connect(node.client_addr).await);
    }

    // A plain write, then serial commands through other nodes.
    let _: () = connections[0].set("mixed", "5").await.unwrap();
    assert_eq!(call::<i64>(&mut connections[1], &["INCR", "mixed"]).await.unwrap(), 6);
    let read: Option<String> = connections[2].get("mixed").await.unwrap();
    assert_eq!(read.as_deref(), Some("6"), "a plain GET sees the serial result");
    let _: () = connections[2].set("mixed", "10").await.unwrap();
    assert_eq!(
        call::<i64>(&mut connections[0], &["RK.CAS", "mixed", "10", "11"]).await.unwrap(),
        1
    );
    assert_eq!(
        call::<i64>(&mut connections[1], &["RK.CAS", "mixed", "10", "12"]).await.unwrap(),
        0
    );
    let _: () = connections[1].del("mixed").await.unwrap();
    assert_eq!(call::<i64>(&mut connections[2], &["SETNX", "mixed", "fresh"]).await.unwrap(), 1);
    assert_eq!(
        call::<Option<String>>(&mut connections[0], &["RK.SERIALGET", "mixed"]).await.unwrap(),
        Some("fresh".to_string())
    );

    // Two plain writes without a causal context leave siblings; INCR counts from the newest
    // and its result replaces both.
    for value in ["1", "7"] {
        let _: String = redis::cmd("RK.PUT")
            .arg("siblings")
            .arg(value)
            .arg("-")
            .arg("ALL")
            .query_async(&mut connections[0])
            .await
            .unwrap();
    }
    let (_, before): (String, Vec<String>) = redis::cmd("RK.GETALL")
        .arg("siblings")
        .arg("ALL")
        .query_async(&mut connections[1])
        .await
        .unwrap();
    assert_eq!(before.len(), 2, "two context-free writes are siblings: {before:?}");
    assert_eq!(call::<i64>(&mut connections[1], &["INCR", "siblings"]).await.unwrap(), 8);
    let (_, after): (String, Vec<String>) = redis::cmd("RK.GETALL")
        .arg("siblings")
        .arg("ALL")
        .query_async(&mut connections[2])
        .await
        .unwrap();
    assert_eq!(after, vec!["8".to_string()], "the serial result replaces every sibling");
    shutdown(nodes).await;
}
