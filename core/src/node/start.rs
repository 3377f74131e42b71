//! Starting a node: recovering its epoch, generation, flush mark and membership status from
//! storage, and building its sub-machines with seeds of their own.
//!
//! Part of [`Node`](super::Node): an `impl` block of its own, split out of `node/mod.rs` so that
//! the module keeps only the composer (state, `handle`, `handle_timeout`, outputs, timers).

use super::*;

impl<S: Storage> Node<S> {
    /// Starts a node on `storage`, recovering its epoch from it. `seed` drives every random
    /// choice the node makes, and must differ at every start of the node: a node whose disk was
    /// lost draws its new epoch from it, and a repeated seed would repeat an old epoch and reuse
    /// its dots. (The simulator derives it from the run's seed and the start count; the real
    /// driver draws it from the operating system.)
    pub fn new(
        config: NodeConfig,
        id: NodeId,
        seed: u64,
        now: Instant,
        mut storage: S,
    ) -> Result<Self, StorageError> {
        assert!(config.keyspace.replicas_n >= 1, "a keyspace needs at least one replica");
        assert!(
            config.keyspace.replicas_per_dc.is_empty()
                || config.keyspace.replicas_per_dc.values().sum::<usize>()
                    == config.keyspace.replicas_n,
            "replicas_n must be the sum of replicas_per_dc"
        );
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        order_data_by_token(&mut storage)?;
        let (epoch, epoch_kept) = recover_epoch(&mut storage, &mut rng)?;
        let dots_issued_max = if epoch_kept {
            storage
                .get(Space::Meta, META_DOTS_ISSUED_KEY)?
                .as_deref()
                .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
                .map_or(0, u64::from_le_bytes)
        } else {
            0
        };
        let generation = next_generation(&mut storage)?;
        let truncated_at = storage
            .get(Space::Meta, META_TRUNCATED_AT_KEY)?
            .as_deref()
            .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
            .map(|bytes| HlcTimestamp(u64::from_le_bytes(bytes)));
        let recorded_status = storage.get(Space::Meta, META_STATUS_KEY)?;
        // Without anti-entropy nothing would refill a rebuilt store; it then serves as it is.
        let rebuilding = storage.get(Space::Meta, META_REBUILDING_KEY)?.is_some()
            && config.anti_entropy_interval > Duration::ZERO;
        storage.write(
            Space::Meta,
            Bytes::from_static(META_EPOCH_KEY),
            Some(Bytes::copy_from_slice(&epoch.to_le_bytes())),
        )?;
        let ready_seq = storage.write(Space::Meta, Bytes::from_static(META_CLEAN_KEY), None)?;
        let request_timeout = config.request_timeout;
        let hint_replay_interval = config.hint_replay_interval;
        let anti_entropy_interval = config.anti_entropy_interval;
        let mut gossip = start_gossip(&config, id, generation, child_seed(seed, b"gossip"), now);
        match recorded_status.as_deref() {
            Some(b"joined") => gossip.set_status(MemberStatus::Normal),
            Some(b"left") => gossip.set_status(MemberStatus::Left),
            _ => {}
        }
        let membership_synced = !config.join && generation == 1;
        let placement = Placement {
            vnodes_per_node: config.vnodes_per_node,
            replicas_per_dc: config.keyspace.replicas_per_dc.clone(),
            locations: config.locations.clone(),
            own: Location::new(config.datacenter.clone(), config.rack.clone()),
        };
        let membership = Membership::new(id, placement, gossip, config.detector, &config.members);
        let id_bases = [id_base(&mut rng), id_base(&mut rng), id_base(&mut rng), id_base(&mut rng)];
        let replica = Replica::new(&config, seed, truncated_at, ready_seq);
        let mut node = Node {
            id,
            replica,
            coordinator: Coordinator::starting_at(config.keyspace.conflict_mode, id_bases[0]),
            // Seeds of their own (not draws from `rng`), so that nodes which never see a
            // serial operation make exactly the random choices they made before Paxos existed.
            paxos: Proposer::new(
                id,
                generation,
                config.paxos,
                child_seed(seed, b"paxos"),
                child_seed(seed, b"paxos-ops"),
            ),
            next_sweep: now + config.sweep_interval,
            config,
            membership,
            storage,
            actor: Actor { node: id, epoch },
            dots_issued_max,
            ready_at_seq: Some(ready_seq),
            storage_failure: None,
            refill: rebuilding.then(Refill::default),
            rebuilt_at_seq: None,
            generation_stored: generation,
            // A restarted node stamps its writes after the last flush it applied, whatever its
            // wall clock says, or the flushed replicas would take them for older.
            clock: truncated_at.map_or_else(HybridClock::new, |at| {
                let mut clock = HybridClock::new();
                clock.observe(at);
                clock
            }),
            wall: WallTime::default(),
            now,
            down: BTreeSet::new(),
            replays: Replays::starting_at(id_bases[1]),
            anti_entropy: AntiEntropy::new(ANTI_ENTROPY_SESSIONS_MAX, id_bases[2]),
            streams: Streams::starting_at(id_bases[3]),
            join_planned: false,
            leave_planned: false,
            membership_synced,
            rebuilds: BTreeMap::new(),
            next_anti_entropy: now
                + if rebuilding {
                    anti_entropy_interval.min(REFILL_INTERVAL)
                } else {
                    anti_entropy_interval
                },
            next_hint_tick: now + hint_replay_interval,
            hint_cursor: None,
            // A seed of its own, so that the draws from `rng` stay what they were.
            flushes: Flushes::starting_at(child_seed(seed, b"flushes") >> 2),
            held_down: BTreeMap::new(),
            // A duplicate arriving after a few request timeouts finds its forwarder long done.
            forwards: ForwardLog::new(request_timeout * 4, FORWARDS_REMEMBERED_MAX),
            sync_requested: false,
            outbox: VecDeque::new(),
            sweep_cursor: None,
            counters: NodeCounters::default(),
            last_timeout_reason: None,
        };
        if !node.membership_synced {
            // Ask every known peer at once rather than at the first round, so a restarted node
            // is back to coordinating one round trip after it started.
            let peers: Vec<NodeId> = node.membership.members().keys().copied().collect();
            for peer in peers {
                node.membership.announce_to(peer);
            }
            node.send_gossip();
        }
        node.after_handler();
        Ok(node)
    }
}

/// Reads the gossip generation, bumps it and writes it back (durable before the node is ready,
/// with the epoch record): every start is a new generation, so peers tell it from its old self.
fn next_generation<S: Storage>(storage: &mut S) -> Result<u64, StorageError> {
    let stored = storage.get(Space::Meta, META_GENERATION_KEY)?;
    let previous = stored
        .as_deref()
        .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
        .map_or(0, u64::from_le_bytes);
    let generation = previous + 1;
    storage.write(
        Space::Meta,
        Bytes::from_static(META_GENERATION_KEY),
        Some(Bytes::copy_from_slice(&generation.to_le_bytes())),
    )?;
    Ok(generation)
}

/// Gossip for a node starting with `generation`, knowing the configured members.
fn start_gossip(
    config: &NodeConfig,
    id: NodeId,
    generation: u64,
    seed: u64,
    now: Instant,
) -> Gossip {
    let state = |generation, weight| MemberState {
        generation,
        version: 0,
        status: MemberStatus::Normal,
        weight,
        address: String::new(),
        datacenter: String::new(),
        rack: String::new(),
    };
    let status = if config.join { MemberStatus::Joining } else { MemberStatus::Normal };
    let mine = MemberState {
        status,
        address: config.address.clone(),
        datacenter: config.datacenter.clone(),
        rack: config.rack.clone(),
        ..state(generation, config.weight)
    };
    // Configured members start at generation 0, so anything they gossip replaces it.
    let known =
        config.members.iter().filter(|member| **member != id).map(|member| (*member, state(0, 1)));
    Gossip::new(id, mine, known, config.gossip.clone(), seed, now)
}

/// A random starting point for one of the id spaces a node issues (operations, replays, sessions,
/// streams). The seed differs at every start, so ids of two incarnations do not meet; the top
/// bits stay clear so an id space never wraps.
fn id_base(rng: &mut ChaCha8Rng) -> u64 {
    rng.random::<u64>() >> 2
}

/// Reads the epoch from storage and picks the next one: the same after a clean shutdown, one
/// higher after a crash, a random one when the metadata is gone (the disk was lost, so the node
/// cannot know which epochs it used).
/// Also says whether the epoch was kept.
fn recover_epoch<S: Storage>(
    storage: &mut S,
    rng: &mut ChaCha8Rng,
) -> Result<(u32, bool), StorageError> {
    let stored = storage.get(Space::Meta, META_EPOCH_KEY)?;
    let clean = storage.get(Space::Meta, META_CLEAN_KEY)?.is_some();
    Ok(match stored.as_deref().map(<[u8; 4]>::try_from) {
        Some(Ok(bytes)) if clean => (u32::from_le_bytes(bytes), true),
        Some(Ok(bytes)) => (u32::from_le_bytes(bytes).wrapping_add(1), false),
        _ => (rng.random(), false),
    })
}
