//! Injecting the drawn faults: partitions, crashes, clogs, clock jumps, disk failures,
//! suspicions, clean restarts, power losses, bit flips, restores, and with a topology
//! datacenter partitions, datacenter power losses and rack losses.
//!
//! Part of [`Runner`](super::Runner): an `impl` block of its own, split out of `runner.rs`
//! along its seams; the state stays in `Runner`.

use super::*;

impl<D: SimDisk> Runner<D> {
    pub(super) fn fault_delay(&mut self, position: usize, rate_per_sec: f64) -> Duration {
        let secs = exponential(&mut self.fault_rngs[position], 1.0 / rate_per_sec);
        Duration::from_nanos((secs * 1e9) as u64)
    }

    pub(super) fn inject(&mut self, kind: FaultKind) {
        if self.phase != Phase::Safety {
            return;
        }
        let rates = self.plan.event_rates();
        let Some(position) = rates.iter().position(|(candidate, _)| *candidate == kind) else {
            return;
        };
        // Faults strike members only; with no membership change these are 0..nodes_count, so
        // the draws are the same as before membership changes existed.
        let members = active_indexes(&self.slots);
        let n = members.len();
        match kind {
            FaultKind::Partition => self.inject_partition(position),
            FaultKind::Crash => {
                if let Some(victim) = self.victim_keeping_majority(&members, position) {
                    let down_ms = self.fault_rngs[position].random_range(200..=3_000);
                    self.crash(victim, "crash");
                    self.schedule(Duration::from_millis(down_ms), Event::Restart { node: victim });
                }
            }
            FaultKind::Clog => {
                let rng = &mut self.fault_rngs[position];
                let victim = members[rng.random_range(0..n)];
                let until = self.now + Duration::from_millis(rng.random_range(200..=2_000));
                self.stats.clogs += 1;
                self.trace.record(self.now, Some(victim), 11, 0, || "clogged".into());
                self.note(FaultEventKind::Clog { node: node_id(victim), until: Some(until) });
                self.network.clog(victim, until);
            }
            FaultKind::ClockJump => {
                let jump_max = self.plan.clock_jump_ms_max as i64;
                let rng = &mut self.fault_rngs[position];
                let victim = members[rng.random_range(0..n)];
                let delta_ms =
                    if jump_max > 0 { rng.random_range(-jump_max..=jump_max) } else { 0 };
                self.stats.clock_jumps += 1;
                self.trace.record(self.now, Some(victim), 12, delta_ms as u64, || {
                    format!("clock jumps {delta_ms} ms")
                });
                self.note(FaultEventKind::ClockJump { node: node_id(victim), delta_ms });
                self.clocks[victim].jump(delta_ms);
            }
            FaultKind::DiskFailure => {
                let healthy: Vec<usize> = members
                    .iter()
                    .copied()
                    .filter(|index| {
                        self.slots[*index].node.is_some() && !self.slots[*index].disk_failing
                    })
                    .collect();
                if !healthy.is_empty() {
                    let rng = &mut self.fault_rngs[position];
                    let victim = healthy[rng.random_range(0..healthy.len())];
                    let broken_ms = rng.random_range(500..=3_000);
                    self.stats.disk_failures += 1;
                    self.trace.record(self.now, Some(victim), 13, 0, || "disk failing".into());
                    self.note(FaultEventKind::DiskFailing { node: node_id(victim) });
                    let slot = &mut self.slots[victim];
                    slot.disk_failing = true;
                    if let Some(node) = slot.node.as_mut() {
                        node.storage_mut().set_failing(true);
                    }
                    let replace = Duration::from_millis(broken_ms);
                    self.schedule(replace, Event::ReplaceDisk { node: victim });
                }
            }
            FaultKind::CleanRestart => {
                if let Some(victim) = self.victim_keeping_majority(&members, position) {
                    let down_ms = self.fault_rngs[position].random_range(100..=1_000);
                    self.clean_stop(victim);
                    self.schedule(Duration::from_millis(down_ms), Event::Restart { node: victim });
                }
            }
            FaultKind::PowerLoss => {
                self.stats.power_losses += 1;
                self.trace.record(self.now, None, 21, 0, || "POWER LOSS: every node".into());
                self.note(FaultEventKind::PowerLoss);
                for victim in 0..n {
                    if self.slots[victim].node.is_some() {
                        let down_ms = self.fault_rngs[position].random_range(200..=3_000);
                        self.crash(victim, "power loss");
                        let restart = Duration::from_millis(down_ms);
                        self.schedule(restart, Event::Restart { node: victim });
                    }
                }
            }
            FaultKind::BitFlip => {
                let rng = &mut self.fault_rngs[position];
                let drawn = rng.random_range(0..n);
                let victim = self.damaged.map_or(drawn, |(damaged, _)| damaged);
                let slot = &mut self.slots[victim];
                let disk = match (slot.node.as_mut(), slot.disk.as_mut()) {
                    (Some(node), _) => Some(node.storage_mut()),
                    (None, disk) => disk,
                };
                if let Some(flipped) = disk.and_then(|disk| disk.flip_bit(rng)) {
                    self.stats.bit_flips += 1;
                    // Damage after a rebuild needs another rebuild before the mark moves on.
                    self.damaged = Some((victim, false));
                    self.faults.push(FaultEvent {
                        at: self.now,
                        kind: FaultEventKind::BitFlip { node: node_id(victim) },
                    });
                    self.trace.record(self.now, Some(victim), 22, 0, || {
                        format!("bit flipped at rest: {flipped}")
                    });
                }
            }
            FaultKind::Restore => {
                let victim = self.victim_keeping_majority(&members, position);
                let rng = &mut self.fault_rngs[position];
                let restore_ms = rng.random_range(500..=3_000);
                let restart_ms = rng.random_range(100..=1_000);
                let snapshot_seed: u64 = rng.random();
                // Half the snapshots are cold, as an operator takes them: the node is stopped
                // cleanly, its disk checkpointed, and it starts again (keeping its epoch, so
                // the snapshot carries the epoch and dot counter the live node goes on from).
                let cold = rng.random_bool(0.5);
                // One restore at a time, and none while a store is being refilled: two replicas
                // of the same data behind at once lose what only they held (N = 3, W = 2
                // tolerates one), which is a lost replica, not a bug.
                let busy = self.slots.iter().any(|slot| {
                    slot.snapshot.is_some()
                        || slot.node.as_ref().is_some_and(|node| node.is_rebuilding())
                });
                let healthy = |index: &usize| !self.slots[*index].disk_failing;
                if let Some(victim) = victim.filter(|index| !busy && healthy(index)) {
                    let snapshot = if cold {
                        self.clean_stop(victim);
                        let restart = Duration::from_millis(restart_ms);
                        self.schedule(restart, Event::Restart { node: victim });
                        self.slots[victim].disk.as_mut().and_then(|disk| {
                            if disk.recover() {
                                disk.checkpoint(snapshot_seed)
                            } else {
                                None
                            }
                        })
                    } else {
                        self.slots[victim]
                            .node
                            .as_mut()
                            .and_then(|node| node.storage_mut().checkpoint(snapshot_seed))
                    };
                    if let Some(snapshot) = snapshot {
                        self.slots[victim].snapshot = Some((self.now, snapshot));
                        self.stats.snapshots += 1;
                        let kind = if cold { "cold" } else { "hot" };
                        self.trace.record(self.now, Some(victim), 23, restore_ms, || {
                            format!("{kind} snapshot taken; restored in {restore_ms} ms")
                        });
                        self.note(FaultEventKind::Snapshot { node: node_id(victim) });
                        let event = Event::RestoreSnapshot { node: victim, restart_ms };
                        self.schedule(Duration::from_millis(restore_ms), event);
                    }
                }
            }
            FaultKind::DcPartition => self.inject_dc_partition(position),
            FaultKind::DcPowerLoss => {
                let datacenters = self.datacenters_with(&members);
                if !datacenters.is_empty() {
                    let rng = &mut self.fault_rngs[position];
                    let victim_dc = datacenters[rng.random_range(0..datacenters.len())];
                    self.stats.dc_power_losses += 1;
                    let dc_name = self
                        .config
                        .topology
                        .as_ref()
                        .map(|t| t.datacenters[victim_dc].name.clone())
                        .unwrap_or_default();
                    self.trace.record(self.now, None, 25, victim_dc as u64, || {
                        format!("DATACENTER POWER LOSS: {dc_name}")
                    });
                    for victim in members.iter().copied() {
                        if self.datacenter_index(victim) == victim_dc
                            && self.slots[victim].node.is_some()
                        {
                            let down_ms = self.fault_rngs[position].random_range(200..=3_000);
                            self.crash(victim, "dc power loss");
                            let restart = Duration::from_millis(down_ms);
                            self.schedule(restart, Event::Restart { node: victim });
                        }
                    }
                }
            }
            FaultKind::RackLoss => {
                // One rack at a time, and none while any member is down: a rack is one
                // replica of each key (placement spreads over racks), and stacking it on other
                // outages would test a loss N does not promise to survive.
                let racks: Vec<ringkv_core::placement::Location> = members
                    .iter()
                    .map(|index| self.location(*index))
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let all_up = members.iter().all(|index| self.slots[*index].node.is_some());
                let rng = &mut self.fault_rngs[position];
                let rack = racks[rng.random_range(0..racks.len())].clone();
                let down_ms = rng.random_range(500..=3_000);
                if all_up && racks.len() > 1 {
                    self.stats.rack_losses += 1;
                    self.trace.record(self.now, None, 26, down_ms, || {
                        format!("RACK LOSS: {}/{} for {down_ms} ms", rack.datacenter, rack.rack)
                    });
                    for victim in members.iter().copied() {
                        if self.location(victim) == rack {
                            self.crash(victim, "rack loss");
                            let restart = Duration::from_millis(down_ms);
                            self.schedule(restart, Event::Restart { node: victim });
                        }
                    }
                }
            }
            FaultKind::Suspicion => {
                let rng = &mut self.fault_rngs[position];
                let observer = members[rng.random_range(0..n)];
                let suspect = members[rng.random_range(0..n)];
                let wrong_ms = rng.random_range(200..=2_000);
                if observer != suspect {
                    self.trace.record(self.now, Some(observer), 17, suspect as u64, || {
                        format!("detector wrongly suspects n{}", suspect + 1)
                    });
                    let correct = Duration::from_millis(wrong_ms);
                    self.note(FaultEventKind::Suspicion {
                        observer: node_id(observer),
                        suspect: node_id(suspect),
                        until: self.now + correct,
                    });
                    let status = Input::PeerStatus { node: node_id(suspect), up: false };
                    self.feed(observer, Some(status));
                    // The broadcast tells everyone the truth again, correcting the observer.
                    self.schedule(correct, Event::StatusBroadcast { about: suspect });
                }
            }
        }
        let delay = self.fault_delay(position, rates[position].1);
        self.schedule(delay, Event::Fault { kind });
    }

    /// A running member to take down, drawn with the fault's generator, while fewer than
    /// `n / 2` of the `n` members are down (crashes and restarts keep a majority up).
    pub(super) fn victim_keeping_majority(
        &mut self,
        members: &[usize],
        position: usize,
    ) -> Option<usize> {
        let running: Vec<usize> =
            members.iter().copied().filter(|index| self.slots[*index].node.is_some()).collect();
        let n = members.len();
        if running.is_empty() || n - running.len() >= n / 2 {
            return None;
        }
        let rng = &mut self.fault_rngs[position];
        Some(running[rng.random_range(0..running.len())])
    }

    /// The datacenter indexes holding at least one of `members`, in order.
    pub(super) fn datacenters_with(&self, members: &[usize]) -> Vec<usize> {
        let held: BTreeSet<usize> =
            members.iter().map(|index| self.datacenter_index(*index)).collect();
        held.into_iter().collect()
    }

    /// Cuts one datacenter (drawn among those with members) from all the others, both ways;
    /// healed after 1..4 s unless another partition replaces it first.
    pub(super) fn inject_dc_partition(&mut self, position: usize) {
        let members = active_indexes(&self.slots);
        let datacenters = self.datacenters_with(&members);
        let rng = &mut self.fault_rngs[position];
        let drawn = rng.random_range(0..datacenters.len().max(1));
        let heal_ms = rng.random_range(1_000..=4_000);
        if datacenters.len() < 2 {
            return;
        }
        let cut = datacenters[drawn];
        let side: Vec<usize> =
            members.iter().copied().filter(|index| self.datacenter_index(*index) == cut).collect();
        let shape = PartitionShape::Split { side };
        self.partition_generation += 1;
        self.stats.partitions += 1;
        let generation = self.partition_generation;
        self.trace.record(self.now, None, 14, generation, || format!("dc partition {shape:?}"));
        self.network.partition(&shape);
        self.note(FaultEventKind::Partition { shape });
        self.schedule(Duration::from_millis(heal_ms), Event::HealPartition { generation });
    }

    pub(super) fn inject_partition(&mut self, position: usize) {
        let mut order = active_indexes(&self.slots);
        let n = order.len();
        if n < 2 {
            return;
        }
        let rng = &mut self.fault_rngs[position];
        order.shuffle(rng);
        let shape = match rng.random_range(0..4) {
            2 if n >= 3 => {
                let side_len = ((n - 1) / 2).max(1);
                PartitionShape::Bridge { side: order[1..=side_len].to_vec(), bridge: order[0] }
            }
            3 => PartitionShape::OneWay { from: order[0] },
            _ => {
                let side_len = rng.random_range(1..=(n / 2).max(1));
                PartitionShape::Split { side: order[..side_len].to_vec() }
            }
        };
        let heal_ms = rng.random_range(500..=3_000);
        self.partition_generation += 1;
        self.stats.partitions += 1;
        let generation = self.partition_generation;
        self.trace.record(self.now, None, 14, generation, || format!("partition {shape:?}"));
        self.network.partition(&shape);
        self.note(FaultEventKind::Partition { shape });
        self.schedule(Duration::from_millis(heal_ms), Event::HealPartition { generation });
    }
}
