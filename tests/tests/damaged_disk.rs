//! A real node whose data directory holds a damaged table: the driver rebuilds it blank (at
//! start, or by restarting it in-process when a scrub finds the damage while it runs), and
//! anti-entropy refills it until it serves every key again on its own.

// Test helpers fail the test loudly on any setup error; that is what unwrap does here.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use redis::AsyncCommands;
use ringkv_core::lsm::LsmStorage;
use ringkv_net::config::NodeFileConfig;
use ringkv_net::RunningNode;
use ringkv_storage::{Engine, StdFs, Vfs};
use ringkv_tests::{cluster_configs, connect, start_node};

const KEYS: usize = 200;

/// Starts every node, writes `KEYS` keys at ALL (so every replica holds all of them) and stops
/// the cluster cleanly.
async fn write_everything_and_stop(configs: &[NodeFileConfig]) {
    let mut nodes = Vec::new();
    for config in configs {
        nodes.push(start_node(config).await);
    }
    let mut connection = connect(nodes[0].client_addr).await;
    let _: String =
        redis::cmd("RK.CONSISTENCY").arg("ALL").query_async(&mut connection).await.unwrap();
    // Until every peer connection is up and every epoch durable, ALL is refused.
    let mut accepted = false;
    for _ in 0..200 {
        let result: redis::RedisResult<()> = connection.set("key0", "value0").await;
        if result.is_ok() {
            accepted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(accepted, "the cluster never accepted a write at ALL");
    for index in 1..KEYS {
        let () = connection.set(format!("key{index}"), format!("value{index}")).await.unwrap();
    }
    drop(connection);
    for node in nodes {
        node.shutdown().await;
    }
}

/// Flushes the stopped node's WAL into a table, so that there is a table to damage; returns its
/// file name.
fn flush_into_a_table(data_dir: &Path) -> String {
    let fs = StdFs::new(data_dir).unwrap();
    let mut engine = Engine::open(fs.clone(), LsmStorage::<StdFs>::node_options()).unwrap();
    engine.request_flush().unwrap();
    engine.run_pending().unwrap();
    drop(engine);
    let tables: Vec<String> =
        fs.list().unwrap().into_iter().filter(|name| name.ends_with(".sst")).collect();
    assert_eq!(tables.len(), 1, "one flush makes one table: {tables:?}");
    tables.into_iter().next().unwrap()
}

/// Inverts `len` bytes of `file` starting at `offset` (from the end when `from_end`).
fn damage(file: &Path, offset: usize, len: usize, from_end: bool) {
    let mut bytes = std::fs::read(file).unwrap();
    let start = if from_end { bytes.len() - offset } else { offset };
    for byte in &mut bytes[start..start + len] {
        *byte = !*byte;
    }
    std::fs::write(file, bytes).unwrap();
}

/// Waits until `node` has restarted `restarts` times (per its metrics) and is no longer
/// rebuilding, i.e. the other replicas have refilled it.
async fn wait_until_refilled(node: &RunningNode, restarts: u64) {
    for _ in 0..600 {
        let restarted = node.metrics.node_restarts.get() >= restarts;
        let status = node.handle.status().await.expect("the node runs");
        if restarted && !status.rebuilding {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the node was never refilled");
}

/// Stops every node but the last, then reads every key at ONE through the last: it answers
/// from its own disk alone.
async fn the_last_node_alone_serves_every_key(mut nodes: Vec<RunningNode>) {
    let last = nodes.pop().unwrap();
    for node in nodes {
        node.shutdown().await;
    }
    let mut connection = connect(last.client_addr).await;
    let _: String =
        redis::cmd("RK.CONSISTENCY").arg("ONE").query_async(&mut connection).await.unwrap();
    for index in 0..KEYS {
        let value: Option<String> = connection.get(format!("key{index}")).await.unwrap();
        assert_eq!(value, Some(format!("value{index}")), "key{index} missing after the rebuild");
    }
    drop(connection);
    last.shutdown().await;
}

fn quarantined(data_dir: &Path) -> Vec<String> {
    let names = StdFs::new(data_dir).unwrap().list().unwrap();
    names.into_iter().filter(|name| name.starts_with("quarantine-")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_table_footer_is_damaged_starts_rebuilt_and_is_refilled() {
    let data = tempfile::tempdir().unwrap();
    let configs = cluster_configs(3, data.path());
    write_everything_and_stop(&configs).await;
    let damaged_dir = &configs[2].data_dir;
    let table = flush_into_a_table(damaged_dir);
    // The footer: recovery opens every table's footer and index, so the start finds it.
    damage(&damaged_dir.join(&table), 8, 4, true);

    let mut nodes = Vec::new();
    for config in &configs {
        nodes.push(start_node(config).await);
    }
    let moved = quarantined(damaged_dir);
    assert!(moved.iter().any(|name| name.ends_with(&table)), "table not moved aside: {moved:?}");
    wait_until_refilled(&nodes[2], 0).await;
    assert_eq!(nodes[2].metrics.node_restarts.get(), 0, "rebuilt at start, not restarted");
    the_last_node_alone_serves_every_key(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrub_finds_a_damaged_block_and_the_node_restarts_rebuilt_and_is_refilled() {
    let data = tempfile::tempdir().unwrap();
    let mut configs = cluster_configs(3, data.path());
    write_everything_and_stop(&configs).await;
    let damaged_dir = configs[2].data_dir.clone();
    let table = flush_into_a_table(&damaged_dir);
    // A data block: the start reads only footers and indexes, so the node starts on it.
    damage(&damaged_dir.join(&table), 64, 4, false);
    configs[2].scrub_interval_s = 1;

    let mut nodes = Vec::new();
    for config in &configs {
        nodes.push(start_node(config).await);
    }
    let epoch_before = nodes[2].handle.status().await.unwrap().epoch;
    wait_until_refilled(&nodes[2], 1).await;
    let status = nodes[2].handle.status().await.unwrap();
    assert_ne!(status.epoch, epoch_before, "a rebuilt node draws a new epoch");
    assert!(nodes[2].metrics.storage_scrubs.get() >= 1);
    let moved = quarantined(&damaged_dir);
    assert!(moved.iter().any(|name| name.ends_with(&table)), "table not moved aside: {moved:?}");
    the_last_node_alone_serves_every_key(nodes).await;
}
