//! Datacenters and racks driven by hand: what the per-datacenter levels count and where
//! replicas land, in a cluster of two datacenters of three nodes (one rack per node).

use std::collections::BTreeMap;

use bytes::Bytes;
use ringkv_core::harness::{Cluster, Reply};
use ringkv_core::message::{ClientRequest, ClientResponse};
use ringkv_core::placement::Location;
use ringkv_core::{ClientError, Consistency, NodeConfig, NodeId};

const DC1: [NodeId; 3] = [NodeId(1), NodeId(2), NodeId(3)];
const DC2: [NodeId; 3] = [NodeId(4), NodeId(5), NodeId(6)];

fn location(node: NodeId) -> Location {
    let datacenter = if DC1.contains(&node) { "dc1" } else { "dc2" };
    Location::new(datacenter, format!("rack{}", node.0))
}

/// Six nodes, two datacenters, `per_dc` replicas in each.
fn two_datacenters(per_dc: usize) -> Cluster {
    let members: Vec<NodeId> = DC1.iter().chain(DC2.iter()).copied().collect();
    let mut config = NodeConfig::new(members.clone());
    config.locations = members.iter().map(|node| (*node, location(*node))).collect();
    config.keyspace.replicas_per_dc =
        [("dc1".to_string(), per_dc), ("dc2".to_string(), per_dc)].into();
    config.keyspace.replicas_n = 2 * per_dc;
    let per_node: BTreeMap<NodeId, NodeConfig> = members
        .iter()
        .map(|node| {
            let mut own = config.clone();
            own.datacenter = location(*node).datacenter;
            own.rack = location(*node).rack;
            (*node, own)
        })
        .collect();
    Cluster::with_node_configs(config, per_node)
}

fn set(key: &str, value: &str, consistency: Consistency) -> ClientRequest {
    ClientRequest::Set {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
        ttl: None,
        consistency,
    }
}

fn get(key: &str, consistency: Consistency) -> ClientRequest {
    ClientRequest::Get { key: Bytes::copy_from_slice(key.as_bytes()), consistency }
}

fn values(reply: Reply) -> Vec<Vec<u8>> {
    match reply {
        Ok(ClientResponse::Read(result)) => {
            result.values.iter().map(|value| value.to_vec()).collect()
        }
        other => panic!("expected a read, got {other:?}"),
    }
}

fn cut_off(cluster: &mut Cluster, nodes: &[NodeId], declared: bool) {
    for node in nodes {
        cluster.isolate(*node);
        if declared {
            cluster.declare(*node, false);
        }
    }
}

#[test]
fn each_datacenter_holds_its_count_on_distinct_racks() {
    let mut cluster = two_datacenters(2);
    for key in 0..100u32 {
        let replicas = cluster.node(NodeId(1)).ring().preference_list(&key.to_le_bytes(), 4);
        assert_eq!(replicas.iter().filter(|node| DC1.contains(node)).count(), 2, "{replicas:?}");
        assert_eq!(replicas.iter().filter(|node| DC2.contains(node)).count(), 2, "{replicas:?}");
    }
}

#[test]
fn local_quorum_keeps_working_while_the_other_datacenter_is_cut_off() {
    let mut cluster = two_datacenters(3);
    cut_off(&mut cluster, &DC2, true);
    let written = cluster.call(NodeId(1), set("k", "local", Consistency::LocalQuorum));
    assert!(matches!(written, Ok(ClientResponse::Written { .. })), "{written:?}");
    assert_eq!(values(cluster.call(NodeId(2), get("k", Consistency::LocalQuorum))), [b"local"]);
    assert_eq!(values(cluster.call(NodeId(3), get("k", Consistency::LocalOne))), [b"local"]);
    // EACH_QUORUM and QUORUM (4 of 6) need the other datacenter: refused, nothing claimed.
    let each = cluster.call(NodeId(1), set("k", "each", Consistency::EachQuorum));
    assert_eq!(each, Err(ClientError::Unavailable { required: 2, alive: 0 }));
    let quorum = cluster.call(NodeId(1), set("k", "quorum", Consistency::Quorum));
    assert_eq!(quorum, Err(ClientError::Unavailable { required: 4, alive: 3 }));
    // Healed, a read of every replica still finds the acknowledged write (and only it).
    for node in DC2 {
        cluster.heal(node);
        cluster.declare(node, true);
    }
    assert_eq!(values(cluster.call(NodeId(5), get("k", Consistency::All))), [b"local"]);
    assert_eq!(values(cluster.call(NodeId(5), get("k", Consistency::LocalQuorum))), [b"local"]);
}

#[test]
fn local_quorum_never_waits_for_a_silent_remote_datacenter_but_each_quorum_does() {
    let mut cluster = two_datacenters(3);
    cut_off(&mut cluster, &DC1, false);
    let written = cluster.call(NodeId(4), set("k", "west", Consistency::LocalQuorum));
    assert!(matches!(written, Ok(ClientResponse::Written { .. })), "{written:?}");
    let each = cluster.call(NodeId(4), set("k", "both", Consistency::EachQuorum));
    assert!(
        matches!(&each, Err(error @ ClientError::Timeout { .. }) if error.outcome_unknown()),
        "{each:?}"
    );
}

#[test]
fn a_local_level_is_refused_where_the_datacenter_holds_no_replica() {
    let members: Vec<NodeId> = DC1.iter().chain(DC2.iter()).copied().collect();
    let mut config = NodeConfig::new(members.clone());
    config.locations = members.iter().map(|node| (*node, location(*node))).collect();
    config.keyspace.replicas_per_dc = [("dc1".to_string(), 3)].into();
    config.keyspace.replicas_n = 3;
    let mut west = config.clone();
    west.datacenter = "dc2".into();
    let cluster_configs = DC2.iter().map(|node| (*node, west.clone())).collect();
    let mut cluster = Cluster::with_node_configs(config, cluster_configs);
    let reply = cluster.call(NodeId(4), set("k", "v", Consistency::LocalQuorum));
    assert!(matches!(reply, Err(ClientError::NoLocalReplicas { .. })), "{reply:?}");
    // Levels that ignore topology still work from there.
    assert!(cluster.call(NodeId(4), set("k", "v", Consistency::Quorum)).is_ok());
}
