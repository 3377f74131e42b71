//! Snapshot, backup and restore over real sockets and files: 100,000 keys are written to a
//! 3-node cluster, every node snapshots, then keys are changed, added and deleted; the backup
//! restored into a fresh 3-node cluster (file by file) and loaded into a fresh 4-node cluster
//! (key by key) both hold exactly the snapshot's state. A corrupt or partial backup, a stale
//! snapshot and a data directory in use are refused with messages naming the cause.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use ringkv_net::admin::AdminTarget;
use ringkv_net::backup::{self, RestoreInto};
use ringkv_net::driver::wall_clock;
use ringkv_tests::{cluster_configs, connect, start_node, start_writable_cluster};

const KEYS: usize = 100_000;
const BATCH: usize = 1_000;

fn key(i: usize) -> String {
    format!("key:{i:06}")
}

async fn set_all(
    connection: &mut redis::aio::MultiplexedConnection,
    keys: impl Iterator<Item = (String, String)>,
) {
    let mut pipeline = redis::pipe();
    let mut queued = 0;
    for (key, value) in keys {
        pipeline.cmd("SET").arg(key).arg(value).ignore();
        queued += 1;
        if queued == BATCH {
            let () = pipeline.query_async(connection).await.unwrap();
            pipeline.clear();
            queued = 0;
        }
    }
    if queued > 0 {
        let () = pipeline.query_async(connection).await.unwrap();
    }
}

/// Values of `keys` read at QUORUM, retried while the restored nodes are still refilling (a
/// refilling node answers no reads, so a quorum may be missing for a few seconds).
async fn get_all(
    connection: &mut redis::aio::MultiplexedConnection,
    keys: &[String],
) -> Vec<Option<String>> {
    let mut values = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(BATCH) {
        let mut attempts = 0;
        loop {
            let mut pipeline = redis::pipe();
            for key in chunk {
                pipeline.cmd("GET").arg(key);
            }
            let read: redis::RedisResult<Vec<Option<String>>> =
                pipeline.query_async(connection).await;
            match read {
                Ok(read) => {
                    values.extend(read);
                    break;
                }
                Err(error) if attempts < 300 => {
                    attempts += 1;
                    if attempts % 50 == 0 {
                        eprintln!("reads still refused: {error}");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("reads never came back: {error}"),
            }
        }
    }
    values
}

/// Whether the cluster behind `connection` holds exactly the snapshot's state.
async fn check_snapshot_state(connection: &mut redis::aio::MultiplexedConnection) {
    let original: Vec<String> = (0..KEYS).map(key).collect();
    let values = get_all(connection, &original).await;
    let wrong: Vec<(usize, &Option<String>)> = values
        .iter()
        .enumerate()
        .filter(|(i, value)| value.as_deref() != Some(format!("value {i} before").as_str()))
        .take(5)
        .collect();
    assert!(wrong.is_empty(), "keys without their snapshot value (first 5): {wrong:?}");
    let added: Vec<String> = (0..5_000).map(|i| format!("added:{i}")).collect();
    let later = get_all(connection, &added).await;
    assert!(later.iter().all(Option::is_none), "a key written after the snapshot came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_restores_exactly_the_snapshot_into_a_same_size_and_a_bigger_cluster() {
    let root = tempfile::tempdir().unwrap();
    let mut configs = cluster_configs(3, &root.path().join("live"));
    for config in &mut configs {
        // Small memtables, so that the snapshot holds tables (hard links) as well as WAL copies.
        config.memtable_bytes_max = 1 << 20;
    }
    let nodes = start_writable_cluster(&configs).await;
    let addrs: Vec<_> = nodes.iter().map(|node| node.client_addr).collect();
    let mut connection = connect(addrs[0]).await;
    let started = std::time::Instant::now();
    set_all(&mut connection, (0..KEYS).map(|i| (key(i), format!("value {i} before")))).await;
    eprintln!("{KEYS} keys written in {:.1} s", started.elapsed().as_secs_f64());

    let taken = backup::snapshot(&addrs, &AdminTarget::default(), "before-changes").await.unwrap();
    assert_eq!(taken.lines().count(), 3, "{taken}");
    let again =
        backup::snapshot(&addrs[..1], &AdminTarget::default(), "before-changes").await.unwrap_err();
    assert!(again.contains("exists already"), "{again}");
    let bad_name =
        backup::snapshot(&addrs[..1], &AdminTarget::default(), "../escape").await.unwrap_err();
    assert!(bad_name.contains("invalid snapshot name"), "{bad_name}");

    // After the snapshot: changes, additions, deletions; none of them may come back.
    set_all(&mut connection, (0..5_000).map(|i| (key(i), "changed after".to_string()))).await;
    set_all(&mut connection, (0..5_000).map(|i| (format!("added:{i}"), "new".to_string()))).await;
    let mut pipeline = redis::pipe();
    for i in 5_000..10_000 {
        pipeline.cmd("DEL").arg(key(i)).ignore();
    }
    let () = pipeline.query_async(&mut connection).await.unwrap();

    let backup_dir = root.path().join("backup");
    let started = std::time::Instant::now();
    let copied = backup::backup(&addrs, &AdminTarget::default(), "before-changes", &backup_dir)
        .await
        .unwrap();
    eprintln!("backup in {:.1} s:\n{copied}", started.elapsed().as_secs_f64());
    for id in 1..=3 {
        backup::verify_backup(&backup_dir.join(format!("node-{id}"))).unwrap();
    }
    for node in nodes {
        node.shutdown().await;
    }

    // Node by node, into a new cluster of the same three ids.
    let restored_configs = cluster_configs(3, &root.path().join("restored"));
    for config in &restored_configs {
        let line = backup::restore_node(
            &backup_dir,
            config.node_id,
            &config.data_dir,
            RestoreInto::NewCluster,
            wall_clock(),
        )
        .unwrap();
        assert!(line.contains("restored snapshot before-changes"), "{line}");
    }
    let mut restored = Vec::new();
    for config in &restored_configs {
        restored.push(start_node(config).await);
    }
    let started = std::time::Instant::now();
    let mut connection = connect(restored[1].client_addr).await;
    check_snapshot_state(&mut connection).await;
    eprintln!("same-size restore checked in {:.1} s", started.elapsed().as_secs_f64());
    for node in restored {
        node.shutdown().await;
    }

    // Key by key, into a running cluster of four nodes.
    let bigger = start_writable_cluster(&cluster_configs(4, &root.path().join("bigger"))).await;
    let target = AdminTarget { addr: Some(bigger[2].client_addr), ..AdminTarget::default() };
    let started = std::time::Instant::now();
    let loaded = backup::load_into(&backup_dir, &target, wall_clock()).await.unwrap();
    eprintln!("loaded in {:.1} s: {loaded}", started.elapsed().as_secs_f64());
    // Every key, and the probe `start_writable_cluster` wrote.
    assert!(loaded.starts_with(&format!("{} keys written", KEYS + 1)), "{loaded}");
    let mut connection = connect(bigger[0].client_addr).await;
    check_snapshot_state(&mut connection).await;
    for node in bigger {
        node.shutdown().await;
    }

    refusals(&backup_dir, root.path());
}

/// A corrupt file, a missing file, a stale snapshot and a data directory in use are refused.
fn refusals(backup_dir: &Path, root: &Path) {
    let node1 = backup_dir.join("node-1");
    let target = root.join("refused");
    let restore = |into| backup::restore_node(backup_dir, 1, &target, into, wall_clock());

    let stale = restore(RestoreInto::LiveCluster {
        tombstone_grace: ringkv_core::Duration::from_millis(2),
    })
    .unwrap_err();
    assert!(stale.contains("half the tombstone grace"), "{stale}");
    let fresh = ringkv_core::KeyspaceConfig::default().tombstone_grace;
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("leftover"), b"old data").unwrap();
    let occupied = restore(RestoreInto::LiveCluster { tombstone_grace: fresh }).unwrap_err();
    assert!(occupied.contains("is not empty"), "{occupied}");
    std::fs::remove_dir_all(&target).unwrap();

    let manifest = backup::verify_backup(&node1).unwrap();
    let table = manifest.files.iter().find(|file| file.name.ends_with(".sst")).unwrap();
    let path = node1.join(&table.name);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let corrupt = restore(RestoreInto::NewCluster).unwrap_err();
    assert!(corrupt.contains(&table.name) && corrupt.contains("corrupt"), "{corrupt}");
    assert!(!target.exists(), "a refused restore wrote nothing");

    std::fs::remove_file(&path).unwrap();
    let partial = restore(RestoreInto::NewCluster).unwrap_err();
    assert!(partial.contains(&table.name) && partial.contains("partial"), "{partial}");

    std::fs::remove_file(node1.join(backup::BACKUP_FILE)).unwrap();
    let cut_short = restore(RestoreInto::NewCluster).unwrap_err();
    assert!(cut_short.contains("BACKUP.ron"), "{cut_short}");
}
