//! ringkv-tests: cross-crate tests live in `tests/tests/`; this library holds what they share:
//! starting a local cluster of real nodes on loopback ports and connecting a Redis client.
#![forbid(unsafe_code)]

use std::net::{SocketAddr, TcpListener};

use ringkv_net::config::{MemberAddress, NodeFileConfig};
use ringkv_net::RunningNode;

/// A free loopback port, found by binding port 0 and letting it go.
pub fn free_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("loopback is available");
    listener.local_addr().expect("a bound listener has an address")
}

/// Configurations for a cluster of `nodes` on free loopback ports, with data under `data_root`.
pub fn cluster_configs(nodes: u32, data_root: &std::path::Path) -> Vec<NodeFileConfig> {
    let members: Vec<MemberAddress> =
        (1..=nodes).map(|id| MemberAddress { id, peer_addr: free_address() }).collect();
    members
        .iter()
        .map(|member| {
            let text = format!(
                "(node_id: {}, cluster: \"test\", cluster_secret: \"test-cluster-secret-0123\", client_addr: \"{}\", peer_addr: \"{}\", members: [{}], request_timeout_ms: 2000, data_dir: \"{}\")",
                member.id,
                free_address(),
                member.peer_addr,
                members.iter().map(|m| format!("(id: {}, peer_addr: \"{}\")", m.id, m.peer_addr)).collect::<Vec<_>>().join(", "),
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
