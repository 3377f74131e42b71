//! ringkv-tests: cross-crate tests live in `tests/tests/`; this library holds what they share:
//! starting a local cluster of real nodes on loopback ports and connecting a Redis client.
#![forbid(unsafe_code)]

pub mod netns;

use std::net::{SocketAddr, TcpListener};

use ringkv_net::config::{MemberAddress, NodeFileConfig};
use ringkv_net::RunningNode;

/// Lowest port [`free_address`] hands out; with [`PORTS_COUNT`], below Linux's ephemeral range
/// (32768 and up).
const PORTS_FIRST: u16 = 20_000;
/// How many ports [`free_address`] cycles through.
const PORTS_COUNT: u16 = 12_000;

/// A free loopback port, checked by binding it and letting it go. Ports come from below the
/// kernel's ephemeral range: a port from binding port 0 is an ephemeral one, which an outgoing
/// connection of another test may take before the node binds it (seen: a node started late in a
/// test failed with "address in use"). Each call in a process moves to the next port from a
/// start that differs per process, so parallel tests do not pick the same one.
pub fn free_address() -> SocketAddr {
    static NEXT: std::sync::OnceLock<std::sync::atomic::AtomicU32> = std::sync::OnceLock::new();
    let next = NEXT.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos());
        std::sync::atomic::AtomicU32::new(std::process::id().wrapping_mul(7_919) ^ nanos)
    });
    for _ in 0..PORTS_COUNT {
        let offset =
            next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % u32::from(PORTS_COUNT);
        let port = PORTS_FIRST + offset as u16;
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            return listener.local_addr().expect("a bound listener has an address");
        }
    }
    panic!("no free loopback port in {PORTS_FIRST}..{}", PORTS_FIRST + PORTS_COUNT);
}

/// Configurations for a cluster of `nodes` on free loopback ports, with data under `data_root`;
/// N is 3, or `nodes` for a smaller cluster.
pub fn cluster_configs(nodes: u32, data_root: &std::path::Path) -> Vec<NodeFileConfig> {
    let members: Vec<MemberAddress> =
        (1..=nodes).map(|id| MemberAddress::new(id, free_address())).collect();
    members
        .iter()
        .map(|member| {
            let text = format!(
                "(node_id: {}, cluster: \"test\", cluster_secret: \"test-cluster-secret-0123\", client_addr: \"{}\", peer_addr: \"{}\", members: [{}], request_timeout_ms: 2000, replicas_n: {}, data_dir: \"{}\")",
                member.id,
                free_address(),
                member.peer_addr,
                members.iter().map(|m| format!("(id: {}, peer_addr: \"{}\")", m.id, m.peer_addr)).collect::<Vec<_>>().join(", "),
                nodes.min(3),
                data_root.join(format!("node{}", member.id)).display()
            );
            NodeFileConfig::parse(&text).expect("generated configuration is valid")
        })
        .collect()
}

/// Starts one node of a cluster on its data directory.
pub async fn start_node(config: &NodeFileConfig) -> RunningNode {
    ringkv_net::start_on_disk(config).await.expect("node starts")
}

/// A Redis client connection to `address`, retried for up to 5 s while the node starts.
pub async fn connect(address: SocketAddr) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(format!("redis://{address}/")).expect("valid url");
    for _ in 0..50 {
        if let Ok(connection) = client.get_multiplexed_async_connection().await {
            return connection;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("cannot connect to {address}");
}

/// Starts a node per config and returns them once a write at ALL through the first succeeds
/// (every peer link is up and every node is ready).
pub async fn start_writable_cluster(configs: &[NodeFileConfig]) -> Vec<RunningNode> {
    let mut nodes = Vec::new();
    for config in configs {
        nodes.push(start_node(config).await);
    }
    let mut connection = connect(nodes[0].client_addr).await;
    for _ in 0..100 {
        let ready: redis::RedisResult<String> = redis::cmd("RK.PUT")
            .arg("__ready")
            .arg("1")
            .arg("-")
            .arg("ALL")
            .query_async(&mut connection)
            .await;
        if ready.is_ok() {
            return nodes;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("cluster never became writable");
}

/// Sends one command, given as its words, and returns its reply.
pub async fn call<T: redis::FromRedisValue>(
    connection: &mut redis::aio::MultiplexedConnection,
    args: &[&str],
) -> redis::RedisResult<T> {
    let mut command = redis::cmd(args[0]);
    for arg in &args[1..] {
        command.arg(*arg);
    }
    command.query_async(connection).await
}

/// The error line the server sent (`CODE message`), rebuilt from the client's error; panics on
/// a reply that is not an error.
pub fn error_line<T: std::fmt::Debug>(result: redis::RedisResult<T>) -> String {
    match result {
        Ok(value) => panic!("expected an error reply, got {value:?}"),
        Err(error) => format!("{} {}", error.code().unwrap_or("?"), error.detail().unwrap_or("")),
    }
}
