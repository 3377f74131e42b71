//! Checkpoints: opening one gives back exactly the database as it was when it was taken, with
//! tables, frozen and live memtables, and a sync job in flight at that moment; writes after it
//! are not in it; the live engine is not disturbed; real files are hard-linked.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use ringkv_storage::{
    CompactionOptions, CrashMode, Engine, KeyspaceId, Options, SimFs, StdFs, TableOptions, Vfs,
};

fn options() -> Options {
    Options {
        memtable_bytes_max: 8 << 10,
        wal_buffer_bytes_max: 1 << 10,
        table: TableOptions { block_size_bytes: 512, ..TableOptions::default() },
        compaction: CompactionOptions {
            level1_bytes_max: 32 << 10,
            table_file_bytes_max: 8 << 10,
            ..CompactionOptions::default()
        },
        ..Options::default()
    }
}

fn everything<V: Vfs>(engine: &Engine<V>, keyspace: KeyspaceId) -> BTreeMap<Vec<u8>, Vec<u8>> {
    engine
        .scan::<&[u8]>(keyspace, .., None)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            (entry.key.to_vec(), entry.value.to_vec())
        })
        .collect()
}

/// Writes, draining syncs and jobs first whenever the engine asks to wait for them.
fn put<V: Vfs>(engine: &mut Engine<V>, keyspace: KeyspaceId, key: &[u8], value: Option<&[u8]>) {
    loop {
        let written = match value {
            Some(value) => engine.put(keyspace, key, value),
            None => engine.delete(keyspace, key),
        };
        match written {
            Ok(_) => return,
            Err(ringkv_storage::Error::WriteStall { .. }) => {
                engine.sync().unwrap();
                engine.run_pending().unwrap();
            }
            Err(error) => panic!("write failed: {error}"),
        }
    }
}

fn key(i: u32) -> Vec<u8> {
    format!("key-{i:06}").into_bytes()
}

#[test]
fn a_checkpoint_opens_as_the_database_at_that_moment() {
    let fs = SimFs::new(1);
    let mut engine = Engine::open(fs.clone(), options()).unwrap();
    let ks = engine.create_keyspace("data").unwrap();
    let mut model = BTreeMap::new();
    // Enough to flush several tables and compact some, then an unsynced tail.
    for i in 0..3_000u32 {
        let value = format!("value-{i}-{}", "x".repeat((i % 40) as usize)).into_bytes();
        put(&mut engine, ks, &key(i % 1_200), Some(&value));
        model.insert(key(i % 1_200), value);
        if i % 7 == 0 {
            put(&mut engine, ks, &key(i % 300), None);
            model.remove(&key(i % 300));
        }
        if i % 500 == 499 {
            engine.sync().unwrap();
            engine.run_pending().unwrap();
        }
    }
    // Unsynced writes, a sync job handed out for them and not run yet, then more writes in the
    // buffer.
    for i in 0..30u32 {
        put(&mut engine, ks, &key(4_000 + i), Some(b"in the job"));
        model.insert(key(4_000 + i), b"in the job".to_vec());
    }
    let job = engine.poll_sync().expect("unsynced writes");
    for i in 0..50u32 {
        engine.put(ks, &key(5_000 + i), b"after the job").unwrap();
        model.insert(key(5_000 + i), b"after the job".to_vec());
    }
    assert!(engine.files_per_level().iter().sum::<usize>() > 1, "{:?}", engine.files_per_level());

    let dest = SimFs::new(2);
    let info = engine.checkpoint(&dest).unwrap();
    assert_eq!(info.last_seq, engine.last_seq());
    assert!(info.tables > 0 && info.wal_segments > 0, "{info:?}");
    assert_eq!(info.files.len(), dest.list().unwrap().len(), "{info:?}");

    // The live engine goes on: its job finishes, it changes and deletes what the checkpoint has.
    let result = job.run(engine.vfs());
    engine.synced(result).unwrap();
    for i in 0..100u32 {
        put(&mut engine, ks, &key(i), Some(b"changed after the checkpoint"));
        put(&mut engine, ks, &key(600 + i), None);
    }
    engine.sync().unwrap();
    engine.request_full_compaction();
    engine.run_pending().unwrap();

    // Only what the checkpoint synced counts: a power cut on its directory changes nothing.
    dest.crash(CrashMode::Torn);
    let restored = Engine::open(dest.clone(), options()).unwrap();
    let restored_ks = restored.keyspace("data").unwrap();
    assert_eq!(restored.last_seq(), info.last_seq);
    assert_eq!(everything(&restored, restored_ks), model);
    assert_ne!(everything(&engine, ks), model, "the live engine moved on");
}

#[test]
fn a_checkpoint_needs_an_empty_directory() {
    let mut engine = Engine::open(SimFs::new(3), options()).unwrap();
    let ks = engine.create_keyspace("data").unwrap();
    engine.put(ks, b"k", b"v").unwrap();
    let dest = SimFs::new(4);
    engine.checkpoint(&dest).unwrap();
    let again = engine.checkpoint(&dest).unwrap_err().to_string();
    assert!(again.contains("empty directory"), "{again}");
}

#[test]
fn checkpoint_tables_on_real_files_are_hard_links() {
    use std::os::unix::fs::MetadataExt;
    let root = tempdir("ringkv-checkpoint-links");
    let fs = StdFs::new(root.join("data")).unwrap();
    let mut engine = Engine::open(fs, options()).unwrap();
    let ks = engine.create_keyspace("data").unwrap();
    for i in 0..2_000u32 {
        put(&mut engine, ks, &key(i), Some(format!("value {i}").as_bytes()));
    }
    engine.sync().unwrap();
    engine.run_pending().unwrap();
    engine.put(ks, b"in the memtable", b"yes").unwrap();
    let dest = StdFs::new(root.join("snapshot")).unwrap();
    let info = engine.checkpoint(&dest).unwrap();
    assert!(info.tables > 0, "{info:?}");
    for (name, _) in info.files.iter().filter(|(name, _)| name.ends_with(".sst")) {
        let links = std::fs::metadata(root.join("snapshot").join(name)).unwrap().nlink();
        assert_eq!(links, 2, "{name} should be shared with the live directory");
    }
    drop(engine);
    let restored = Engine::open(dest, options()).unwrap();
    let restored_ks = restored.keyspace("data").unwrap();
    assert_eq!(
        restored.get(restored_ks, b"in the memtable").unwrap().as_deref(),
        Some(&b"yes"[..])
    );
    assert_eq!(everything(&restored, restored_ks).len(), 2_001);
    std::fs::remove_dir_all(&root).unwrap();
}

fn tempdir(prefix: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
