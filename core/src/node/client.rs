//! Client requests: admission, reads, writes and where a write goes (replicas, fallbacks, owners-to-be).
//!
//! Part of [`Node`](super::Node): an `impl` block of its own, split out of `node.rs` along
//! its seams; the state stays in `Node`.

use super::*;

impl<S: Storage> Node<S> {
    /// Checks limits before anything happens, so a refused request changes nothing.
    pub(super) fn admit(&self, op: &ClientRequest) -> Result<(), ClientError> {
        let limits = &self.config.limits;
        let in_flight = self.coordinator.in_flight() + self.paxos.in_flight();
        if in_flight >= limits.requests_in_flight_max {
            return Err(ClientError::Overloaded { in_flight, max: limits.requests_in_flight_max });
        }
        if !self.membership_synced {
            return Err(ClientError::NotReady);
        }
        let replicas_n =
            self.config.keyspace.replicas_n.min(self.membership.ring().members_count());
        match op {
            ClientRequest::Get { key, consistency }
            | ClientRequest::Delete { key, consistency, .. } => {
                limits.check_key(key)?;
                consistency.required(replicas_n)?;
            }
            ClientRequest::Put { key, value, consistency, .. }
            | ClientRequest::Set { key, value, consistency, .. } => {
                limits.check_key(key)?;
                limits.check_value(value)?;
                consistency.required(replicas_n)?;
            }
            ClientRequest::MGet { keys, consistency } => {
                limits.check_batch(keys.len())?;
                keys.iter().try_for_each(|key| limits.check_key(key))?;
                consistency.required(replicas_n)?;
            }
            // COUNT is a hint, as in Redis: a larger one is served at the batch limit.
            ClientRequest::Scan { .. } => {}
            ClientRequest::MSet { entries, consistency } => {
                limits.check_batch(entries.len())?;
                for (key, value) in entries {
                    limits.check_key(key)?;
                    limits.check_value(value)?;
                }
                consistency.required(replicas_n)?;
            }
            ClientRequest::Flush => {}
            ClientRequest::Cas { key, op } => {
                limits.check_key(key)?;
                let len_bytes = op.carried_value_bytes();
                if len_bytes > limits.value_bytes_max {
                    let max_bytes = limits.value_bytes_max;
                    return Err(ClientError::ValueTooLarge { len_bytes, max_bytes });
                }
            }
        }
        // A serial read writes too: its promises are acceptor state.
        let writes = op.is_write() || matches!(op, ClientRequest::Cas { .. });
        if writes && !self.is_ready() {
            return Err(match &self.storage_failure {
                Some(reason) => ClientError::Storage { reason: reason.clone() },
                None => ClientError::NotReady,
            });
        }
        Ok(())
    }

    /// The datacenter of `node`, as the ring (or, for a node still joining, the future ring)
    /// places it.
    pub(super) fn datacenter_of(&self, node: NodeId) -> &str {
        self.membership.datacenter_of(node)
    }

    /// The quorums a request at `consistency` needs over `replicas` (placement::quorums_for,
    /// with this node's datacenter as the local one).
    pub(super) fn quorums(
        &self,
        consistency: Consistency,
        replicas: &[NodeId],
    ) -> Result<Vec<Quorum>, ClientError> {
        quorums_for(consistency, replicas, |node| self.datacenter_of(node), &self.config.datacenter)
    }

    /// Who a read asks and which quorums their replies must reach.
    pub(super) fn read_quorums(
        &self,
        key: &[u8],
        consistency: Consistency,
    ) -> Result<(Vec<NodeId>, Vec<Quorum>), ClientError> {
        let replicas = self.membership.ring().preference_list(key, self.config.keyspace.replicas_n);
        let mut quorums = self.quorums(consistency, &replicas)?;
        if let Some(future) = self.membership.future_ring() {
            // While ranges move, a quorum of the replicas that own the key both before and
            // after the move meets every write quorum: writes of coordinators that know of the
            // move (a quorum of both sets), of those that do not yet (a quorum of the owners
            // before) and of those that already saw it complete (a quorum after). A node that
            // is gaining the range is left out: its copy may be incomplete until it joined.
            let after = future.preference_list(key, self.config.keyspace.replicas_n);
            let topology_blind = !consistency.is_local() && consistency != Consistency::EachQuorum;
            for quorum in &mut quorums {
                let stable: Vec<NodeId> =
                    quorum.nodes.iter().copied().filter(|node| after.contains(node)).collect();
                if stable.len() >= quorum.required {
                    quorum.nodes = stable;
                } else {
                    // Too few stay (a read at ALL): read every owner before and after (of the
                    // quorum's datacenters, for the levels that count by datacenter).
                    let datacenters: BTreeSet<&str> =
                        quorum.nodes.iter().map(|node| self.datacenter_of(*node)).collect();
                    let extra: Vec<NodeId> = after
                        .iter()
                        .copied()
                        .filter(|node| !quorum.nodes.contains(node))
                        .filter(|node| {
                            topology_blind
                                || datacenters.contains(future.location(*node).datacenter.as_str())
                        })
                        .collect();
                    quorum.nodes.extend(extra);
                    quorum.required = quorum.nodes.len();
                }
            }
        }
        let mut asked: Vec<NodeId> = Vec::new();
        for quorum in &quorums {
            let alive = quorum.nodes.iter().filter(|node| !self.is_down(**node)).count();
            if alive < quorum.required {
                return Err(ClientError::Unavailable { required: quorum.required, alive });
            }
            for node in &quorum.nodes {
                if !asked.contains(node) {
                    asked.push(*node);
                }
            }
        }
        Ok((asked, quorums))
    }

    pub(super) fn start_get(
        &mut self,
        now: Instant,
        key: Key,
        consistency: Consistency,
        reply_to: ReplyTo,
    ) {
        let (replicas, quorums) = match self.read_quorums(&key, consistency) {
            Ok(found) => found,
            Err(error) => return self.deliver(now, reply_to, Outcome::Failed(error)),
        };
        let spec = ReadSpec {
            key: key.clone(),
            repair_before_reply: consistency.repairs_before_reply(replicas.len()),
            replicas: replicas.clone(),
            quorums,
        };
        let op = self.coordinator.start_read(spec, reply_to, now + self.config.request_timeout);
        for replica in &replicas {
            if *replica != self.id {
                self.send(*replica, PeerMessage::Read { op, key: key.clone() });
            }
        }
        // A store being refilled does not count toward R: it may lack acknowledged writes; nor
        // does a range inherited from a removed node before it has been pulled in.
        let serves = self.refill.is_none() || crate::planted!(RebuildServesReads);
        if replicas.contains(&self.id) && serves && !self.is_inheriting(&key) {
            match self.replica.load(&mut self.storage, &key) {
                Ok(object) => {
                    let actions =
                        self.coordinator.on_read_reply(op, self.id, object.unwrap_or_default());
                    self.run_actions(now, actions);
                }
                // The remote replicas may still make up R; the deadline fails the read otherwise.
                Err(_) => self.counters.storage_errors += 1,
            }
        }
    }

    pub(super) fn start_put(
        &mut self,
        now: Instant,
        write: KeyWrite,
        consistency: Consistency,
        reply_to: ReplyTo,
    ) {
        let placement = match self.write_placement(&write.key, consistency) {
            Ok(placement) => placement,
            Err(error) => return self.deliver(now, reply_to, Outcome::Failed(error)),
        };
        // BUGGIFY: a replica may hand the write to another replica, to drive the forward path.
        let hand_off = crate::buggify!()
            && placement.replicas.iter().any(|node| *node != self.id && !self.is_down(*node));
        if placement.replicas.contains(&self.id) && !hand_off {
            return self.coordinate_write(now, write, placement, reply_to);
        }
        let (replicas, required) = (placement.replicas, placement.required);
        // Dots are minted from the coordinator's own copy of the key, so a write is handed to a
        // replica: the first one believed up, in this datacenter when one is (a local level
        // is then counted where the client is, and the hop stays off the WAN).
        let is_target = |node: &NodeId| *node != self.id && !self.is_down(*node);
        let local = |node: &NodeId| self.datacenter_of(*node) == self.config.datacenter;
        let local_target = replicas.iter().copied().filter(is_target).find(local);
        let any_target = || match consistency.is_local() {
            true => None,
            false => replicas.iter().copied().find(is_target),
        };
        let Some(target) = local_target.or_else(any_target) else {
            let error = ClientError::Unavailable { required, alive: 0 };
            return self.deliver(now, reply_to, Outcome::Failed(error));
        };
        let forward = self.coordinator.start_forward(reply_to, now + self.config.request_timeout);
        let KeyWrite { key, value, context, ttl, overwrite } = write;
        let request = match value {
            Some(value) if overwrite => ClientRequest::Set { key, value, ttl, consistency },
            Some(value) => ClientRequest::Put { key, value, context, ttl, consistency },
            None => ClientRequest::Delete { key, context, consistency },
        };
        self.send(target, PeerMessage::Forward { forward, request });
    }

    pub(super) fn coordinate_write(
        &mut self,
        now: Instant,
        write: KeyWrite,
        placement: WritePlacement,
        reply_to: ReplyTo,
    ) {
        let WritePlacement { replicas, counted, quorums, required, fallbacks } = placement;
        let KeyWrite { key, value, context, ttl, overwrite } = write;
        let timestamp = self.clock.tick(self.wall);
        let expire_at = ttl.map(|ttl| {
            WallTime::from_millis(self.wall.as_millis().saturating_add(ttl.as_millis()))
        });
        let context = context.map(|context| context.0).unwrap_or_default();
        let stored = self.replica.load(&mut self.storage, &key).map(Option::unwrap_or_default);
        let written = stored.and_then(|mut object| {
            let context = if overwrite { object.clock.clone() } else { context };
            let dot = object.update_above(
                &context,
                NewWrite { value, timestamp, expire_at },
                self.actor,
                self.config.keyspace.conflict_mode,
                self.dots_issued_max,
            );
            self.dots_issued_max = dot.counter;
            let seq = self.replica.write(&mut self.storage, &key, &object)?;
            Ok((object, seq))
        });
        let (object, seq) = match written {
            Ok(written) => written,
            Err(error) => return self.deliver(now, reply_to, Outcome::Failed(error.into())),
        };
        let deadline = now + self.config.request_timeout;
        let op = self.coordinator.start_write(
            counted,
            quorums,
            required,
            object.context(),
            reply_to,
            deadline,
        );
        if replicas.contains(&self.id) {
            self.replica.hold_ack(seq, AckTarget::Local(op));
        }
        let me = self.id;
        for replica in replicas.into_iter().filter(|node| *node != me) {
            self.send(replica, PeerMessage::Write { op, key: key.clone(), object: object.clone() });
        }
        // While a node joins or leaves, the owners-to-be receive every write too, and (with a
        // strict quorum) W of them must acknowledge it, so nothing written during the move is
        // missing from a quorum of the owners once ownership changes.
        let pending: Vec<NodeId> = match self.membership.future_ring() {
            Some(future) => {
                let current =
                    self.membership.ring().preference_list(&key, self.config.keyspace.replicas_n);
                future
                    .preference_list(&key, self.config.keyspace.replicas_n)
                    .into_iter()
                    .filter(|node| *node != me && !current.contains(node))
                    .collect()
            }
            None => Vec::new(),
        };
        for node in pending {
            self.send(node, PeerMessage::Write { op, key: key.clone(), object: object.clone() });
        }
        for (fallback, owner) in fallbacks {
            if fallback == me {
                if let Ok(seq) = self.store_hint(owner, &key, object.clone()) {
                    self.replica.hold_ack(seq, AckTarget::Local(op));
                }
            } else {
                self.send(
                    fallback,
                    PeerMessage::Hint { op, owner, key: key.clone(), object: object.clone() },
                );
            }
        }
    }

    /// Where a write goes: its replicas, a fallback for each replica believed down, and whose
    /// acknowledgements count toward W (fallbacks too under sloppy quorum, each in the quorum
    /// of the replica it stands in for).
    pub(super) fn write_placement(
        &self,
        key: &[u8],
        consistency: Consistency,
    ) -> Result<WritePlacement, ClientError> {
        let replicas = self.membership.ring().preference_list(key, self.config.keyspace.replicas_n);
        let mut quorums = self.quorums(consistency, &replicas)?;
        if crate::planted!(QuorumOffByOne) && quorums[0].required > 1 {
            quorums[0].required -= 1;
        }
        let down_owners: Vec<NodeId> =
            replicas.iter().copied().filter(|node| self.is_down(*node)).collect();
        let fallbacks: Vec<(NodeId, NodeId)> = if down_owners.is_empty() {
            Vec::new()
        } else {
            let beyond = self
                .membership
                .ring()
                .preference_order(key)
                .into_iter()
                .filter(|node| !replicas.contains(node));
            beyond.filter(|node| !self.is_down(*node)).zip(down_owners.iter().copied()).collect()
        };
        let counted = if self.config.keyspace.sloppy_quorum {
            for (fallback, owner) in &fallbacks {
                for quorum in quorums.iter_mut().filter(|quorum| quorum.nodes.contains(owner)) {
                    quorum.nodes.push(*fallback);
                }
            }
            replicas
                .iter()
                .copied()
                .chain(fallbacks.iter().map(|(fallback, _)| *fallback))
                .collect()
        } else {
            replicas.clone()
        };
        for quorum in &quorums {
            let alive = quorum.nodes.iter().filter(|node| !self.is_down(**node)).count();
            if alive < quorum.required {
                return Err(ClientError::Unavailable { required: quorum.required, alive });
            }
        }
        let required = quorums.iter().map(|quorum| quorum.required).sum();
        if let (Some(ring), false) =
            (self.membership.future_ring(), self.config.keyspace.sloppy_quorum)
        {
            let owners = ring.preference_list(key, self.config.keyspace.replicas_n);
            for quorum in self.quorums(consistency, &owners)? {
                let alive = quorum.nodes.iter().filter(|node| !self.is_down(**node)).count();
                if alive < quorum.required {
                    return Err(ClientError::Unavailable { required: quorum.required, alive });
                }
                quorums.push(quorum);
            }
        }
        Ok(WritePlacement { replicas, counted, quorums, required, fallbacks })
    }
}

impl<S: Storage> Node<S> {
    pub(super) fn handle_client(&mut self, now: Instant, request: RequestId, op: ClientRequest) {
        if let Err(error) = self.admit(&op) {
            self.reply(request, Err(error));
            return;
        }
        let reply_to = ReplyTo::Client(request);
        match op {
            ClientRequest::Get { key, consistency } => {
                self.start_get(now, key, consistency, reply_to)
            }
            ClientRequest::Put { key, value, context, ttl, consistency } => {
                let write = KeyWrite { key, value: Some(value), context, ttl, overwrite: false };
                self.start_put(now, write, consistency, reply_to)
            }
            ClientRequest::Set { key, value, ttl, consistency } => {
                let write =
                    KeyWrite { key, value: Some(value), context: None, ttl, overwrite: true };
                self.start_put(now, write, consistency, reply_to)
            }
            ClientRequest::Delete { key, context, consistency } => {
                let write = KeyWrite { key, value: None, context, ttl: None, overwrite: false };
                self.start_put(now, write, consistency, reply_to)
            }
            ClientRequest::Scan { cursor, count } => self.start_scan(now, cursor, count, reply_to),
            ClientRequest::MGet { keys, consistency } => {
                let batch = self.coordinator.start_batch(request, keys.len());
                for (index, key) in keys.into_iter().enumerate() {
                    self.start_get(now, key, consistency, ReplyTo::Batch { batch, index });
                }
            }
            ClientRequest::MSet { entries, consistency } => {
                let batch = self.coordinator.start_batch(request, entries.len());
                for (index, (key, value)) in entries.into_iter().enumerate() {
                    let write = KeyWrite {
                        key,
                        value: Some(value),
                        context: None,
                        ttl: None,
                        overwrite: true,
                    };
                    self.start_put(now, write, consistency, ReplyTo::Batch { batch, index });
                }
            }
            ClientRequest::Cas { key, op } => self.start_cas(now, request, key, op),
            ClientRequest::Flush => self.start_flush(now, reply_to),
        }
    }
}
