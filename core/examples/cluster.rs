//! A five-node in-process cluster: writes, concurrent siblings, a context write that resolves
//! them, a silent replica and read repair. Run with `cargo run -p ringkv-core --example cluster`.

use bytes::Bytes;
use ringkv_core::harness::Cluster;
use ringkv_core::message::{ClientRequest, ClientResponse};
use ringkv_core::{Consistency, NodeConfig, NodeId};

fn main() {
    let mut cluster = Cluster::new(NodeConfig::new((1..=5).map(NodeId).collect()));
    let key = Bytes::from_static(b"cart");
    let put = |value: &'static str, context| ClientRequest::Put {
        key: key.clone(),
        value: Bytes::from_static(value.as_bytes()),
        context,
        ttl: None,
        consistency: Consistency::Quorum,
    };
    let get = ClientRequest::Get { key: key.clone(), consistency: Consistency::Quorum };
    println!("replicas of `cart`: {:?}", cluster.node(NodeId(1)).ring().preference_list(&key, 3));
    println!("put apple via n1 -> {:?}", cluster.call(NodeId(1), put("apple", None)).is_ok());
    println!("put pear via n4  -> {:?}", cluster.call(NodeId(4), put("pear", None)).is_ok());
    let Ok(ClientResponse::Read(both)) = cluster.call(NodeId(2), get.clone()) else {
        panic!("the quorum read failed");
    };
    println!("get via n2 -> {} siblings: {:?}", both.values.len(), both.values);
    let resolved = cluster.call(NodeId(3), put("apple+pear", Some(both.context)));
    println!("context write via n3 -> {:?}", resolved.is_ok());
    let Ok(ClientResponse::Read(after)) = cluster.call(NodeId(5), get) else {
        panic!("the quorum read failed");
    };
    println!("get via n5 -> {:?}", after.values);
    assert_eq!(after.values, vec![Bytes::from_static(b"apple+pear")]);
    for id in 1..=5 {
        let counters = cluster.node(NodeId(id)).counters();
        println!(
            "n{id}: read repairs sent {}, client errors {}",
            counters.read_repairs_sent, counters.client_errors
        );
    }
}
