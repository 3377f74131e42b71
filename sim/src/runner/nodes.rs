//! Starting, crashing, restarting and restoring nodes; the supervisor; disks; status broadcasts.
//!
//! Part of [`Runner`](super::Runner): an `impl` block of its own, split out of `runner.rs`
//! along its seams; the state stays in `Runner`.

use super::*;

impl<D: SimDisk> Runner<D> {
    pub(super) fn feed(&mut self, index: usize, input: Option<Input>) {
        let wall = self.clocks[index].wall(self.now);
        let now = self.now;
        let Some(node) = self.slots[index].node.as_mut() else {
            return;
        };
        node.set_wall_clock(wall);
        match input {
            Some(input) => node.handle(now, input),
            None => node.handle_timeout(now),
        }
        self.drain(index);
    }

    pub(super) fn drain(&mut self, index: usize) {
        let mut drained = 0;
        while let Some(output) = self.slots[index].node.as_mut().and_then(|node| node.poll_output())
        {
            drained += 1;
            if drained > OUTPUTS_PER_DRAIN_MAX {
                self.violations.push(Violation {
                    checker: "runner",
                    message: format!(
                        "n{} produced over {OUTPUTS_PER_DRAIN_MAX} outputs",
                        index + 1
                    ),
                    ops: Vec::new(),
                });
                break;
            }
            match output {
                Output::Send { to, message } => self.send(index, to, message),
                Output::Reply { request, result } => {
                    let op = request as OpIndex;
                    self.client_reply(op, result);
                }
                Output::SyncStorage => {
                    // The work is taken now, so it covers only what was written so far; it
                    // completes after the disk's latency, unless a crash comes first.
                    let work = self.slots[index]
                        .node
                        .as_mut()
                        .and_then(|node| node.storage_mut().poll_work());
                    self.schedule_disk_work(index, work);
                }
                _ => {}
            }
        }
        self.supervise(index);
        let slot = &mut self.slots[index];
        let Some(wake) = slot.node.as_ref().and_then(|node| node.poll_timeout()) else {
            return;
        };
        let wake = wake.max(self.now);
        if slot.timer_at != Some(wake) {
            slot.timer_at = Some(wake);
            let incarnation = slot.incarnation;
            self.schedule_at(wake, Event::Timer { node: index, incarnation });
        }
    }

    pub(super) fn send(&mut self, from: usize, to: NodeId, message: PeerMessage) {
        self.stats.messages_sent += 1;
        let Some(to) = node_index(to, self.slots.len()) else {
            self.stats.messages_dropped += 1;
            return;
        };
        let [first, second] = self.network.route(self.now, from, to);
        let message = Box::new(message);
        match (first, second) {
            (Some(first), Some(second)) => {
                self.schedule_at(first, Event::Deliver { from, to, message: message.clone() });
                self.schedule_at(second, Event::Deliver { from, to, message });
            }
            (Some(first), None) => self.schedule_at(first, Event::Deliver { from, to, message }),
            _ => {}
        }
        self.stats.messages_dropped = self.network.dropped_count;
        self.stats.messages_duplicated = self.network.duplicated_count;
    }

    pub(super) fn schedule_disk_work(&mut self, index: usize, work: Option<D::Work>) {
        let disk = self.config.disk;
        let jitter_ns = disk.sync_latency_jitter.as_nanos();
        let jitter = self.disk_rng.random_range(0..=jitter_ns);
        let delay = disk.sync_latency_base + Duration::from_nanos(jitter);
        let incarnation = self.slots[index].incarnation;
        self.schedule(delay, Event::SyncDone { node: index, incarnation, work });
    }

    pub(super) fn sync_done(&mut self, index: usize, incarnation: u32, work: Option<D::Work>) {
        let slot = &mut self.slots[index];
        if slot.incarnation != incarnation {
            return;
        }
        let Some(node) = slot.node.as_mut() else {
            return;
        };
        self.stats.syncs += 1;
        let storage = node.storage_mut();
        let finished = match work {
            Some(work) => storage.finish_work(work.run()),
            None => Ok(storage.durable_seq()),
        };
        let input = match finished {
            Ok(_) => Input::StorageSynced,
            Err(error) => {
                self.stats.sync_failures += 1;
                Input::StorageFailed { reason: error.0 }
            }
        };
        let failed = matches!(input, Input::StorageFailed { .. });
        self.trace.record(self.now, Some(index), 5, u64::from(failed), || {
            format!("sync {}", if failed { "FAILED" } else { "done" })
        });
        self.feed(index, Some(input));
        // Flushes and compactions follow as their own disk events, one at a time.
        let background =
            self.slots[index].node.as_mut().and_then(|node| node.storage_mut().poll_background());
        if background.is_some() {
            self.schedule_disk_work(index, background);
        }
    }

    /// Builds a node on its disk; with `announce_down`, tells it which peers are down now.
    pub(super) fn start(&mut self, index: usize, announce_down: bool) {
        let slot = &mut self.slots[index];
        let Some(mut disk) = slot.disk.take() else {
            return;
        };
        if !disk.recover() {
            // Recovery hit an I/O error: the data stays where it is and the start is retried.
            slot.disk = Some(disk);
            return self.retry_start(index, "recovery failed");
        }
        let spare = disk.spare();
        let seed = child_seed(
            self.config.seed,
            "node",
            ((index as u64) << 32) | u64::from(slot.incarnation),
        );
        self.stats.node_starts += 1;
        slot.supervised = false;
        let mut config = self.node_config.clone();
        config.join = slot.join;
        if let Some(spot) = self.locations.get(index) {
            config.datacenter = spot.location.datacenter.clone();
            config.rack = spot.location.rack.clone();
        }
        match Node::new(config, node_id(index), seed, self.now, disk) {
            Ok(node) => {
                self.stats.rebuilding_starts += u64::from(node.is_rebuilding());
                if node.is_rebuilding() && self.damaged.is_some_and(|(damaged, _)| damaged == index)
                {
                    self.damaged = Some((index, true));
                }
                slot.node = Some(node);
                self.faults.push(FaultEvent {
                    at: self.now,
                    kind: FaultEventKind::Up { node: node_id(index) },
                });
            }
            Err(error) => match spare {
                Some(spare) => {
                    // A new incarnation, so the retry draws a fresh seed.
                    slot.disk = Some(spare);
                    slot.incarnation += 1;
                    return self.retry_start(index, &error.0);
                }
                None => {
                    self.violations.push(Violation {
                        checker: "runner",
                        message: format!("n{} failed to start: {error}", index + 1),
                        ops: Vec::new(),
                    });
                    return;
                }
            },
        }
        let rebuilding = slot.node.as_mut().filter(|node| node.is_rebuilding()).map(|node| {
            let why =
                node.storage_mut().get(Space::Meta, ringkv_core::storage::META_REBUILDING_KEY);
            why.ok().flatten().map(|why| String::from_utf8_lossy(&why).into_owned())
        });
        self.trace.record(self.now, Some(index), 6, u64::from(slot.incarnation), || {
            match &rebuilding {
                Some(why) => {
                    format!("started, store being rebuilt: {}", why.as_deref().unwrap_or("?"))
                }
                None => "started".into(),
            }
        });
        self.drain(index);
        let down: Vec<usize> = (0..self.slots.len())
            .filter(|other| {
                announce_down
                    && *other != index
                    && self.slots[*other].node.is_none()
                    && self.slots[*other].role != Role::Absent
            })
            .collect();
        for other in down {
            self.feed(index, Some(Input::PeerStatus { node: node_id(other), up: false }));
        }
        self.schedule(self.config.failure_detection_delay, Event::StatusBroadcast { about: index });
    }

    /// Schedules another start of a node whose start failed on an I/O error.
    pub(super) fn retry_start(&mut self, index: usize, why: &str) {
        self.stats.start_retries += 1;
        self.trace.record(self.now, Some(index), 19, 0, || format!("start failed: {why}"));
        self.schedule(START_RETRY_DELAY, Event::RetryStart { node: index });
    }

    /// The supervisor: a running node whose disk reports a failure is restarted after a delay
    /// (a disk replaced by `ReplaceDisk` is left to that).
    pub(super) fn supervise(&mut self, index: usize) {
        let refilled = self.slots[index].node.as_ref().is_some_and(|node| !node.is_rebuilding());
        if refilled && self.damaged == Some((index, true)) {
            self.damaged = None;
        }
        let slot = &mut self.slots[index];
        if slot.supervised || slot.disk_failing {
            return;
        }
        let Some(reason) = slot.node.as_ref().and_then(|node| node.storage().failure()) else {
            return;
        };
        slot.supervised = true;
        let incarnation = slot.incarnation;
        let delay_ms = self.supervisor_rng.random_range(SUPERVISOR_DELAY_MS);
        self.trace.record(self.now, Some(index), 20, delay_ms, || {
            format!("disk failure, restart in {delay_ms} ms: {reason}")
        });
        self.schedule(
            Duration::from_millis(delay_ms),
            Event::Supervise { node: index, incarnation },
        );
    }

    /// Stops node `index` as a crash would; `cause` is for the fault log.
    pub(super) fn crash(&mut self, index: usize, cause: &'static str) {
        let slot = &mut self.slots[index];
        let Some(node) = slot.node.take() else {
            return;
        };
        self.faults.push(FaultEvent {
            at: self.now,
            kind: FaultEventKind::Down { node: node_id(index), cause },
        });
        let mut disk = node.into_storage();
        disk.crash();
        slot.disk = Some(disk);
        slot.incarnation += 1;
        slot.timer_at = None;
        self.stats.crashes += 1;
        self.trace.record(self.now, Some(index), 7, 0, || "CRASH".into());
        self.schedule(self.config.failure_detection_delay, Event::StatusBroadcast { about: index });
    }

    /// Stops a node cleanly: it marks the shutdown, the driver syncs everything, then the node
    /// is dropped. A failed sync makes it an unclean stop, as on a real machine.
    pub(super) fn clean_stop(&mut self, index: usize) {
        if let Some(node) = self.slots[index].node.as_mut() {
            let clean = node.shutdown().and_then(|()| node.storage_mut().sync());
            self.stats.clean_restarts += u64::from(clean.is_ok());
            self.trace.record(self.now, Some(index), 18, u64::from(clean.is_ok()), || {
                format!("clean shutdown: {clean:?}")
            });
        }
        self.crash(index, "clean stop");
    }

    /// Replaces a failing disk: it stops failing, then the node restarts on it (a failed sync
    /// poisons the storage until it is reopened), whether it was running or had crashed.
    pub(super) fn replace_disk(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        if !slot.disk_failing {
            return;
        }
        slot.disk_failing = false;
        self.faults.push(FaultEvent {
            at: self.now,
            kind: FaultEventKind::DiskReplaced { node: node_id(index) },
        });
        let slot = &mut self.slots[index];
        match (slot.node.as_mut(), slot.disk.as_mut()) {
            (Some(node), _) => node.storage_mut().set_failing(false),
            (None, Some(disk)) => disk.set_failing(false),
            (None, None) => {}
        }
        let restart = !slot.held_down && slot.role.is_active();
        if slot.node.is_some() {
            self.crash(index, "disk replaced");
        }
        if restart {
            self.start(index, true);
        }
    }

    /// Stops node `index` and puts the snapshot its slot holds in place of its disk, prepared
    /// as `ringkv restore` prepares one (a new epoch, refilled before it serves); the node
    /// starts on it after `restart_ms`. Dropped after the safety phase, for a node that left,
    /// or on a failing disk (its replacement restarts it).
    pub(super) fn restore_snapshot(&mut self, index: usize, restart_ms: u64) {
        let Some((taken_at, mut snapshot)) = self.slots[index].snapshot.take() else {
            return;
        };
        let slot = &self.slots[index];
        if self.phase != Phase::Safety || !slot.role.is_active() || slot.disk_failing {
            return;
        }
        self.crash(index, "restore");
        let prepared = if snapshot.recover() {
            ringkv_core::restore::prepare_restored(&mut snapshot, "sim").map_err(|error| error.0)
        } else {
            Err("the snapshot does not open".to_string())
        };
        if let Err(why) = prepared {
            // The node restarts on its own disk, as an operator's failed restore leaves it.
            self.trace.record(self.now, Some(index), 24, 0, || format!("restore failed: {why}"));
        } else {
            self.stats.restores += 1;
            self.slots[index].disk = Some(snapshot);
            self.trace.record(self.now, Some(index), 24, 1, || {
                format!("store replaced by the snapshot taken at {taken_at}")
            });
            self.note(FaultEventKind::Restored { node: node_id(index), taken_at });
        }
        if !self.slots[index].held_down {
            self.schedule(Duration::from_millis(restart_ms), Event::Restart { node: index });
        }
    }

    /// Tells every running node whether `about` is up, as a failure detector would.
    pub(super) fn broadcast_status(&mut self, about: usize) {
        let up = self.slots[about].node.is_some();
        self.trace.record(self.now, Some(about), 8, u64::from(up), || {
            format!("detector: {}", if up { "up" } else { "down" })
        });
        for other in (0..self.slots.len()).filter(|other| *other != about) {
            self.feed(other, Some(Input::PeerStatus { node: node_id(about), up }));
        }
    }
}
