//! Process crashes on real files: the engine is dropped at arbitrary points (no machine crash,
//! so the OS keeps what was written) and reopened; every synced write is back and the writes
//! that are back are a prefix of the write order.

use std::collections::BTreeMap;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ringkv_storage::{CompactionOptions, Engine, Options, StdFs, TableOptions};

fn options() -> Options {
    Options {
        memtable_bytes_max: 16 << 10,
        wal_buffer_bytes_max: 2 << 10,
        table: TableOptions { block_size_bytes: 512, ..TableOptions::default() },
        compaction: CompactionOptions {
            level1_bytes_max: 64 << 10,
            table_file_bytes_max: 16 << 10,
            ..CompactionOptions::default()
        },
        ..Options::default()
    }
}

#[test]
fn dropped_engines_on_real_files_recover_a_prefix_with_every_synced_write() {
    let dir = std::env::temp_dir().join(format!("ringkv-stdfs-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    // Every write in order: (sequence number, key, value).
    let mut history: Vec<(u64, Vec<u8>, Bytes)> = Vec::new();
    let mut durable_before_drop = 0;
    for life in 0..8 {
        let fs = StdFs::new(&dir).unwrap();
        let lock = fs.lock().unwrap();
        let mut e = Engine::open(fs, options()).unwrap();
        let ks = e.create_keyspace("data").unwrap();
        let recovered = e.last_seq();
        assert!(recovered >= durable_before_drop, "life {life}: lost synced writes");
        // The survivors are exactly the writes up to `recovered`, in order.
        history.retain(|(s, _, _)| *s <= recovered);
        assert_eq!(history.last().map_or(0, |(s, _, _)| *s), recovered, "life {life}");
        let mut model = BTreeMap::new();
        for (_, k, v) in &history {
            model.insert(k.clone(), v.clone());
        }
        let got: Vec<(Vec<u8>, Bytes)> = e
            .scan::<&[u8]>(ks, .., None)
            .unwrap()
            .map(|kv| kv.map(|kv| (kv.key.to_vec(), kv.value)).unwrap())
            .collect();
        let want: Vec<(Vec<u8>, Bytes)> = model.into_iter().collect();
        assert_eq!(got, want, "life {life}");
        for _ in 0..rng.random_range(50..600) {
            let k = format!("key{:03}", rng.random_range(0..200u32)).into_bytes();
            let v = Bytes::from(vec![b'a' + (life as u8); rng.random_range(1..200)]);
            let seq = e.put(ks, &k, &v).unwrap();
            history.push((seq, k, v));
            if rng.random_range(0..10) == 0 {
                assert_eq!(e.sync().unwrap(), seq);
            }
            e.run_pending().unwrap();
        }
        // The process dies here: the memory buffer is lost, the OS keeps the rest.
        durable_before_drop = e.durable_seq();
        drop(e);
        drop(lock);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
