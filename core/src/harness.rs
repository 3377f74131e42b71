//! A minimal in-process cluster: a router that delivers messages with a fixed latency and
//! advances time to the earliest deadline, as quinn-proto's `Pair` does for two endpoints.
//!
//! It exists for unit tests and examples that drive a few nodes by hand. It injects only the
//! faults a test asks for (isolating a node, declaring it down, crashing it); the seeded
//! simulator in `ringkv-sim` is the tool for fault exploration.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::ClientError;
use crate::message::{ClientRequest, ClientResponse, PeerMessage, RequestId};
use crate::node::{Input, Node, NodeConfig, Output};
use crate::storage::{MemStorage, Storage};
use crate::time::{Duration, Instant, WallTime};
use crate::types::NodeId;

/// Outcome of a client request.
pub type Reply = Result<ClientResponse, ClientError>;

/// A cluster of nodes on in-memory storage, wired by a deterministic router.
#[derive(Debug)]
pub struct Cluster {
    config: NodeConfig,
    nodes: BTreeMap<NodeId, Node<MemStorage>>,
    crashed: BTreeMap<NodeId, MemStorage>,
    now: Instant,
    wall_base: WallTime,
    latency: Duration,
    queue: BTreeMap<(Instant, u64), (NodeId, NodeId, PeerMessage)>,
    next_message: u64,
    isolated: BTreeSet<NodeId>,
    auto_sync: bool,
    replies: BTreeMap<RequestId, Reply>,
    next_request: RequestId,
    steps_max: usize,
    starts: u64,
    node_configs: BTreeMap<NodeId, NodeConfig>,
}

impl Cluster {
    /// Starts `config.members` with one millisecond of latency per message and automatic syncs.
    pub fn new(config: NodeConfig) -> Self {
        Cluster::with_node_configs(config, BTreeMap::new())
    }

    /// Like [`Cluster::new`], with a config of its own for each node named in `per_node` (a
    /// node's datacenter and rack, say); the others use `config`.
    pub fn with_node_configs(config: NodeConfig, per_node: BTreeMap<NodeId, NodeConfig>) -> Self {
        let mut cluster = Cluster {
            nodes: BTreeMap::new(),
            crashed: BTreeMap::new(),
            now: Instant::ZERO,
            wall_base: WallTime::from_millis(1_700_000_000_000),
            latency: Duration::from_millis(1),
            queue: BTreeMap::new(),
            next_message: 0,
            isolated: BTreeSet::new(),
            auto_sync: true,
            replies: BTreeMap::new(),
            next_request: 1,
            steps_max: 100_000,
            starts: 0,
            node_configs: per_node,
            config,
        };
        for id in cluster.config.members.clone() {
            cluster.start_node(id, MemStorage::new());
        }
        cluster.settle();
        cluster
    }

    /// The current time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The wall clock every node reads (they share one, no skew).
    pub fn wall(&self) -> WallTime {
        WallTime::from_millis(self.wall_base.as_millis() + self.now.as_nanos() / 1_000_000)
    }

    /// A node, for inspection.
    pub fn node(&mut self, id: NodeId) -> &mut Node<MemStorage> {
        self.nodes.get_mut(&id).expect("no such running node")
    }

    /// Whether storage syncs happen as soon as a node asks (the default) or only on [`Cluster::sync`].
    pub fn set_auto_sync(&mut self, auto_sync: bool) {
        self.auto_sync = auto_sync;
    }

    /// Drops every message to or from `node` (it goes silent; nobody is told).
    pub fn isolate(&mut self, node: NodeId) {
        self.isolated.insert(node);
    }

    /// Undoes [`Cluster::isolate`].
    pub fn heal(&mut self, node: NodeId) {
        self.isolated.remove(&node);
    }

    /// Tells every other node that `node` is down or up.
    pub fn declare(&mut self, node: NodeId, up: bool) {
        let others: Vec<NodeId> = self.nodes.keys().copied().filter(|id| *id != node).collect();
        for other in others {
            self.feed(other, Input::PeerStatus { node, up });
        }
    }

    /// Crashes a node: it loses everything not synced.
    pub fn crash(&mut self, node: NodeId) {
        if let Some(running) = self.nodes.remove(&node) {
            let mut storage = running.into_storage();
            storage.crash();
            self.crashed.insert(node, storage);
        }
    }

    /// Restarts a crashed node from its storage.
    pub fn restart(&mut self, node: NodeId) {
        if let Some(storage) = self.crashed.remove(&node) {
            self.start_node(node, storage);
        }
    }

    /// Starts a new node that joins the running cluster (it knows the founding members as seeds).
    pub fn add_joining_node(&mut self, id: NodeId) {
        let mut config = self.config.clone();
        config.join = true;
        self.start_node_with(id, config, MemStorage::new());
    }

    /// Asks a node to leave the cluster.
    pub fn decommission(&mut self, node: NodeId) {
        self.feed(node, Input::Decommission);
    }

    /// Tells `by` that the dead node `node` is removed.
    pub fn remove_node(&mut self, by: NodeId, node: NodeId) {
        self.feed(by, Input::RemoveNode { node });
    }

    /// Ids of the running nodes.
    pub fn running(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    /// Restarts a crashed node on an empty disk, as after replacing a failed drive.
    pub fn restart_with_empty_disk(&mut self, node: NodeId) {
        if self.crashed.remove(&node).is_some() {
            self.start_node(node, MemStorage::new());
        }
    }

    /// Restarts a crashed node on a blank disk marked as a rebuild, as
    /// `LsmStorage::open_or_rebuild` leaves a corrupt one: it answers no reads until every other
    /// replica has refilled it through anti-entropy.
    pub fn restart_rebuilt(&mut self, node: NodeId) {
        if self.crashed.remove(&node).is_some() {
            let mut storage = MemStorage::new();
            let marked = storage.write(
                crate::storage::Space::Meta,
                bytes::Bytes::from_static(crate::storage::META_REBUILDING_KEY),
                Some(bytes::Bytes::from_static(b"test: corrupt disk")),
            );
            assert!(marked.is_ok() && storage.sync().is_ok(), "MemStorage writes cannot fail");
            self.start_node(node, storage);
        }
    }

    /// Syncs every node's storage now.
    pub fn sync(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.sync_node(id);
        }
    }

    /// Sends a client request to `node`; its reply is collected by the router.
    pub fn request(&mut self, node: NodeId, op: ClientRequest) -> RequestId {
        let request = self.next_request;
        self.next_request += 1;
        self.feed(node, Input::Client { request, op });
        request
    }

    /// Sends a request and runs until its reply, for at most `limit` of simulated time.
    pub fn call(&mut self, node: NodeId, op: ClientRequest) -> Reply {
        let request = self.request(node, op);
        self.run_until_reply(request, Duration::from_secs(10))
            .expect("no reply within 10 simulated seconds")
    }

    /// Runs until the reply to `request` arrives or `limit` of simulated time passes.
    pub fn run_until_reply(&mut self, request: RequestId, limit: Duration) -> Option<Reply> {
        let end = self.now + limit;
        for _ in 0..self.steps_max {
            if let Some(reply) = self.replies.remove(&request) {
                return Some(reply);
            }
            if !self.step(end) {
                break;
            }
        }
        self.replies.remove(&request)
    }

    /// Runs every event up to `self.now() + span`.
    pub fn run_for(&mut self, span: Duration) {
        let end = self.now + span;
        for _ in 0..self.steps_max {
            if !self.step(end) {
                break;
            }
        }
        self.now = self.now.max(end);
    }

    /// Delivers the next message or fires the next timer, if it is due by `end`.
    fn step(&mut self, end: Instant) -> bool {
        let next_message = self.queue.keys().next().map(|(at, _)| *at);
        let next_timer = self
            .nodes
            .iter()
            .filter_map(|(id, node)| node.poll_timeout().map(|at| (at, *id)))
            .min();
        match (next_message, next_timer) {
            (Some(at), timer) if at <= end && timer.is_none_or(|(timer_at, _)| at <= timer_at) => {
                let Some((_, (from, to, message))) = self.queue.pop_first() else {
                    return false;
                };
                self.now = self.now.max(at);
                if self.nodes.contains_key(&to) && !self.isolated.contains(&to) {
                    self.feed(to, Input::Peer { from, message });
                }
                true
            }
            (_, Some((at, id))) if at <= end => {
                self.now = self.now.max(at);
                let wall = self.wall();
                let now = self.now;
                let node = self.node(id);
                node.set_wall_clock(wall);
                node.handle_timeout(now);
                self.drain(id);
                true
            }
            _ => false,
        }
    }

    fn start_node(&mut self, id: NodeId, storage: MemStorage) {
        let config = self.node_configs.get(&id).cloned().unwrap_or_else(|| self.config.clone());
        self.start_node_with(id, config, storage);
    }

    fn start_node_with(&mut self, id: NodeId, config: NodeConfig, storage: MemStorage) {
        self.node_configs.insert(id, config.clone());
        // Every start gets its own seed: a node that lost its disk draws its new epoch from it.
        self.starts += 1;
        let seed = (u64::from(id.0) << 32) | self.starts;
        let node = Node::new(config, id, seed, self.now, storage)
            .expect("in-memory storage does not fail");
        self.nodes.insert(id, node);
        self.drain(id);
    }

    fn feed(&mut self, id: NodeId, input: Input) {
        let wall = self.wall();
        let now = self.now;
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        node.set_wall_clock(wall);
        node.handle(now, input);
        self.drain(id);
    }

    fn sync_node(&mut self, id: NodeId) {
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        let input = match node.storage_mut().sync() {
            Ok(_) => Input::StorageSynced,
            Err(error) => Input::StorageFailed { reason: error.0 },
        };
        self.feed(id, input);
    }

    fn drain(&mut self, id: NodeId) {
        let mut sync_wanted = false;
        while let Some(output) = self.nodes.get_mut(&id).and_then(|node| node.poll_output()) {
            match output {
                Output::Send { to, message } => {
                    if !self.isolated.contains(&id) {
                        let at = self.now + self.latency;
                        self.queue.insert((at, self.next_message), (id, to, message));
                        self.next_message += 1;
                    }
                }
                Output::Reply { request, result } => {
                    self.replies.insert(request, result);
                }
                Output::SyncStorage => sync_wanted = true,
            }
        }
        if sync_wanted && self.auto_sync {
            self.sync_node(id);
        }
    }

    fn settle(&mut self) {
        self.run_for(Duration::from_millis(10));
    }
}
