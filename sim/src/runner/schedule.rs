//! The timed schedule: scenario events at fixed simulated times.
//!
//! Part of [`Runner`](super::Runner): an `impl` block of its own, split out of `runner.rs`
//! along its seams; the state stays in `Runner`.

use super::*;

impl<D: SimDisk> Runner<D> {
    pub(super) fn play(&mut self, position: usize) {
        let event = self.schedule[position].event.clone();
        self.trace.record(self.now, None, 19, position as u64, || format!("SCHEDULE: {event:?}"));
        let index = |node: u32| node as usize - 1;
        match event {
            ScheduledEvent::Join => {
                let Some(slot) = self.slots.iter().position(|slot| slot.role == Role::Absent)
                else {
                    return;
                };
                let disk_seed = child_seed(self.config.seed, "disk", slot as u64);
                let joining = &mut self.slots[slot];
                joining.disk = Some(D::fresh(disk_seed));
                joining.role = Role::Member;
                joining.join = true;
                self.stats.joins += 1;
                self.note(FaultEventKind::Membership { node: node_id(slot), change: "join" });
                self.start(slot, true);
            }
            ScheduledEvent::Decommission { node } => {
                let slot = index(node);
                if self.slots[slot].role == Role::Member {
                    self.slots[slot].role = Role::Leaving;
                    let node = node_id(slot);
                    self.note(FaultEventKind::Membership { node, change: "decommission" });
                    self.feed(slot, Some(Input::Decommission));
                    self.watch();
                }
            }
            ScheduledEvent::Crash { node } => {
                let slot = index(node);
                if self.slots[slot].role.is_active() {
                    self.slots[slot].held_down = true;
                    self.crash(slot, "scheduled crash");
                }
            }
            ScheduledEvent::Restart { node } => {
                let slot = index(node);
                self.slots[slot].held_down = false;
                let restartable =
                    self.slots[slot].role.is_active() && !self.slots[slot].disk_failing;
                if restartable && self.slots[slot].node.is_none() {
                    self.start(slot, true);
                }
            }
            ScheduledEvent::Remove { node } => {
                let slot = index(node);
                if self.slots[slot].role.is_active() && self.slots[slot].node.is_none() {
                    self.slots[slot].role = Role::Removing;
                    let node = node_id(slot);
                    self.note(FaultEventKind::Membership { node, change: "remove" });
                    self.watch();
                    self.watch_departures();
                }
            }
            ScheduledEvent::Partition(forced) => {
                let indexes = |nodes: &[u32]| nodes.iter().map(|node| index(*node)).collect();
                let shape = match &forced {
                    ForcedPartition::Split { side } => {
                        PartitionShape::Split { side: indexes(side) }
                    }
                    ForcedPartition::Bridge { side, bridge } => {
                        PartitionShape::Bridge { side: indexes(side), bridge: index(*bridge) }
                    }
                    ForcedPartition::OneWay { from } => {
                        PartitionShape::OneWay { from: index(*from) }
                    }
                };
                // A new generation, so a pending swarm heal does not end this partition.
                self.partition_generation += 1;
                self.stats.partitions += 1;
                self.network.partition(&shape);
                self.note(FaultEventKind::Partition { shape });
            }
            ScheduledEvent::Heal => {
                self.partition_generation += 1;
                self.network.heal_partition();
                self.note(FaultEventKind::PartitionHealed);
            }
            ScheduledEvent::Clog { node } => {
                self.stats.clogs += 1;
                self.network.clog(index(node), Instant::from_nanos(u64::MAX));
                self.note(FaultEventKind::Clog { node: node_id(index(node)), until: None });
            }
            ScheduledEvent::Unclog { node } => {
                self.network.unclog(index(node));
                self.note(FaultEventKind::Unclog { node: node_id(index(node)) });
            }
        }
    }

    /// Starts the departure watch unless it runs already.
    pub(super) fn watch(&mut self) {
        if !self.watching {
            self.watching = true;
            self.schedule(DEPARTURE_WATCH_INTERVAL, Event::WatchDepartures);
        }
    }

    /// Moves departures along as an operator would: a leaving node that a restart turned normal
    /// again is asked to leave again; one that every running member sees left is stopped for
    /// good; a removal is repeated to a member that has not heard of it.
    pub(super) fn watch_departures(&mut self) {
        let mut pending = false;
        for slot in 0..self.slots.len() {
            match self.slots[slot].role {
                Role::Leaving => {
                    pending = true;
                    let Some(status) = self.slots[slot].node.as_ref().map(Node::status) else {
                        continue;
                    };
                    if status == MemberStatus::Normal {
                        self.feed(slot, Some(Input::Decommission));
                    } else if status == MemberStatus::Left && self.all_see_left(slot) {
                        self.trace.record(self.now, Some(slot), 20, 0, || "departed".into());
                        self.clean_stop(slot);
                        self.slots[slot].role = Role::Departed;
                        let node = node_id(slot);
                        self.note(FaultEventKind::Membership { node, change: "departed" });
                        self.stats.decommissions += 1;
                    }
                }
                Role::Removing => {
                    pending = true;
                    if self.all_see_left(slot) {
                        self.trace.record(self.now, Some(slot), 20, 1, || "removed".into());
                        self.slots[slot].role = Role::Departed;
                        self.stats.removals += 1;
                        let node = node_id(slot);
                        self.note(FaultEventKind::Membership { node, change: "removed" });
                        continue;
                    }
                    let id = node_id(slot);
                    let unaware = active_indexes(&self.slots).into_iter().find(|other| {
                        self.slots[*other].node.as_ref().is_some_and(|node| {
                            node.membership()
                                .get(&id)
                                .is_some_and(|state| state.status != MemberStatus::Left)
                        })
                    });
                    if let Some(operator) = unaware {
                        self.feed(operator, Some(Input::RemoveNode { node: id }));
                    }
                }
                _ => {}
            }
        }
        self.watching = false;
        if pending {
            self.watch();
        }
    }

    /// Whether every running member other than `slot` sees `slot`'s node as left (or has never
    /// heard of it).
    pub(super) fn all_see_left(&self, slot: usize) -> bool {
        let id = node_id(slot);
        active_indexes(&self.slots).into_iter().filter(|other| *other != slot).all(|other| {
            self.slots[other].node.as_ref().is_none_or(|node| {
                node.membership().get(&id).is_none_or(|state| state.status == MemberStatus::Left)
            })
        })
    }
}
