//! Where nodes stand (datacenter and rack) and what a consistency level counts there.
//!
//! Owns nothing over time: two pure pieces the ring and the request paths share. A
//! [`Location`] labels a node; [`quorums_for`] turns a consistency level and a key's replicas
//! into the quorums a request must reach, one per datacenter for `EACH_QUORUM`, the
//! coordinator's datacenter only for `LOCAL_ONE` and `LOCAL_QUORUM`, and one over every
//! replica for the levels that ignore topology. No I/O, no timers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::consistency::Consistency;
use crate::error::ClientError;
use crate::types::NodeId;

/// The datacenter of nodes whose location nobody declared.
pub const DATACENTER_DEFAULT: &str = "dc1";
/// The rack of nodes whose location nobody declared.
pub const RACK_DEFAULT: &str = "rack1";

/// Where a node stands: its datacenter and its rack within it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Location {
    /// The datacenter's name.
    pub datacenter: String,
    /// The rack's name, unique within its datacenter.
    pub rack: String,
}

impl Location {
    /// A location from its two labels.
    pub fn new(datacenter: impl Into<String>, rack: impl Into<String>) -> Self {
        Location { datacenter: datacenter.into(), rack: rack.into() }
    }
}

impl Default for Location {
    fn default() -> Self {
        Location::new(DATACENTER_DEFAULT, RACK_DEFAULT)
    }
}

/// A set of replicas of which `required` must answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quorum {
    /// The replicas that count.
    pub nodes: Vec<NodeId>,
    /// How many of them must answer.
    pub required: usize,
}

/// The quorums a request at `consistency` must reach over `replicas` (the key's replicas, in
/// preference order), where `datacenter_of` names each replica's datacenter and `local` is the
/// coordinator's.
///
/// Levels that ignore topology give one quorum over every replica. `LOCAL_ONE` and
/// `LOCAL_QUORUM` give one over the replicas in `local`, refused when it holds none (the
/// coordinator then cannot serve the level: Cassandra refuses the same). `EACH_QUORUM` gives a
/// majority of each datacenter's replicas.
pub fn quorums_for<'a>(
    consistency: Consistency,
    replicas: &[NodeId],
    datacenter_of: impl Fn(NodeId) -> &'a str,
    local: &str,
) -> Result<Vec<Quorum>, ClientError> {
    match consistency {
        Consistency::LocalOne | Consistency::LocalQuorum => {
            let nodes: Vec<NodeId> =
                replicas.iter().copied().filter(|node| datacenter_of(*node) == local).collect();
            let required =
                if consistency == Consistency::LocalOne { 1 } else { nodes.len() / 2 + 1 };
            if crate::planted!(LocalQuorumCountsRemote) {
                // The planted bug counts every replica toward the local quorum, so remote acks
                // complete a LOCAL_QUORUM write the local datacenter never saw.
                return Ok(vec![Quorum { nodes: replicas.to_vec(), required: required.max(1) }]);
            }
            if nodes.is_empty() {
                let datacenter = local.to_string();
                return Err(ClientError::NoLocalReplicas { consistency, datacenter });
            }
            Ok(vec![Quorum { nodes, required }])
        }
        Consistency::EachQuorum => {
            let mut by_datacenter: BTreeMap<&str, Vec<NodeId>> = BTreeMap::new();
            for node in replicas {
                by_datacenter.entry(datacenter_of(*node)).or_default().push(*node);
            }
            if by_datacenter.is_empty() {
                return Err(ClientError::InvalidConsistency { consistency, replicas_n: 0 });
            }
            Ok(by_datacenter
                .into_values()
                .map(|nodes| Quorum { required: nodes.len() / 2 + 1, nodes })
                .collect())
        }
        _ => {
            let required = consistency.required(replicas.len())?;
            Ok(vec![Quorum { nodes: replicas.to_vec(), required }])
        }
    }
}

/// Whether `answered` meets every quorum.
pub fn quorums_reached(quorums: &[Quorum], answered: impl Fn(NodeId) -> bool) -> bool {
    quorums.iter().all(|quorum| {
        quorum.nodes.iter().filter(|node| answered(**node)).count() >= quorum.required
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dc_of(node: NodeId) -> &'static str {
        if node.0 < 3 {
            "east"
        } else {
            "west"
        }
    }

    #[test]
    fn local_levels_count_only_the_coordinators_datacenter() {
        let replicas: Vec<NodeId> = [0, 1, 2, 3, 4].map(NodeId).to_vec();
        let local = quorums_for(Consistency::LocalQuorum, &replicas, dc_of, "west").unwrap();
        assert_eq!(local, vec![Quorum { nodes: vec![NodeId(3), NodeId(4)], required: 2 }]);
        let one = quorums_for(Consistency::LocalOne, &replicas, dc_of, "east").unwrap();
        assert_eq!(one[0].required, 1);
        assert_eq!(one[0].nodes.len(), 3);
        assert!(quorums_for(Consistency::LocalQuorum, &replicas, dc_of, "north").is_err());
        // Acks from the other datacenter never complete a local quorum.
        assert!(!quorums_reached(&local, |node| node.0 <= 3));
        assert!(quorums_reached(&local, |node| node.0 >= 3));
    }

    #[test]
    fn each_quorum_needs_a_majority_everywhere() {
        let replicas: Vec<NodeId> = [0, 1, 2, 3, 4].map(NodeId).to_vec();
        let each = quorums_for(Consistency::EachQuorum, &replicas, dc_of, "east").unwrap();
        assert_eq!(each.len(), 2);
        assert!(!quorums_reached(&each, |node| node.0 < 3));
        assert!(quorums_reached(&each, |node| [0, 1, 3, 4].contains(&node.0)));
        let quorum = quorums_for(Consistency::Quorum, &replicas, dc_of, "east").unwrap();
        assert_eq!(quorum, vec![Quorum { nodes: replicas.clone(), required: 3 }]);
    }
}
