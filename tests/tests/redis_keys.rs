//! Redis commands over several keys or the whole keyspace (RENAME, RENAMENX, COPY, MSETNX,
//! RANDOMKEY, DBSIZE, FLUSHALL/FLUSHDB, WAIT) and CLIENT INFO, on a real 3-node cluster.

// Test helpers fail the test loudly on any setup error; that is what unwrap does here.
#![allow(clippy::unwrap_used)]

use redis::AsyncCommands;
use ringkv_tests::{call, cluster_configs, connect, error_line, start_writable_cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_copy_and_msetnx_move_values_with_their_expiry_as_in_redis() {
    let data = tempfile::tempdir().unwrap();
    let nodes = start_writable_cluster(&cluster_configs(3, data.path())).await;
    let mut first = connect(nodes[0].client_addr).await;
    let mut second = connect(nodes[1].client_addr).await;

    // RENAME keeps the value and its time to live, and removes the source.
    let _: () = first.set_ex("src", "v1", 100).await.unwrap();
    assert_eq!(call::<String>(&mut first, &["RENAME", "src", "dst"]).await.unwrap(), "OK");
    assert_eq!(second.get::<_, Option<String>>("src").await.unwrap(), None);
    assert_eq!(second.get::<_, Option<String>>("dst").await.unwrap(), Some("v1".into()));
    let ttl: i64 = second.ttl("dst").await.unwrap();
    assert!((98..=100).contains(&ttl), "TTL after RENAME: {ttl}");
    assert_eq!(
        error_line(call::<String>(&mut first, &["RENAME", "missing", "dst"]).await),
        "ERR no such key"
    );
    assert_eq!(call::<String>(&mut first, &["RENAME", "dst", "dst"]).await.unwrap(), "OK");
    // RENAMENX: only onto an absent key.
    let _: () = first.set("other", "v2").await.unwrap();
    assert_eq!(call::<i64>(&mut first, &["RENAMENX", "other", "dst"]).await.unwrap(), 0);
    assert_eq!(second.get::<_, Option<String>>("other").await.unwrap(), Some("v2".into()));
    assert_eq!(call::<i64>(&mut first, &["RENAMENX", "other", "fresh"]).await.unwrap(), 1);
    assert_eq!(second.get::<_, Option<String>>("fresh").await.unwrap(), Some("v2".into()));
    assert_eq!(second.get::<_, Option<String>>("other").await.unwrap(), None);

    // COPY: 0 onto a present key without REPLACE, 1 with it; the source stays.
    assert_eq!(call::<i64>(&mut first, &["COPY", "dst", "fresh"]).await.unwrap(), 0);
    assert_eq!(call::<i64>(&mut first, &["COPY", "dst", "fresh", "REPLACE"]).await.unwrap(), 1);
    assert_eq!(second.get::<_, Option<String>>("fresh").await.unwrap(), Some("v1".into()));
    assert_eq!(second.get::<_, Option<String>>("dst").await.unwrap(), Some("v1".into()));
    assert_eq!(call::<i64>(&mut first, &["COPY", "missing", "x"]).await.unwrap(), 0);
    assert_eq!(call::<i64>(&mut first, &["COPY", "dst", "copy", "DB", "0"]).await.unwrap(), 1);
    assert_eq!(
        error_line(call::<i64>(&mut first, &["COPY", "dst", "x", "DB", "3"]).await),
        "ERR DB index is out of range"
    );
    assert_eq!(
        error_line(call::<i64>(&mut first, &["COPY", "dst", "dst"]).await),
        "ERR source and destination objects are the same"
    );

    // MSETNX: all or none.
    assert_eq!(call::<i64>(&mut first, &["MSETNX", "m1", "a", "m2", "b"]).await.unwrap(), 1);
    assert_eq!(call::<i64>(&mut first, &["MSETNX", "m3", "c", "m1", "z"]).await.unwrap(), 0);
    assert_eq!(second.get::<_, Option<String>>("m3").await.unwrap(), None, "rolled back");
    assert_eq!(second.get::<_, Option<String>>("m1").await.unwrap(), Some("a".into()));
    // A key named twice takes its last value.
    assert_eq!(call::<i64>(&mut first, &["MSETNX", "m4", "x", "m4", "y"]).await.unwrap(), 1);
    assert_eq!(second.get::<_, Option<String>>("m4").await.unwrap(), Some("y".into()));
    assert_eq!(
        error_line(call::<i64>(&mut first, &["MSETNX", "m5"]).await),
        "ERR wrong number of arguments for 'msetnx' command"
    );
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushall_dbsize_randomkey_wait_and_client_info() {
    let data = tempfile::tempdir().unwrap();
    let mut configs = cluster_configs(3, data.path());
    // Node 3 keeps the default: FLUSHALL is refused through it.
    for config in &mut configs[..2] {
        config.allow_flush = true;
    }
    let nodes = start_writable_cluster(&configs).await;
    let mut first = connect(nodes[0].client_addr).await;
    let mut third = connect(nodes[2].client_addr).await;

    // As a test harness does against redis-server: start from an empty cluster.
    assert_eq!(call::<String>(&mut first, &["FLUSHALL"]).await.unwrap(), "OK");
    assert_eq!(call::<Option<String>>(&mut first, &["RANDOMKEY"]).await.unwrap(), None);
    assert_eq!(call::<i64>(&mut first, &["DBSIZE"]).await.unwrap(), 0);
    let mut pipe = redis::pipe();
    for index in 0..3_000 {
        pipe.set(format!("key:{index}"), index).ignore();
    }
    let _: () = pipe.query_async(&mut first).await.unwrap();
    let estimate = call::<i64>(&mut third, &["DBSIZE"]).await.unwrap();
    assert!((2_400..=3_600).contains(&estimate), "DBSIZE estimate {estimate} for 3,000 keys");
    let random = call::<Option<String>>(&mut third, &["RANDOMKEY"]).await.unwrap().unwrap();
    assert!(random.starts_with("key:"), "RANDOMKEY {random}");

    // WAIT: the write's QUORUM guaranteed 2 replicas; asking for 3 makes all three hold it.
    let _: () = first.set("waited", "v").await.unwrap();
    assert_eq!(call::<i64>(&mut first, &["WAIT", "1", "0"]).await.unwrap(), 2);
    assert_eq!(call::<i64>(&mut first, &["WAIT", "3", "1000"]).await.unwrap(), 3);
    assert_eq!(
        error_line(call::<i64>(&mut first, &["WAIT", "1", "-1"]).await),
        "ERR timeout is negative"
    );

    // CLIENT INFO shows the name and library set on this connection.
    let _: () = call(&mut first, &["CLIENT", "SETNAME", "loader"]).await.unwrap();
    let _: () = call(&mut first, &["CLIENT", "SETINFO", "LIB-NAME", "redis-rs"]).await.unwrap();
    let info = call::<String>(&mut first, &["CLIENT", "INFO"]).await.unwrap();
    assert!(info.starts_with("id="), "{info}");
    for field in ["name=loader", "lib-name=redis-rs", "db=0", "addr=127.0.0.1:"] {
        assert!(info.contains(field), "{field} missing from {info}");
    }

    // FLUSHALL: refused where the configuration does not allow it, else the cluster is empty.
    let refused = error_line(call::<String>(&mut third, &["FLUSHALL"]).await);
    assert!(refused.starts_with("ERR flushall is disabled: set allow_flush: true"), "{refused}");
    assert_eq!(call::<i64>(&mut first, &["EXISTS", "key:7"]).await.unwrap(), 1);
    assert_eq!(call::<String>(&mut first, &["FLUSHALL"]).await.unwrap(), "OK");
    assert_eq!(call::<i64>(&mut third, &["DBSIZE"]).await.unwrap(), 0);
    assert_eq!(third.get::<_, Option<String>>("key:7").await.unwrap(), None);
    assert_eq!(call::<String>(&mut first, &["FLUSHDB", "SYNC"]).await.unwrap(), "OK");
    assert_eq!(
        error_line(call::<String>(&mut first, &["FLUSHDB", "LATER"]).await),
        "ERR syntax error"
    );
    // Writes after the flush are kept.
    let _: () = first.set("after", "v").await.unwrap();
    assert_eq!(third.get::<_, Option<String>>("after").await.unwrap(), Some("v".into()));
    for node in nodes {
        node.shutdown().await;
    }
}
