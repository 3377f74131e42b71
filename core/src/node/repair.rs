//! Anti-entropy exchanges (Merkle trees per replica group, narrowed to slices), the refill of a rebuilt store, and the objects they send.
//!
//! Part of [`Node`](super::Node): an `impl` block of its own, split out of `node.rs` along
//! its seams; the state stays in `Node`.

use super::*;

impl<S: Storage> Node<S> {
    /// Starts exchanges of the next slice of a replica group with each of its other replicas
    /// that is up; returns whether that ended the group's cycle (the timer then waits a whole
    /// interval, else only the pause between slices).
    pub(super) fn start_anti_entropy(&mut self) -> bool {
        let groups = groups_of(self.membership.ring(), self.id, self.config.keyspace.replicas_n);
        let Some((group, low)) = self.anti_entropy.next_slice(&groups) else { return true };
        let peers: Vec<NodeId> =
            group.iter().copied().filter(|peer| *peer != self.id && !self.is_down(*peer)).collect();
        let high = if peers.is_empty() {
            // Nobody to compare with: the group's cycle is skipped.
            Token::MAX
        } else {
            // A failed read ends the cycle; the next one starts over.
            self.send_trees(&group, low, peers).unwrap_or(Token::MAX)
        };
        self.anti_entropy.sent_slice(&group, high)
    }

    /// Step 1: opens an exchange of the slice of `group` from `low` with each of `peers` by
    /// sending it this node's tree, and returns the slice's last token. `None` (and a storage
    /// error counted) when the group's entries cannot be read.
    pub(super) fn send_trees(
        &mut self,
        group: &Group,
        low: Token,
        peers: Vec<NodeId>,
    ) -> Option<Token> {
        let budget = self.config.anti_entropy_slice_keys.max(1);
        let Ok((entries, high, _)) = self.slice_entries(group, low, Token::MAX, budget) else {
            self.counters.storage_errors += 1;
            return None;
        };
        let tree = Tree::from_entries(&entries);
        let entries = GroupEntries::new(entries);
        for peer in peers {
            let session = self.anti_entropy.start(
                group.clone(),
                peer,
                (low, high),
                self.wall,
                entries.clone(),
            );
            self.counters.repair_exchanges += 1;
            self.send(
                peer,
                PeerMessage::AeTree {
                    session,
                    group: group.clone(),
                    low,
                    high,
                    root: tree.root(),
                    leaves: tree.leaves.clone(),
                },
            );
        }
        Some(high)
    }

    /// Step 2: answer a tree with the digests of the leaves that differ, or with a narrower
    /// slice when this node holds too many keys in this one to read at once.
    pub(super) fn answer_tree(
        &mut self,
        from: NodeId,
        session: u64,
        group: Group,
        slice: (Token, Token),
        tree: (u64, Vec<u64>),
    ) {
        let ((low, high), (root, leaves)) = (slice, tree);
        if !group.contains(&self.id)
            || !group.contains(&from)
            || group.len() > self.membership.ring().members_count()
            || low > high
        {
            self.counters.peer_messages_dropped += 1;
            return;
        }
        let budget = self.config.anti_entropy_slice_keys.max(1).saturating_mul(2);
        let Ok((entries, read_to, cut)) = self.slice_entries(&group, low, high, budget) else {
            return self.counters.storage_errors += 1;
        };
        if cut {
            self.send(from, PeerMessage::AeNarrow { session, high: read_to });
            return;
        }
        let tree = Tree::from_entries(&entries);
        let differing =
            if tree.root() == root { Vec::new() } else { tree.differing_leaves(&leaves) };
        let wanted: std::collections::BTreeSet<u32> = differing.iter().copied().collect();
        let mut digests: Vec<(Bytes, u64)> = entries
            .into_iter()
            .filter(|(key, _)| wanted.contains(&(leaf_of(key) as u32)))
            .collect();
        let truncated = digests.len() > self.config.anti_entropy_keys_max;
        digests.truncate(self.config.anti_entropy_keys_max);
        self.counters.repair_keys_compared += digests.len() as u64;
        self.send(from, PeerMessage::AeDigests { session, leaves: differing, digests, truncated });
    }

    /// Step 2 answered with a narrower slice: send the tree of the slice cut there.
    pub(super) fn narrow_tree(&mut self, from: NodeId, session: u64, high: Token) {
        let Some(narrowed) = self.anti_entropy.narrow(session, from, high) else {
            return self.counters.peer_messages_dropped += 1;
        };
        self.counters.repair_slices_narrowed += 1;
        let tree = Tree::from_entries(narrowed.entries.iter());
        self.send(
            from,
            PeerMessage::AeTree {
                session,
                group: narrowed.group,
                low: narrowed.low,
                high: narrowed.high,
                root: tree.root(),
                leaves: tree.leaves,
            },
        );
    }

    /// Step 3: push what the peer lacks, fetch what this node lacks.
    pub(super) fn reconcile(
        &mut self,
        from: NodeId,
        session: u64,
        leaves: Vec<u32>,
        digests: Vec<(Bytes, u64)>,
        truncated: bool,
    ) {
        // Against the entries the tree was built from: reading the group again cost as much as
        // building it, in the same step of the node.
        let Some(open) = self.anti_entropy.session(session, from) else { return };
        let (entries, first_slice) = (open.entries.clone(), open.low == 0);
        let leaves: std::collections::BTreeSet<u32> = leaves.into_iter().collect();
        let mine: BTreeMap<Bytes, u64> = entries
            .iter()
            .filter(|(key, _)| leaves.contains(&(leaf_of(key) as u32)))
            .cloned()
            .collect();
        let theirs: BTreeMap<Bytes, u64> =
            digests.into_iter().take(self.config.anti_entropy_keys_max).collect();
        let limit = self.config.anti_entropy_keys_max;
        let push: Vec<Bytes> = mine
            .iter()
            .filter(|(key, hash)| theirs.get(*key) != Some(hash))
            .map(|(key, _)| key.clone())
            .take(limit)
            .collect();
        let fetch: Vec<Bytes> = theirs
            .iter()
            .filter(|(key, hash)| mine.get(*key) != Some(hash))
            .map(|(key, _)| key.clone())
            .take(limit)
            .collect();
        self.counters.repair_keys_compared += (mine.len() + theirs.len()) as u64;
        let complete =
            !truncated && mine.len() <= limit && push.len() < limit && fetch.len() < limit;
        if !push.is_empty() {
            self.send_objects(from, push);
        }
        let fetch_keys = if self.refill.is_some() { fetch.clone() } else { Vec::new() };
        if !fetch.is_empty() {
            self.send(from, PeerMessage::AeFetch { keys: fetch });
        }
        if !complete {
            return;
        }
        let Some((group, _, cycle_done)) = self.anti_entropy.complete(session) else { return };
        if let Some(refill) = self.refill.as_mut() {
            let outcome =
                refill.slice_done((group.clone(), from), first_slice, fetch_keys, cycle_done);
            if outcome == SliceOutcome::NextSlice {
                let peer = from;
                let low = self.anti_entropy.cycle_next_low(&group, peer);
                if low != 0 {
                    let _ = self.send_trees(&group, low, vec![peer]);
                }
            }
            self.finish_refill();
        }
    }

    /// While rebuilding: starts an exchange of the next slice for every (group, peer) pair that
    /// has not refilled this node yet and is up; finishes the rebuild when none is left.
    pub(super) fn start_refill(&mut self) {
        let Some(refill) = self.refill.as_ref() else { return };
        let groups = groups_of(self.membership.ring(), self.id, self.config.keyspace.replicas_n);
        let wanted = refill.wanted(&groups, self.id, |peer| self.is_down(peer));
        self.finish_refill();
        for (group, peer) in wanted {
            // Each pair goes on from its own cycle: a blank node's slices are cheap to read.
            let low = self.anti_entropy.cycle_next_low(&group, peer);
            if self.send_trees(&group, low, vec![peer]).is_none() {
                return;
            }
        }
    }

    /// While rebuilding: objects fetched from `from` arrived and were merged.
    pub(super) fn refill_arrived(&mut self, from: NodeId, merged: &BTreeSet<Bytes>) {
        let Some(refill) = self.refill.as_mut() else { return };
        refill.arrived(from, merged);
        self.finish_refill();
    }

    /// Ends the rebuild once every other replica of every group this node belongs to has
    /// refilled it: between them they hold every acknowledged write (W + R > N), so the node
    /// may answer reads again. The mark is removed after the refilled objects in write order, so
    /// a crash that loses them keeps the node rebuilding.
    pub(super) fn finish_refill(&mut self) {
        let Some(refill) = self.refill.as_ref() else { return };
        let groups = groups_of(self.membership.ring(), self.id, self.config.keyspace.replicas_n);
        if !refill.is_complete(&groups, self.id) {
            return;
        }
        let unmarked =
            self.storage.write(Space::Meta, Bytes::from_static(META_REBUILDING_KEY), None);
        if let Ok(seq) = unmarked {
            self.refill = None;
            self.anti_entropy.forget_repairs();
            // Synced soon (after_handler asks for it), with every refilled object before it.
            self.rebuilt_at_seq = Some(seq);
            self.counters.rebuilds_completed += 1;
            self.next_anti_entropy = self.now + self.config.anti_entropy_interval;
        }
    }

    /// Persists our gossip generation when gossip moved it (a peer knew a later one of ours).
    pub(super) fn store_generation(&mut self) {
        let generation = self.membership.gossip().mine().generation;
        if generation > self.generation_stored {
            let written = self.storage.write(
                Space::Meta,
                Bytes::from_static(META_GENERATION_KEY),
                Some(Bytes::copy_from_slice(&generation.to_le_bytes())),
            );
            if written.is_ok() {
                self.generation_stored = generation;
            }
        }
    }

    pub(super) fn send_objects(&mut self, to: NodeId, keys: Vec<Bytes>) {
        let mut objects = Vec::new();
        for key in keys.into_iter().take(self.config.anti_entropy_keys_max) {
            if let Ok(Some(object)) = self.replica.load(&mut self.storage, &key) {
                objects.push((key, object));
            }
        }
        self.counters.repair_keys_streamed += objects.len() as u64;
        if !objects.is_empty() {
            self.send(to, PeerMessage::AeObjects { objects });
        }
    }

    /// The keys of a replica group on this node with tokens from `low` to at most `high`, with
    /// their entry hashes, in token order: up to `budget` keys and every key sharing the last
    /// one's token. Returns them with the last token covered (`high` when the keys ran out
    /// first) and whether keys were left out. Only the group's arcs are read.
    pub(super) fn slice_entries(
        &mut self,
        group: &Group,
        low: Token,
        high: Token,
        budget: usize,
    ) -> Result<SliceRead, StorageError> {
        let mut intervals: Vec<(Token, Token)> = self
            .membership
            .ring()
            .ranges(self.config.keyspace.replicas_n)
            .into_iter()
            .filter(|range| {
                let mut replicas = range.after.clone();
                replicas.sort();
                replicas == *group
            })
            .flat_map(|range| token_intervals(range.start_exclusive, range.end_inclusive))
            .filter(|&(start, end)| start <= high && end >= low)
            .map(|(start, end)| (start.max(low), end.min(high)))
            .collect();
        intervals.sort_unstable();
        let mut entries = Vec::new();
        let mut buffer = Vec::new();
        // Once the budget is reached: the token to finish, and whether a later key was seen.
        let mut last_token: Option<Token> = None;
        let mut cut = false;
        for (start, end) in intervals {
            visit_data(&mut self.storage, start, end, |token, key, bytes| {
                if last_token.is_some_and(|last| token != last) {
                    cut = true;
                    return false;
                }
                entries.push((key.clone(), entry_hash(&mut buffer, &key, &bytes)));
                if entries.len() >= budget && last_token.is_none() {
                    last_token = Some(token);
                }
                true
            })?;
            if cut {
                break;
            }
        }
        let covered = match last_token {
            Some(last) if cut => last,
            _ => high,
        };
        Ok((entries, covered, cut))
    }
}
