//! Cluster-wide truncation (`ClientRequest::Flush`) through the in-process router.

use bytes::Bytes;
use ringkv_core::cas::CasOp;
use ringkv_core::harness::{Cluster, Reply};
use ringkv_core::message::{ClientRequest, ClientResponse};
use ringkv_core::{ClientError, Consistency, Duration, NodeConfig, NodeId};

fn config(members: u32) -> NodeConfig {
    NodeConfig::new((1..=members).map(NodeId).collect())
}

fn set(key: &str, value: &str) -> ClientRequest {
    ClientRequest::Set {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
        ttl: None,
        consistency: Consistency::Quorum,
    }
}

fn values(cluster: &mut Cluster, node: NodeId, key: &str) -> Vec<Bytes> {
    read(cluster, node, key, Consistency::All)
}

fn read(cluster: &mut Cluster, node: NodeId, key: &str, consistency: Consistency) -> Vec<Bytes> {
    let get = ClientRequest::Get { key: Bytes::copy_from_slice(key.as_bytes()), consistency };
    match cluster.call(node, get) {
        Ok(ClientResponse::Read(read)) => read.values,
        other => panic!("expected a read, got {other:?}"),
    }
}

/// Keys of `keys` whose stored object at `node` still holds a sibling (a flush leaves the
/// clock of an object, without the siblings it covers).
fn stored_objects(cluster: &mut Cluster, node: NodeId, keys: &[String]) -> usize {
    keys.iter()
        .filter(|key| {
            let object = cluster.node(node).local_object(key.as_bytes()).expect("read");
            object.is_some_and(|object| !object.siblings.is_empty())
        })
        .count()
}

#[test]
fn a_flush_empties_every_replica_and_later_writes_are_kept() {
    let mut cluster = Cluster::new(config(3));
    let keys: Vec<String> = (0..50).map(|index| format!("key-{index}")).collect();
    for key in &keys {
        assert!(cluster.call(NodeId(1), set(key, "old")).is_ok());
    }
    let counter = Bytes::from_static(b"counter");
    let incr = ClientRequest::Cas { key: counter.clone(), op: CasOp::IncrBy { delta: 5 } };
    assert!(cluster.call(NodeId(2), incr.clone()).is_ok());
    assert_eq!(cluster.call(NodeId(2), ClientRequest::Flush), Ok(ClientResponse::Flushed));
    for node in [NodeId(1), NodeId(2), NodeId(3)] {
        assert_eq!(stored_objects(&mut cluster, node, &keys), 0, "node {node:?} kept keys");
        assert_eq!(node_flushes(&mut cluster, node), 1);
    }
    assert!(values(&mut cluster, NodeId(3), "key-7").is_empty());
    // The counter starts again from nothing: its value went with the data.
    match cluster.call(NodeId(3), incr) {
        Ok(ClientResponse::Cas(reply)) => assert_eq!(reply.current.as_deref(), Some(&b"5"[..])),
        other => panic!("expected a serial reply, got {other:?}"),
    }
    assert!(cluster.call(NodeId(1), set("key-7", "new")).is_ok());
    assert_eq!(values(&mut cluster, NodeId(2), "key-7"), vec![Bytes::from_static(b"new")]);
}

fn node_flushes(cluster: &mut Cluster, node: NodeId) -> u64 {
    cluster.node(node).counters().flushes_applied
}

#[test]
fn a_flush_with_a_member_down_is_refused_and_truncates_nothing() {
    let mut cluster = Cluster::new(config(3));
    assert!(cluster.call(NodeId(1), set("kept", "v")).is_ok());
    cluster.declare(NodeId(3), false);
    let refused = cluster.call(NodeId(1), ClientRequest::Flush);
    assert_eq!(refused, Err(ClientError::Unavailable { required: 3, alive: 2 }));
    let kept = read(&mut cluster, NodeId(2), "kept", Consistency::Quorum);
    assert_eq!(kept, vec![Bytes::from_static(b"v")]);
}

/// A flush from node 1 during which node 3 goes silent (isolated, not yet suspected) after it
/// answered the clock reading and before the truncation reaches it (1 ms per hop).
fn flush_losing_node_3_after_its_clock(cluster: &mut Cluster) -> Reply {
    let request = cluster.request(NodeId(1), ClientRequest::Flush);
    cluster.run_for(Duration::from_micros(2_500));
    cluster.isolate(NodeId(3));
    cluster.run_until_reply(request, Duration::from_secs(10)).expect("the flush answers")
}

#[test]
fn a_member_cut_off_before_the_flush_fails_it_with_nothing_truncated() {
    let mut cluster = Cluster::new(config(3));
    assert!(cluster.call(NodeId(1), set("kept", "v")).is_ok());
    cluster.isolate(NodeId(3));
    let refused = cluster.call(NodeId(1), ClientRequest::Flush);
    assert_eq!(refused, Err(ClientError::Unavailable { required: 3, alive: 2 }));
    for node in [NodeId(1), NodeId(2), NodeId(3)] {
        assert!(cluster.node(node).local_object(b"kept").expect("read").is_some());
        assert_eq!(node_flushes(&mut cluster, node), 0);
    }
}

#[test]
fn a_member_cut_off_mid_flush_fails_it_by_name_and_a_second_flush_completes_it() {
    let mut cluster = Cluster::new(config(3));
    let keys: Vec<String> = (0..20).map(|index| format!("k{index}")).collect();
    for key in &keys {
        assert!(cluster.call(NodeId(1), set(key, "old")).is_ok());
    }
    let incomplete = flush_losing_node_3_after_its_clock(&mut cluster);
    assert!(
        matches!(&incomplete, Err(ClientError::FlushIncomplete { acked: 2, members: 3, missing }) if missing == &vec![3]),
        "{incomplete:?}"
    );
    assert_eq!(stored_objects(&mut cluster, NodeId(3), &keys), keys.len());
    cluster.heal(NodeId(3));
    cluster.run_for(Duration::from_secs(5));
    // Node 3's old copies reach the others by repair and anti-entropy and are dropped there.
    assert!(values(&mut cluster, NodeId(1), "k1").is_empty());
    assert_eq!(cluster.call(NodeId(2), ClientRequest::Flush), Ok(ClientResponse::Flushed));
    for node in [NodeId(1), NodeId(2), NodeId(3)] {
        assert_eq!(stored_objects(&mut cluster, node, &keys), 0);
    }
}

#[test]
fn the_truncation_point_survives_a_restart_and_old_copies_are_still_dropped() {
    let mut cluster = Cluster::new(config(3));
    assert!(cluster.call(NodeId(1), set("key", "old")).is_ok());
    let incomplete = flush_losing_node_3_after_its_clock(&mut cluster);
    assert!(matches!(incomplete, Err(ClientError::FlushIncomplete { .. })), "{incomplete:?}");
    cluster.crash(NodeId(1));
    cluster.restart(NodeId(1));
    cluster.heal(NodeId(3));
    cluster.run_for(Duration::from_secs(5));
    // Node 3 still holds "old" and takes part in the reads; the flushed nodes drop its copy
    // from replies and repairs.
    let quorum =
        ClientRequest::Get { key: Bytes::from_static(b"key"), consistency: Consistency::Quorum };
    for _ in 0..3 {
        let _ = cluster.call(NodeId(1), quorum.clone());
    }
    assert!(read(&mut cluster, NodeId(2), "key", Consistency::All).is_empty());
    // Repair may leave a clock with no sibling (it covers the dropped write); never the value.
    for node in [NodeId(1), NodeId(2)] {
        let object = cluster.node(node).local_object(b"key").expect("read");
        assert!(object.is_none_or(|object| object.siblings.is_empty()), "node {node:?}");
    }
    // Node 3 missed the flush and still serves its copy itself, until the flush is run again.
    assert_eq!(cluster.call(NodeId(3), ClientRequest::Flush), Ok(ClientResponse::Flushed));
    assert!(read(&mut cluster, NodeId(3), "key", Consistency::One).is_empty());
}
