//! Where the simulated nodes stand: datacenters and their racks.
//!
//! Owns: [`Topology`] (plain data: each datacenter's name, rack count, founding nodes and
//! nodes that join later; the WAN's latency is the network's, `NetworkConfig::wan_latency_*`).
//! Input: a scenario's declaration.
//! Output: each slot's [`Location`] and datacenter index, which the runner hands to the nodes
//! (every node gets the whole map as `NodeConfig::locations`), the network (WAN latency across
//! datacenters) and the clients (each is attached to one datacenter).
//!
//! Numbering: founding nodes first, datacenter by datacenter in declaration order, then the
//! nodes that join (the k-th scheduled `Join` is the k-th of these), datacenter by datacenter
//! again. Within a datacenter the i-th node (founding ones first) stands on rack
//! `rack{i % racks + 1}`, so racks fill round robin and joiners continue the rotation.
//!
//! A run without a topology is one datacenter of one rack, the core's default location, and
//! draws nothing more from any generator: its trace is the one it had before topologies.

use ringkv_core::placement::Location;

/// One datacenter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatacenterConfig {
    /// Its name, as `replicas_per_dc` names it.
    pub name: String,
    /// How many racks its nodes spread over (at least 1).
    pub racks_count: usize,
    /// Founding nodes in it (may be 0 for a datacenter added later).
    pub nodes_count: usize,
    /// Nodes that join it later, one per scheduled `Join`.
    pub joining_count: usize,
}

/// The cluster's datacenters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// The datacenters, in declaration order.
    pub datacenters: Vec<DatacenterConfig>,
}

/// Where one slot's node stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotLocation {
    /// Its datacenter and rack, as the core sees them.
    pub location: Location,
    /// Its datacenter's position in [`Topology::datacenters`].
    pub datacenter_index: usize,
}

impl Topology {
    /// Founding nodes over every datacenter.
    pub fn founding_count(&self) -> usize {
        self.datacenters.iter().map(|dc| dc.nodes_count).sum()
    }

    /// Nodes that join later over every datacenter.
    pub fn joining_count(&self) -> usize {
        self.datacenters.iter().map(|dc| dc.joining_count).sum()
    }

    /// Every slot's location, founding nodes first (module docs).
    pub fn slot_locations(&self) -> Vec<SlotLocation> {
        let mut slots = Vec::with_capacity(self.founding_count() + self.joining_count());
        let place = |slots: &mut Vec<SlotLocation>, index: usize, position: usize| {
            let dc = &self.datacenters[index];
            let rack = format!("rack{}", position % dc.racks_count.max(1) + 1);
            slots.push(SlotLocation {
                location: Location::new(dc.name.clone(), rack),
                datacenter_index: index,
            });
        };
        for (index, dc) in self.datacenters.iter().enumerate() {
            for position in 0..dc.nodes_count {
                place(&mut slots, index, position);
            }
        }
        for (index, dc) in self.datacenters.iter().enumerate() {
            for position in dc.nodes_count..dc.nodes_count + dc.joining_count {
                place(&mut slots, index, position);
            }
        }
        slots
    }

    /// Checks the declaration: names unique and not empty, racks positive, every datacenter
    /// with some node eventually.
    pub fn validate(&self) -> Result<(), String> {
        if self.datacenters.is_empty() {
            return Err("a topology needs at least one datacenter".to_string());
        }
        for (index, dc) in self.datacenters.iter().enumerate() {
            if dc.name.is_empty() || self.datacenters[..index].iter().any(|o| o.name == dc.name) {
                return Err(format!(
                    "datacenter names must be unique and not empty: {:?}",
                    dc.name
                ));
            }
            if dc.racks_count == 0 {
                return Err(format!("datacenter {} needs at least one rack", dc.name));
            }
            if dc.nodes_count + dc.joining_count == 0 {
                return Err(format!("datacenter {} never has a node", dc.name));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn founding_nodes_come_first_and_racks_fill_round_robin() {
        let topology = Topology {
            datacenters: vec![
                DatacenterConfig {
                    name: "a".into(),
                    racks_count: 2,
                    nodes_count: 3,
                    joining_count: 1,
                },
                DatacenterConfig {
                    name: "b".into(),
                    racks_count: 3,
                    nodes_count: 0,
                    joining_count: 2,
                },
            ],
        };
        assert_eq!(topology.validate(), Ok(()));
        let spots: Vec<(String, String)> = topology
            .slot_locations()
            .into_iter()
            .map(|slot| (slot.location.datacenter, slot.location.rack))
            .collect();
        let expected = [
            ("a", "rack1"),
            ("a", "rack2"),
            ("a", "rack1"),
            ("a", "rack2"),
            ("b", "rack1"),
            ("b", "rack2"),
        ];
        let expected: Vec<(String, String)> =
            expected.iter().map(|(dc, rack)| (dc.to_string(), rack.to_string())).collect();
        assert_eq!(spots, expected);
    }
}
