//! Real nodes on loopback, driven through a real Redis client library.

// Test helpers fail the test loudly on any setup error; that is what unwrap does here.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use redis::AsyncCommands;
use ringkv_net::admin::{self, AdminRequest};
use ringkv_tests::{cluster_configs, connect, start_node};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Starts every node of `configs` and returns them with a connection to the first, once the
/// cluster accepts writes at ALL.
async fn running(
    configs: &[ringkv_net::config::NodeFileConfig],
) -> (Vec<ringkv_net::RunningNode>, redis::aio::MultiplexedConnection) {
    let mut nodes = Vec::new();
    for config in configs {
        nodes.push(start_node(config).await);
    }
    let mut connection = connect(nodes[0].client_addr).await;
    wait_until_writable(&mut connection).await;
    (nodes, connection)
}

async fn shutdown(nodes: Vec<ringkv_net::RunningNode>) {
    for node in nodes {
        node.shutdown().await;
    }
}

/// Waits until a write at ALL through `connection` succeeds: every peer connection is up and
/// every node's epoch is durable.
async fn wait_until_writable(connection: &mut redis::aio::MultiplexedConnection) {
    for _ in 0..100 {
        let result: redis::RedisResult<String> = redis::cmd("RK.PUT")
            .arg("__ready")
            .arg("1")
            .arg("-")
            .arg("ALL")
            .query_async(connection)
            .await;
        if result.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cluster never became writable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_get_del_mget_expire_and_ttl_work_through_a_redis_client() {
    let data = tempfile::tempdir().unwrap();
    let configs = cluster_configs(3, data.path());
    let mut nodes = Vec::new();
    for config in &configs {
        nodes.push(start_node(config).await);
    }
    let mut first = connect(nodes[0].client_addr).await;
    let mut second = connect(nodes[1].client_addr).await;
    wait_until_writable(&mut first).await;

    let () = first.set("greeting", "hello").await.unwrap();
    let value: Option<String> = second.get("greeting").await.unwrap();
    assert_eq!(value.as_deref(), Some("hello"));

    let () = first.mset(&[("a", "1"), ("b", "2")]).await.unwrap();
    let values: Vec<Option<String>> = second.mget(&["a", "missing", "b"]).await.unwrap();
    assert_eq!(values, vec![Some("1".into()), None, Some("2".into())]);

    let exists: i64 = second.exists(&["a", "b", "missing"]).await.unwrap();
    assert_eq!(exists, 2);
    let deleted: i64 = second.del(&["a", "missing"]).await.unwrap();
    assert_eq!(deleted, 1);
    let gone: Option<String> = first.get("a").await.unwrap();
    assert_eq!(gone, None);

    let ttl: i64 = first.ttl("greeting").await.unwrap();
    assert_eq!(ttl, -1);
    let set: bool = first.expire("greeting", 100).await.unwrap();
    assert!(set);
    let ttl: i64 = second.ttl("greeting").await.unwrap();
    assert!((99..=100).contains(&ttl), "ttl {ttl}");
    let () = redis::cmd("SET")
        .arg("short")
        .arg("v")
        .arg("PX")
        .arg(300)
        .query_async(&mut first)
        .await
        .unwrap();
    let pttl: i64 = second.pttl("short").await.unwrap();
    assert!(pttl > 0 && pttl <= 300, "pttl {pttl}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let expired: Option<String> = second.get("short").await.unwrap();
    assert_eq!(expired, None);
    let missing_ttl: i64 = first.ttl("short").await.unwrap();
    assert_eq!(missing_ttl, -2);

    let nx: Option<String> = redis::cmd("SET")
        .arg("greeting")
        .arg("other")
        .arg("NX")
        .query_async(&mut first)
        .await
        .unwrap();
    assert_eq!(nx, None, "NX must not overwrite");
    let unknown: redis::RedisResult<()> = redis::cmd("FLUBBER").query_async(&mut first).await;
    assert!(unknown.unwrap_err().to_string().contains("unknown command"));
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn siblings_and_contexts_are_reachable_through_extension_commands() {
    let data = tempfile::tempdir().unwrap();
    let configs = cluster_configs(3, data.path());
    let (nodes, mut connection) = running(&configs).await;
    let _: String = redis::cmd("RK.PUT")
        .arg("cart")
        .arg("apple")
        .arg("-")
        .query_async(&mut connection)
        .await
        .unwrap();
    let _: String = redis::cmd("RK.PUT")
        .arg("cart")
        .arg("pear")
        .arg("-")
        .query_async(&mut connection)
        .await
        .unwrap();
    let (context, values): (String, Vec<String>) =
        redis::cmd("RK.GETALL").arg("cart").query_async(&mut connection).await.unwrap();
    let mut sorted = values.clone();
    sorted.sort();
    assert_eq!(sorted, vec!["apple", "pear"]);
    let _: String = redis::cmd("RK.PUT")
        .arg("cart")
        .arg("apple+pear")
        .arg(&context)
        .arg("ALL")
        .query_async(&mut connection)
        .await
        .unwrap();
    let (_, values): (String, Vec<String>) =
        redis::cmd("RK.GETALL").arg("cart").arg("ALL").query_async(&mut connection).await.unwrap();
    assert_eq!(values, vec!["apple+pear"]);
    let bad: redis::RedisResult<String> =
        redis::cmd("RK.PUT").arg("cart").arg("x").arg("zz").query_async(&mut connection).await;
    assert!(bad.unwrap_err().to_string().contains("invalid causal context"));
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_other_string_commands_clients_use_behave_as_in_redis() {
    let data = tempfile::tempdir().unwrap();
    let configs = cluster_configs(3, data.path());
    let (nodes, mut first) = running(&configs).await;
    let mut second = connect(nodes[1].client_addr).await;

    // HELLO 2 answers a flat list of field names and values, with this connection's id in it.
    let hello: Vec<redis::Value> =
        redis::cmd("HELLO").arg(2).query_async(&mut first).await.unwrap();
    let field = |name: &str| {
        let at = hello.iter().position(|value| *value == redis::Value::BulkString(name.into()));
        hello[at.unwrap_or_else(|| panic!("no {name} in {hello:?}")) + 1].clone()
    };
    let id: i64 = redis::cmd("CLIENT").arg("ID").query_async(&mut first).await.unwrap();
    assert_eq!(field("id"), redis::Value::Int(id));
    assert_eq!(field("mode"), redis::Value::BulkString(b"standalone".to_vec()));

    let set: bool = first.set_nx("nx", "one").await.unwrap();
    let again: bool = first.set_nx("nx", "two").await.unwrap();
    assert!(set && !again, "SETNX set {set}, then {again}");
    let value: Option<String> = second.get("nx").await.unwrap();
    assert_eq!(value.as_deref(), Some("one"));

    let () = first.set_ex("ex", "v", 100).await.unwrap();
    let ttl: i64 = second.ttl("ex").await.unwrap();
    assert!((99..=100).contains(&ttl), "SETEX left a TTL of {ttl}");
    let () = first.pset_ex("pex", "v", 100_000).await.unwrap();
    let pttl: i64 = second.pttl("pex").await.unwrap();
    assert!((90_000..=100_000).contains(&pttl), "PSETEX left a PTTL of {pttl}");
    let zero: redis::RedisResult<()> = first.set_ex("ex", "v", 0).await;
    assert!(zero.unwrap_err().to_string().contains("invalid expire time in 'setex'"));

    let old: Option<String> = first.getset("nx", "three").await.unwrap();
    assert_eq!(old.as_deref(), Some("one"));
    let old: Option<String> =
        redis::cmd("SET").arg("nx").arg("four").arg("GET").query_async(&mut first).await.unwrap();
    assert_eq!(old.as_deref(), Some("three"));
    let kept: Option<String> = redis::cmd("SET")
        .arg("nx")
        .arg("five")
        .arg("NX")
        .arg("GET")
        .query_async(&mut first)
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some("four"), "SET NX GET on an existing key returns it");
    let length: i64 = second.strlen("nx").await.unwrap();
    assert_eq!(length, 4, "the NX write must not have happened");

    let kind: String = redis::cmd("TYPE").arg("nx").query_async(&mut second).await.unwrap();
    let none: String = redis::cmd("TYPE").arg("absent").query_async(&mut second).await.unwrap();
    assert_eq!((kind.as_str(), none.as_str()), ("string", "none"));
    let touched: i64 = redis::cmd("TOUCH")
        .arg("nx")
        .arg("ex")
        .arg("absent")
        .query_async(&mut second)
        .await
        .unwrap();
    assert_eq!(touched, 2);

    let taken: Option<String> = first.get_del("nx").await.unwrap();
    assert_eq!(taken.as_deref(), Some("four"));
    let gone: Option<String> = second.get("nx").await.unwrap();
    assert_eq!(gone, None);
    let nothing: Option<String> = first.get_del("nx").await.unwrap();
    assert_eq!(nothing, None);

    // An expiry that would overflow the clock is refused, as Redis refuses it.
    let huge: redis::RedisResult<bool> = first.expire("ex", i64::MAX / 1_000).await;
    assert!(huge.unwrap_err().to_string().contains("invalid expire time in 'expire'"));
    let huge: redis::RedisResult<()> = redis::cmd("SET")
        .arg("big-ttl")
        .arg("v")
        .arg("PX")
        .arg(i64::MAX)
        .query_async(&mut first)
        .await;
    assert!(huge.unwrap_err().to_string().contains("invalid expire time in 'set'"));
    let ttl: i64 = second.ttl("ex").await.unwrap();
    assert!((99..=100).contains(&ttl), "a refused EXPIRE changed the TTL to {ttl}");
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_resp_oversized_values_and_garbage_peer_frames_crash_nothing() {
    let data = tempfile::tempdir().unwrap();
    let mut configs = cluster_configs(3, data.path());
    for config in &mut configs {
        config.value_bytes_max = 1024;
    }
    let (nodes, mut connection) = running(&configs).await;
    let () = connection.set("kept", "safe").await.unwrap();

    let oversized: redis::RedisResult<()> = connection.set("big", vec![b'x'; 1025]).await;
    let error = oversized.unwrap_err().to_string();
    assert!(error.contains("value too large") || error.contains("bulk length"), "{error}");
    // Far over the limit (more than the socket buffers hold): the client is still sending when
    // the server refuses it, and must read the refusal rather than a connection reset.
    let mut huge_sender = connect(nodes[0].client_addr).await;
    let huge: redis::RedisResult<()> = huge_sender.set("huge", vec![b'x'; 8 << 20]).await;
    let error = huge.unwrap_err().to_string();
    assert!(error.contains("invalid bulk length 8388608"), "{error}");

    let mut raw = tokio::net::TcpStream::connect(nodes[0].client_addr).await.unwrap();
    raw.write_all(b"*1\r\n$abc\r\n").await.unwrap();
    let mut reply = vec![0u8; 256];
    let read = raw.read(&mut reply).await.unwrap();
    assert!(
        String::from_utf8_lossy(&reply[..read]).starts_with("-ERR Protocol error"),
        "{:?}",
        String::from_utf8_lossy(&reply[..read])
    );

    let mut peer = tokio::net::TcpStream::connect(nodes[1].peer_addr).await.unwrap();
    peer.write_all(&[0xff; 64]).await.unwrap();
    let mut peer2 = tokio::net::TcpStream::connect(nodes[1].peer_addr).await.unwrap();
    peer2.write_all(&20u32.to_le_bytes()).await.unwrap();
    peer2.write_all(&[1u8; 20]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(nodes[1].metrics.peer_frames_refused.get() >= 1, "garbage frames were not counted");

    let value: Option<String> = connection.get("kept").await.unwrap();
    assert_eq!(value.as_deref(), Some("safe"), "a node lost data after bad input");
    let mut other = connect(nodes[1].client_addr).await;
    let value: Option<String> = other.get("kept").await.unwrap();
    assert_eq!(value.as_deref(), Some("safe"));
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_writes_survive_one_node_killed_and_no_acknowledged_write_is_lost() {
    let data = tempfile::tempdir().unwrap();
    let configs = cluster_configs(3, data.path());
    let mut nodes = Vec::new();
    for config in &configs {
        nodes.push(start_node(config).await);
    }
    let mut writer = connect(nodes[0].client_addr).await;
    wait_until_writable(&mut writer).await;
    let mut acknowledged = Vec::new();
    for index in 0..200 {
        if index == 50 {
            let victim = nodes.remove(2);
            victim.kill();
        }
        let key = format!("key{index}");
        let result: redis::RedisResult<()> = writer.set(&key, format!("value{index}")).await;
        if result.is_ok() {
            acknowledged.push(index);
        }
    }
    assert!(
        acknowledged.len() >= 190,
        "only {} of 200 QUORUM writes succeeded with one node down",
        acknowledged.len()
    );
    // The killed node comes back on its disk (what it synced) and is repaired by quorum reads.
    nodes.push(start_node(&configs[2]).await);
    let mut reader = connect(nodes[2].client_addr).await;
    for index in &acknowledged {
        let mut found = None;
        for _ in 0..20 {
            match reader.get::<_, Option<String>>(format!("key{index}")).await {
                Ok(value) => {
                    found = value;
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        if found.is_none() {
            for (position, node) in nodes.iter().enumerate() {
                let mut probe = connect(node.client_addr).await;
                let local: redis::RedisResult<(String, Vec<String>)> = redis::cmd("RK.GETALL")
                    .arg(format!("key{index}"))
                    .arg("ONE")
                    .query_async(&mut probe)
                    .await;
                eprintln!(
                    "DEBUG node position {position} id {} local copy of key{index}: {local:?}",
                    node.id
                );
            }
        }
        assert_eq!(found, Some(format!("value{index}")), "acknowledged write {index} is missing");
    }
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_cluster_stopped_and_restarted_reads_everything_back() {
    let data = tempfile::tempdir().unwrap();
    let configs = cluster_configs(3, data.path());
    let mut nodes = Vec::new();
    for config in &configs {
        nodes.push(start_node(config).await);
    }
    let mut connection = connect(nodes[1].client_addr).await;
    wait_until_writable(&mut connection).await;
    for index in 0..300 {
        let () = connection.set(format!("key{index}"), format!("value{index}")).await.unwrap();
    }
    drop(connection);
    for node in nodes.drain(..) {
        node.shutdown().await;
    }
    for config in &configs {
        nodes.push(start_node(config).await);
    }
    let mut connection = connect(nodes[2].client_addr).await;
    wait_until_writable(&mut connection).await;
    for index in 0..300 {
        let value: Option<String> = connection.get(format!("key{index}")).await.unwrap();
        assert_eq!(value, Some(format!("value{index}")), "key{index} lost across a full restart");
    }
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_keeps_the_order_of_commands_on_the_same_key() {
    let data = tempfile::tempdir().unwrap();
    let configs = cluster_configs(3, data.path());
    let (nodes, mut connection) = running(&configs).await;
    let mut pipe = redis::pipe();
    for round in 0..20 {
        pipe.set("counter", round)
            .ignore()
            .get("counter")
            .set(format!("other{round}"), round)
            .ignore();
    }
    pipe.del("counter").get("counter");
    let replies: Vec<Option<i64>> = pipe.query_async(&mut connection).await.unwrap();
    let expected: Vec<Option<i64>> = (0..20).map(Some).chain([Some(1), None]).collect();
    assert_eq!(replies, expected, "a read in a pipeline saw a write out of order");
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_cannot_open_a_data_directory_in_use() {
    let data = tempfile::tempdir().unwrap();
    let configs = cluster_configs(3, data.path());
    let first = start_node(&configs[0]).await;
    let mut twin = configs[0].clone();
    twin.client_addr = ringkv_tests::free_address();
    twin.peer_addr = ringkv_tests::free_address();
    let refused = ringkv_net::start_on_disk(&twin).await;
    let error = refused.expect_err("two nodes on one directory").to_string();
    assert!(error.contains("locked"), "{error}");
    first.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_with_match_lists_every_matching_key_through_a_redis_client() {
    let data = tempfile::tempdir().unwrap();
    let configs = cluster_configs(3, data.path());
    let (nodes, mut connection) = running(&configs).await;
    for index in 0..120 {
        let () = connection.set(format!("user:{index}"), index).await.unwrap();
        let () = connection.set(format!("order:{index}"), index).await.unwrap();
    }
    let mut found: Vec<String> = Vec::new();
    let mut cursor = 0u64;
    for _ in 0..10_000 {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("user:*")
            .arg("COUNT")
            .arg(50)
            .query_async(&mut connection)
            .await
            .unwrap();
        found.extend(keys);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    found.sort();
    let mut expected: Vec<String> = (0..120).map(|index| format!("user:{index}")).collect();
    expected.sort();
    assert_eq!(found, expected);
    let bad: redis::RedisResult<()> =
        redis::cmd("SCAN").arg("nonsense").query_async(&mut connection).await;
    assert!(bad.unwrap_err().to_string().contains("invalid cursor"));
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_in_prometheus_text_with_request_storage_and_gossip_figures() {
    let data = tempfile::tempdir().unwrap();
    let mut configs = cluster_configs(3, data.path());
    configs[0].metrics_addr = Some(ringkv_tests::free_address());
    let (nodes, mut connection) = running(&configs).await;
    for index in 0..20 {
        let () = connection.set(format!("k{index}"), index).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut http = tokio::net::TcpStream::connect(nodes[0].metrics_addr.unwrap()).await.unwrap();
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut body = String::new();
    http.read_to_string(&mut body).await.unwrap();
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    for metric in [
        "ringkv_request_duration_seconds_bucket{command=\"SET\",consistency=\"QUORUM\",outcome=\"ok\"",
        "ringkv_node_gossip_rounds_total",
        "ringkv_node_hints_stored_total",
        "ringkv_node_storage_compactions_total",
        "ringkv_node_storage_flushes_total",
        "ringkv_peers_up 2",
        // The test's own connection is open.
        "ringkv_client_connections_open 1",
    ] {
        assert!(body.contains(metric), "missing {metric} in\n{body}");
    }
    let mut second = connect(nodes[0].client_addr).await;
    let info: String = redis::cmd("INFO").query_async(&mut second).await.unwrap();
    assert!(info.contains("\r\nconnected_clients:2\r\n"), "{info}");
    assert!(info.contains("\r\nredis_mode:standalone\r\n"), "{info}");
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_durability_acknowledges_before_sync_and_a_clean_restart_keeps_everything() {
    let data = tempfile::tempdir().unwrap();
    let mut configs = cluster_configs(3, data.path());
    for config in &mut configs {
        config.durability = ringkv_net::config::Durability::Interval(50);
    }
    let (mut nodes, mut connection) = running(&configs).await;
    for index in 0..200 {
        let () = connection.set(format!("k{index}"), index).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(nodes[0].metrics.storage_syncs.get() >= 1, "the interval never synced");
    for node in nodes.drain(..) {
        node.shutdown().await;
    }
    for config in &configs {
        nodes.push(start_node(config).await);
    }
    let mut connection = connect(nodes[1].client_addr).await;
    wait_until_writable(&mut connection).await;
    for index in 0..200 {
        let value: Option<i64> = connection.get(format!("k{index}")).await.unwrap();
        assert_eq!(value, Some(index));
    }
    shutdown(nodes).await;
}

/// Writes 1,500 keys of 200 bytes through `connection` and checks that every node flushed at
/// least three memtables (of 32 KiB); returns the value written.
async fn fill_memtables(
    connection: &mut redis::aio::MultiplexedConnection,
    nodes: Vec<(ringkv_core::NodeId, ringkv_net::driver::NodeHandle)>,
) -> String {
    let value = "v".repeat(200);
    for index in 0..1500 {
        let () = connection.set(format!("key-{index}"), &value).await.unwrap();
    }
    for (id, handle) in nodes {
        let status = handle.status().await.unwrap();
        let flushes =
            status.storage.iter().find(|(name, _)| *name == "storage_flushes_total").unwrap().1;
        assert!(flushes >= 3, "node {id} flushed {flushes} memtables");
    }
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_that_fill_many_memtables_are_flushed_and_all_read_back() {
    // Memtables of 32 KiB, so a few thousand writes freeze and flush several: finishing a
    // flush syncs the manifest under `block_in_place` on the node's task.
    let data = tempfile::tempdir().unwrap();
    let mut configs = cluster_configs(3, data.path());
    for config in &mut configs {
        config.memtable_bytes_max = 32 << 10;
    }
    let (nodes, mut connection) = running(&configs).await;
    let handles = nodes.iter().map(|node| (node.id, node.handle.clone())).collect();
    let value = fill_memtables(&mut connection, handles).await;
    let mut reader = connect(nodes[2].client_addr).await;
    for index in 0..1500 {
        let read: Option<String> = reader.get(format!("key-{index}")).await.unwrap();
        assert_eq!(read.as_deref(), Some(value.as_str()), "key-{index}");
    }
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_on_threads_of_their_own_flush_restart_and_read_everything_back() {
    // As `ringkv dev` and `ringkv node` run them: each node on its own runtime, two on a
    // current-thread runtime (storage work finished on the node's only thread) and one on a
    // runtime of two threads. Small memtables, so the writes freeze and flush several.
    let data = tempfile::tempdir().unwrap();
    let mut configs = cluster_configs(3, data.path());
    for (config, worker_threads) in configs.iter_mut().zip([1, 1, 2]) {
        config.memtable_bytes_max = 32 << 10;
        config.worker_threads = worker_threads;
    }
    let start_all = |configs: Vec<ringkv_net::config::NodeFileConfig>| async move {
        tokio::task::spawn_blocking(move || {
            configs
                .into_iter()
                .map(|config| ringkv_net::NodeThread::start(config).unwrap())
                .collect::<Vec<_>>()
        })
        .await
        .unwrap()
    };
    let stop_all = |nodes: Vec<ringkv_net::NodeThread>| async move {
        tokio::task::spawn_blocking(move || nodes.into_iter().for_each(|node| node.shutdown()))
            .await
            .unwrap()
    };
    let nodes = start_all(configs.clone()).await;
    let mut connection = connect(nodes[0].client_addr).await;
    wait_until_writable(&mut connection).await;
    let handles = nodes.iter().map(|node| (node.id, node.handle.clone())).collect();
    let value = fill_memtables(&mut connection, handles).await;
    stop_all(nodes).await;
    let nodes = start_all(configs).await;
    let mut reader = connect(nodes[2].client_addr).await;
    wait_until_writable(&mut reader).await;
    for index in 0..1500 {
        let read: Option<String> = reader.get(format!("key-{index}")).await.unwrap();
        assert_eq!(read.as_deref(), Some(value.as_str()), "key-{index}");
    }
    stop_all(nodes).await;
}

/// Waits until `node`'s ring holds exactly `expected` (sorted ids).
async fn wait_for_ring(node: &ringkv_net::RunningNode, expected: &[u32]) {
    for _ in 0..300 {
        let status = node.handle.status().await.expect("node runs");
        let members: Vec<u32> = status.members.iter().map(|member| member.0).collect();
        if members == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = node.handle.status().await.expect("node runs");
    panic!("node {} never saw the ring {expected:?}: {:?}", node.id.0, status.membership);
}

/// Reads every `key{i}` at ALL through `connection` and checks its value.
async fn read_all_at_all(connection: &mut redis::aio::MultiplexedConnection, keys: usize) {
    let () =
        redis::cmd("RK.CONSISTENCY").arg("READ").arg("ALL").query_async(connection).await.unwrap();
    for index in 0..keys {
        let value: Option<String> = connection.get(format!("key{index}")).await.unwrap();
        assert_eq!(value, Some(format!("value{index}")), "key{index}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_and_another_decommissions_over_real_sockets_and_every_key_stays_readable() {
    let data = tempfile::tempdir().unwrap();
    let mut configs = cluster_configs(4, data.path());
    // Nodes 1-3 form the cluster; node 4 joins it, naming them.
    for config in &mut configs {
        config.members.truncate(3);
    }
    configs[3].join = true;
    let (mut nodes, mut first) = running(&configs[..3]).await;
    for index in 0..300 {
        let () = first.set(format!("key{index}"), format!("value{index}")).await.unwrap();
    }

    nodes.push(start_node(&configs[3]).await);
    for node in &nodes {
        wait_for_ring(node, &[1, 2, 3, 4]).await;
    }
    // Node 4 became a replica of about 3/4 of the keys; they were streamed to it before it
    // owned them.
    let mut streamed = 0;
    for node in &nodes[..3] {
        streamed += node.handle.status().await.unwrap().counters.stream_keys_sent;
    }
    assert!(streamed >= 150, "only {streamed} keys streamed to the joining node");
    let mut joined = connect(nodes[3].client_addr).await;
    read_all_at_all(&mut joined, 300).await;
    let status = admin::run(nodes[3].client_addr, None, AdminRequest::Status).await.unwrap();
    assert!(status.starts_with("node 4 (epoch "), "{status}");
    assert!(status.contains("ready, not rebuilding\nring members: 1, 2, 3, 4"), "{status}");
    let sent_before = nodes[0].handle.status().await.unwrap().counters.stream_keys_sent;

    let leaving = admin::run(nodes[0].client_addr, None, AdminRequest::Decommission).await;
    assert!(leaving.as_ref().is_ok_and(|text| text.contains("is leaving")), "{leaving:?}");
    for node in &nodes[1..] {
        wait_for_ring(node, &[2, 3, 4]).await;
    }
    let sent = nodes[0].handle.status().await.unwrap().counters.stream_keys_sent - sent_before;
    assert!(sent >= 150, "the leaving node streamed only {sent} keys");
    // N=3 on the three nodes left: ALL reads need every one of them, so node 4 must hold what
    // node 1 streamed to it.
    read_all_at_all(&mut joined, 300).await;
    let mut second = connect(nodes[1].client_addr).await;
    read_all_at_all(&mut second, 300).await;
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reads_status_and_ring_as_text_and_asks_for_the_password_a_node_requires() {
    let data = tempfile::tempdir().unwrap();
    let mut configs = cluster_configs(3, data.path());
    for config in &mut configs {
        config.password = Some("admin-test-password".into());
    }
    let mut nodes = Vec::new();
    for config in &configs {
        nodes.push(start_node(config).await);
    }
    let address = nodes[1].client_addr;
    let refused = admin::run(address, None, AdminRequest::Status).await.unwrap_err();
    assert!(refused.contains("NOAUTH") && refused.contains("--password"), "{refused}");
    let wrong = admin::run(address, Some("nope".into()), AdminRequest::Status).await.unwrap_err();
    assert!(wrong.contains("--password"), "{wrong}");

    let password = Some("admin-test-password".to_string());
    let status = admin::run(address, password.clone(), AdminRequest::Status).await.unwrap();
    assert!(status.starts_with("node 2 (epoch "), "{status}");
    assert!(status.contains("\nring members: 1, 2, 3\n"), "{status}");
    let ring = admin::run(address, password, AdminRequest::Ring).await.unwrap();
    let lines: Vec<&str> = ring.lines().collect();
    // A header, a row per node, a total for the one datacenter.
    assert_eq!(lines.len(), 5, "{ring}");
    assert_eq!(lines[0], "node  datacenter  rack        primary share  replica share");
    let total: f64 = lines[1..4]
        .iter()
        .map(|line| line.split_whitespace().nth(3).unwrap().trim_end_matches('%').parse::<f64>())
        .map(Result::unwrap)
        .sum();
    assert!((99.5..=100.5).contains(&total), "shares add up to {total}%: {ring}");
    assert!(lines[4].starts_with("datacenter dc1: 3 nodes"), "{ring}");
    assert!(status.contains("\nlocation: dc1/rack1"), "{status}");

    let nobody = ringkv_tests::free_address();
    let error = admin::run(nobody, None, AdminRequest::Status).await.unwrap_err();
    assert!(error.contains("cannot connect"), "{error}");
    shutdown(nodes).await;
}
