//! The run's phases: the heal, the liveness phase, the final pass and the checkers.
//!
//! Part of [`Runner`](super::Runner): an `impl` block of its own, split out of `runner.rs`
//! along its seams; the state stays in `Runner`.

use super::*;

impl<D: SimDisk> Runner<D> {
    pub(super) fn heal(&mut self) {
        self.trace.record(self.now, None, 15, 0, || "HEAL: faults off, nodes restarted".into());
        self.phase = Phase::Liveness;
        self.note(FaultEventKind::Heal);
        self.network.heal_partition();
        self.network.unclog_all();
        self.network.set_rates(0.0, 0.0, 0.0);
        self.clocks.iter_mut().for_each(NodeClock::fix);
        for (location, stats) in ringkv_core::buggify::disable() {
            self.stats.buggify.insert(
                location.to_string(),
                (stats.enabled, stats.reached_count, stats.fired_count),
            );
        }
        if self.plan.io_error_rate > 0.0 {
            for slot in &mut self.slots {
                match (slot.node.as_mut(), slot.disk.as_mut()) {
                    (Some(node), _) => node.storage_mut().set_io_error_rate(0.0),
                    (None, Some(disk)) => disk.set_io_error_rate(0.0),
                    (None, None) => {}
                }
            }
        }
        for index in active_indexes(&self.slots) {
            // The heal restarts nodes the schedule crashed too; only removed nodes stay down.
            self.slots[index].held_down = false;
            if self.slots[index].disk_failing {
                self.replace_disk(index);
            }
            if self.slots[index].node.is_none() {
                self.start(index, true);
            }
        }
        if self.plan.bit_flips_per_sec > 0.0 {
            for index in 0..self.slots.len() {
                if let Some(node) = self.slots[index].node.as_mut() {
                    node.storage_mut().scrub();
                }
                self.supervise(index);
            }
        }
        for about in 0..self.slots.len() {
            if self.slots[about].role != Role::Absent {
                self.broadcast_status(about);
            }
        }
        self.liveness_from = Some(self.now + self.config.liveness_warmup);
        self.healed_at = Some(self.now);
    }

    pub(super) fn final_pass(&mut self) {
        self.phase = Phase::Final;
        let keys: BTreeSet<Key> = self
            .history
            .iter()
            .filter_map(|(_, op)| match &op.request {
                OpRequest::Write { writes, .. } => Some(writes.iter().map(|(key, _)| key.clone())),
                // Serial keys are judged by the linearizability checker, not the final pass.
                // A flush writes nothing: the keys it removed were written before or not at all.
                OpRequest::Read { .. } | OpRequest::Cas { .. } | OpRequest::Flush { .. } => None,
            })
            .flatten()
            .collect();
        self.trace.record(self.now, None, 16, keys.len() as u64, || {
            format!("FINAL PASS: reading {} keys at ALL", keys.len())
        });
        let pseudo_client = self.clients.len();
        let coordinators = active_indexes(&self.slots);
        self.final_remaining = keys.len();
        for (position, key) in keys.into_iter().enumerate() {
            let node = coordinators[position % coordinators.len()];
            let consistency = ringkv_core::Consistency::All;
            let record = OpRequest::Read { keys: vec![key.clone()], consistency };
            let op = self.history.invoke(pseudo_client, node_id(node), record, self.now, true);
            self.schedule(self.config.workload.op_timeout, Event::ClientTimeout { op });
            let request = ringkv_core::ClientRequest::Get { key, consistency };
            self.feed(node, Some(Input::Client { request: op as u64, op: request }));
        }
        if self.final_remaining == 0 {
            self.schedule(Duration::ZERO, Event::End);
        }
        self.schedule(self.config.workload.op_timeout * 2, Event::End);
    }

    pub(super) fn finish(mut self) -> Report {
        for (location, stats) in ringkv_core::buggify::disable() {
            self.stats.buggify.insert(
                location.to_string(),
                (stats.enabled, stats.reached_count, stats.fired_count),
            );
        }
        let final_state = self.collect_final_state();
        let params = CheckParams {
            replicas_n: self.config.node.keyspace.replicas_n,
            conflict_mode: self.config.node.keyspace.conflict_mode,
            liveness_from: self.liveness_from,
            liveness_success_min: self.config.liveness_success_min,
            node_starts_count: self.stats.node_starts as usize,
            sloppy_quorum: self.config.node.keyspace.sloppy_quorum,
            settled: self.liveness_from.is_some_and(|from| self.now >= from),
            recovery: self.healed_at.zip(self.config.recovery_bound),
        };
        let views = self.membership_views();
        let expected_members = self.expected_members();
        self.stats.final_members = expected_members.clone();
        let topology = TopologyView {
            locations: (0..self.locations.len())
                .map(|index| (node_id(index), self.location(index)))
                .collect(),
            replicas_per_dc: self.config.node.keyspace.replicas_per_dc.clone(),
        };
        let input = CheckInput {
            history: &self.history,
            final_state: &final_state,
            views: &views,
            expected_members: &expected_members,
            topology: &topology,
            params,
        };
        let mut violations = std::mem::take(&mut self.violations);
        if self.config.run_checkers {
            violations.extend(check_all(input));
        }
        let mut outcomes = OutcomeCounts::default();
        for (_, op) in self.history.iter().filter(|(_, op)| !op.final_pass) {
            match op.outcome {
                OpOutcome::Ok { .. } | OpOutcome::Serial(_) => outcomes.ok += 1,
                OpOutcome::Failed(_) => outcomes.failed += 1,
                OpOutcome::Unknown(_) => outcomes.unknown += 1,
                OpOutcome::Pending => outcomes.pending += 1,
            }
        }
        self.stats.messages_dropped = self.network.dropped_count;
        self.stats.messages_duplicated = self.network.duplicated_count;
        Report {
            seed: self.config.seed,
            plan: self.plan,
            outcomes,
            events_processed: self.events_processed,
            simulated_time: self.now.saturating_since(Instant::ZERO),
            violations,
            trace_hash: self.trace.hash(),
            stats: self.stats,
            history: self.history,
            trace: self.trace.into_lines(),
            faults: self.faults,
        }
    }

    pub(super) fn membership_views(&mut self) -> Vec<NodeView> {
        let views = self.slots.iter_mut().enumerate().filter_map(|(index, slot)| {
            let node = slot.node.as_mut()?;
            let hints_count = node
                .storage_mut()
                .scan(Space::Hints, None, HINTS_SCANNED_MAX)
                .map_or(HINTS_SCANNED_MAX, |hints| hints.len());
            let members = node
                .membership()
                .iter()
                .map(|(id, state)| (*id, (state.generation, format!("{:?}", state.status))))
                .collect();
            let down =
                node.membership().keys().copied().filter(|peer| node.is_peer_down(*peer)).collect();
            Some(NodeView { node: node_id(index), members, down, hints_count })
        });
        views.collect()
    }

    /// The membership the schedule should end with: founding nodes plus joined ones, minus
    /// the decommissioned and removed.
    pub(super) fn expected_members(&self) -> Vec<NodeId> {
        (0..self.slots.len())
            .filter(|index| self.slots[*index].role == Role::Member)
            .map(node_id)
            .collect()
    }

    pub(super) fn collect_final_state(&mut self) -> FinalState {
        // The final owners: the ring of the expected membership (every node weighs 1), placed
        // by datacenter and rack as the nodes place it.
        let mut ring = Ring::new(self.node_config.vnodes_per_node);
        ring.set_replicas_per_dc(self.node_config.keyspace.replicas_per_dc.clone());
        for member in self.expected_members() {
            let index = member.0 as usize - 1;
            ring.add_at(member, 1, self.location(index));
        }
        let replicas_n = self.node_config.keyspace.replicas_n;
        let mode = self.node_config.keyspace.conflict_mode;
        let wall = NodeClock::default().wall(self.now);
        let keys: BTreeSet<Key> = self
            .history
            .iter()
            .filter(|(_, op)| op.final_pass)
            .filter_map(|(_, op)| match &op.request {
                OpRequest::Read { keys, .. } => keys.first().cloned(),
                OpRequest::Write { .. } | OpRequest::Cas { .. } | OpRequest::Flush { .. } => None,
            })
            .collect();
        for (index, slot) in self.slots.iter().enumerate() {
            if slot.role.is_active() && slot.node.is_none() {
                self.violations.push(Violation {
                    checker: "liveness",
                    message: format!("n{} is not running at the end of the run", index + 1),
                    ops: Vec::new(),
                });
            }
        }
        let mut state = FinalState::new();
        for key in keys {
            let owners = ring.preference_list(&key, replicas_n);
            let mut final_key = FinalKey {
                owners: owners.clone(),
                owners_expected: replicas_n.min(ring.members_count()),
                ..FinalKey::default()
            };
            for (index, slot) in self.slots.iter_mut().enumerate() {
                // A node that left keeps its disk, but the cluster no longer reads it.
                let Some(node) = slot.node.as_mut().filter(|_| slot.role.is_active()) else {
                    continue;
                };
                let copy = match node.local_object(&key) {
                    Ok(copy) => copy.unwrap_or_default(),
                    Err(error) => {
                        self.violations.push(Violation {
                            checker: "runner",
                            message: format!("n{} cannot read {key:?}: {error}", index + 1),
                            ops: Vec::new(),
                        });
                        continue;
                    }
                };
                final_key.merged.merge(&copy, mode);
                if owners.contains(&node_id(index)) {
                    if copy != ringkv_core::version::Versioned::default() {
                        *self.stats.final_copies_by_node.entry(node_id(index)).or_default() += 1;
                    }
                    final_key.replicas.push((node_id(index), copy));
                }
            }
            final_key.live = final_key.merged.live_values(wall);
            state.insert(key, final_key);
        }
        state
    }

    /// Adds `kind` to the fault log at the current instant.
    pub(super) fn note(&mut self, kind: FaultEventKind) {
        self.faults.push(FaultEvent { at: self.now, kind });
    }

    pub(super) fn schedule(&mut self, delay: Duration, event: Event<D::Work>) {
        let at = self.now + delay;
        self.schedule_at(at, event);
    }

    pub(super) fn schedule_at(&mut self, at: Instant, event: Event<D::Work>) {
        if !self.queue.schedule(at.max(self.now), event) {
            self.violations.push(Violation {
                checker: "runner",
                message: format!("the event queue is full ({} events)", self.queue.len()),
                ops: Vec::new(),
            });
        }
    }
}
