//! Datacenters and keyspaces in the real binary: nodes on loopback sockets with member locations
//! and `keyspaces` lists in their configuration, driven through the `redis` client.

// Test helpers fail the test loudly on any setup error; that is what unwrap does here.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use ringkv_net::config::NodeFileConfig;
use ringkv_net::RunningNode;
use ringkv_tests::{call, connect, error_line, free_address, start_node};

/// Configurations of one node per `(datacenter, rack)` of `locations` (ids from 1), with
/// `keyspaces` (RON, the list's inside) and data under `data_root`.
fn configs(locations: &[(&str, &str)], keyspaces: &str, data_root: &Path) -> Vec<NodeFileConfig> {
    let peers: Vec<_> = locations.iter().map(|_| free_address()).collect();
    let members = locations
        .iter()
        .zip(&peers)
        .enumerate()
        .map(|(index, ((datacenter, rack), peer))| {
            format!(
                "(id: {}, peer_addr: \"{peer}\", datacenter: \"{datacenter}\", rack: \"{rack}\")",
                index + 1
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    (1..=locations.len())
        .map(|id| {
            let text = format!(
                "(node_id: {id}, cluster: \"test\", cluster_secret: \"test-cluster-secret-0123\", \
                 client_addr: \"{}\", peer_addr: \"{}\", members: [{members}], \
                 request_timeout_ms: 2000, data_dir: \"{}\", keyspaces: [{keyspaces}])",
                free_address(),
                peers[id - 1],
                data_root.join(format!("node{id}")).display()
            );
            NodeFileConfig::parse(&text).expect("generated configuration is valid")
        })
        .collect()
}

/// Retries `args` through `connection` for up to `attempts` tenths of a second until it
/// succeeds; returns the last outcome.
async fn retried<T: redis::FromRedisValue>(
    connection: &mut redis::aio::MultiplexedConnection,
    args: &[&str],
    attempts: usize,
) -> redis::RedisResult<T> {
    let mut outcome = call(connection, args).await;
    for _ in 1..attempts {
        if outcome.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        outcome = call(connection, args).await;
    }
    outcome
}

/// Three nodes in dc1 (racks r1, r2, r1) and two in dc2; the default keyspace keeps three
/// replicas in dc1 and two in dc2 and reads and writes at LOCAL_QUORUM.
const TWO_DCS: &[(&str, &str)] =
    &[("dc1", "r1"), ("dc1", "r2"), ("dc1", "r1"), ("dc2", "r1"), ("dc2", "r2")];
const TWO_DC_KEYSPACE: &str = "(name: \"main\", db: 0, replicas_per_dc: {\"dc1\": 3, \"dc2\": 2}, \
     read_consistency: LocalQuorum, write_consistency: LocalQuorum)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_quorum_serves_dc1_while_dc2_is_cut_off_and_every_acknowledged_write_survives() {
    let data = tempfile::tempdir().unwrap();
    let configs = configs(TWO_DCS, TWO_DC_KEYSPACE, data.path());
    let mut nodes: Vec<Option<RunningNode>> = Vec::new();
    for config in &configs {
        nodes.push(Some(start_node(config).await));
    }
    let address =
        |nodes: &[Option<RunningNode>], index: usize| nodes[index].as_ref().unwrap().client_addr;
    let mut dc1 = connect(address(&nodes, 0)).await;
    // Every node up and ready: a write at EACH_QUORUM through dc1 reaches both datacenters.
    // RK.PUT answers with the new causal context.
    let _context: String =
        retried(&mut dc1, &["RK.PUT", "__ready", "1", "-", "EACH_QUORUM"], 100).await.unwrap();
    let levels: Vec<String> = call(&mut dc1, &["RK.CONSISTENCY"]).await.unwrap();
    assert_eq!(levels, vec!["read LOCAL_QUORUM", "write LOCAL_QUORUM"], "the keyspace's defaults");
    let mut acknowledged = Vec::new();
    for index in 0..20 {
        let (key, value) = (format!("before{index}"), format!("b{index}"));
        let () = call(&mut dc1, &["SET", &key, &value]).await.unwrap();
        acknowledged.push((key, value));
    }

    // dc2 is cut off: both of its nodes die at once, as a datacenter behind a broken link.
    for index in [3, 4] {
        nodes[index].take().unwrap().kill();
    }
    let mut other_dc1 = connect(address(&nodes, 1)).await;
    for index in 0..40 {
        let (key, value) = (format!("during{index}"), format!("d{index}"));
        let connection = if index % 2 == 0 { &mut dc1 } else { &mut other_dc1 };
        let () = call(connection, &["SET", &key, &value]).await.unwrap_or_else(|error| {
            panic!("LOCAL_QUORUM write {key} failed with dc2 cut off: {error}")
        });
        let read: Option<String> = call(connection, &["GET", &key]).await.unwrap();
        assert_eq!(read.as_deref(), Some(value.as_str()), "LOCAL_QUORUM read of {key}");
        acknowledged.push((key, value));
    }
    for (key, value) in &acknowledged[..20] {
        let read: Option<String> = call(&mut other_dc1, &["GET", key]).await.unwrap();
        assert_eq!(read.as_deref(), Some(value.as_str()), "{key} written before the cut");
    }
    // EACH_QUORUM needs a majority of dc2's replicas, which are gone: a clear refusal.
    let refused =
        error_line(call::<String>(&mut dc1, &["RK.PUT", "each", "x", "-", "EACH_QUORUM"]).await);
    assert!(
        refused.starts_with("UNAVAILABLE") || refused.starts_with("TIMEOUT"),
        "EACH_QUORUM with dc2 cut off: {refused}"
    );

    // dc2 comes back on its disks; once EACH_QUORUM writes go through again, every
    // acknowledged write reads back at ALL through a dc2 coordinator.
    for index in [3, 4] {
        nodes[index] = Some(start_node(&configs[index]).await);
    }
    let _context: String =
        retried(&mut dc1, &["RK.PUT", "healed", "1", "-", "EACH_QUORUM"], 150).await.unwrap();
    let mut dc2 = connect(address(&nodes, 3)).await;
    let () = call(&mut dc2, &["RK.CONSISTENCY", "READ", "ALL"]).await.unwrap();
    for (key, value) in &acknowledged {
        let read: Option<String> = retried(&mut dc2, &["GET", key], 50).await.unwrap();
        assert_eq!(
            read.as_deref(),
            Some(value.as_str()),
            "acknowledged write {key} after the heal"
        );
    }
    let status: String =
        ringkv_net::admin::run(address(&nodes, 3), None, ringkv_net::admin::AdminRequest::Status)
            .await
            .unwrap();
    assert!(status.contains("\nlocation: dc2/r1"), "{status}");
    assert!(status.contains("datacenter dc1: 3 nodes (1 on r1, 2 on r2, 3 on r1)"), "{status}");
    let ring: String =
        ringkv_net::admin::run(address(&nodes, 0), None, ringkv_net::admin::AdminRequest::Ring)
            .await
            .unwrap();
    // Three replicas in dc1's three nodes: each holds every key; likewise dc2's two.
    assert!(ring.contains("datacenter dc1: 3 nodes, primary"), "{ring}");
    assert!(ring.contains("replicas 300.0%"), "{ring}");
    assert!(ring.contains("replicas 200.0%"), "{ring}");
    for node in nodes.into_iter().flatten() {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_switches_between_independent_keyspaces() {
    let data = tempfile::tempdir().unwrap();
    let keyspaces = "(name: \"main\", db: 0, replicas_n: 3), \
        (name: \"cache\", db: 1, replicas_n: 2, conflict_mode: Lww, read_consistency: One, \
         hint_window_s: 60, tombstone_grace_s: 600)";
    let configs = configs(&[("dc1", "rack1"); 3], keyspaces, data.path());
    let mut nodes = Vec::new();
    for config in &configs {
        nodes.push(start_node(config).await);
    }
    let mut connection = connect(nodes[0].client_addr).await;
    let _context: String =
        retried(&mut connection, &["RK.PUT", "__ready", "1", "-", "ALL"], 100).await.unwrap();
    let () = call(&mut connection, &["SELECT", "1"]).await.unwrap();
    let _: String =
        retried(&mut connection, &["RK.PUT", "__ready", "1", "-", "ALL"], 100).await.unwrap();
    let levels: Vec<String> = call(&mut connection, &["RK.CONSISTENCY"]).await.unwrap();
    assert_eq!(levels, vec!["read ONE", "write QUORUM"], "db 1 starts at its keyspace's levels");

    // The same key holds different values in db 0 and db 1.
    let () = call(&mut connection, &["SET", "shared", "in-cache"]).await.unwrap();
    let () = call(&mut connection, &["SELECT", "0"]).await.unwrap();
    let () = call(&mut connection, &["SET", "shared", "in-main"]).await.unwrap();
    let main: Option<String> = call(&mut connection, &["GET", "shared"]).await.unwrap();
    assert_eq!(main.as_deref(), Some("in-main"));
    let mut other = connect(nodes[2].client_addr).await;
    let () = call(&mut other, &["SELECT", "1"]).await.unwrap();
    let cache: Option<String> = call(&mut other, &["GET", "shared"]).await.unwrap();
    assert_eq!(cache.as_deref(), Some("in-cache"), "db 1 through another node");
    let deleted: i64 = call(&mut other, &["DEL", "shared"]).await.unwrap();
    assert_eq!(deleted, 1);
    let still: Option<String> = call(&mut connection, &["GET", "shared"]).await.unwrap();
    assert_eq!(still.as_deref(), Some("in-main"), "a delete in db 1 leaves db 0 alone");

    // Their conflict modes differ: two blind writes stay siblings under DVV (db 0) and leave
    // one value under LWW (db 1).
    for connection in [&mut connection, &mut other] {
        for value in ["a", "b"] {
            let _: String =
                call(connection, &["RK.PUT", "conflict", value, "-", "ALL"]).await.unwrap();
        }
    }
    let (_, dvv): (String, Vec<String>) =
        call(&mut connection, &["RK.GETALL", "conflict", "ALL"]).await.unwrap();
    assert_eq!(dvv.len(), 2, "db 0 keeps both siblings: {dvv:?}");
    let (_, lww): (String, Vec<String>) =
        call(&mut other, &["RK.GETALL", "conflict", "ALL"]).await.unwrap();
    assert_eq!(lww, vec!["b"], "db 1 keeps the last write only");

    let undeclared = error_line(call::<()>(&mut connection, &["SELECT", "7"]).await);
    assert_eq!(undeclared, "ERR DB index is out of range");
    let main: Option<String> = call(&mut connection, &["GET", "shared"]).await.unwrap();
    assert_eq!(main.as_deref(), Some("in-main"), "a refused SELECT keeps the selected db");
    let refused = error_line(call::<String>(&mut connection, &["RK.SNAPSHOT", "s1"]).await);
    assert!(refused.contains("several keyspaces"), "{refused}");
    assert!(data.path().join("node1/keyspaces/cache").is_dir(), "db 1 keeps its own directory");
    for node in nodes {
        node.shutdown().await;
    }
}
