//! The tokio driver of one node: a task that owns the [`Node`] and follows the sans-IO contract.
//!
//! Owns: the node, the replies it owes clients, and the monotonic origin of its `Instant`s.
//! Inputs: [`Command`]s on a bounded channel (client requests from the RESP server, peer messages
//! from the transport, peer status changes, status queries, shutdown) and the node's own timer.
//! Outputs: peer messages handed to the transport, replies to waiting clients, storage syncs.
//!
//! Storage work (WAL syncs, flushes, compactions) runs on tokio's blocking pool: the task takes
//! it with `poll_work`, and the result comes back on a channel to `finish_work`, after which the
//! node hears `StorageSynced`. While a sync runs the node keeps serving; the writes that arrive
//! meanwhile are covered by the next sync (group commit). The driver holds no protocol logic.
//!
//! Damaged disks: when the storage reports a [`StorageHealth::failure`] (corruption found while
//! running, or an engine poisoned by a failed fsync) the task drops the node, which fails the
//! requests it still owed, and reopens it from its data directory with [`Lifecycle::reopen`]
//! (the start-up policy rebuilds a corrupt disk), keeping its channel, so the listeners and
//! peer connections carry on. A periodic scrub ([`StorageHealth::scrub`]) finds damage that no
//! read has touched yet.

use std::collections::BTreeMap;
use std::sync::Arc;

use ringkv_core::message::RequestId;
use ringkv_core::node::NodeCounters;
use ringkv_core::storage::{Storage, StorageWork};
use ringkv_core::{
    ClientError, ClientRequest, ClientResponse, Input, Instant, Node, NodeId, Output, PeerMessage,
    StorageError, WallTime,
};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;

/// Most commands taken per wake-up before outputs are drained and storage synced.
const COMMANDS_PER_WAKE_MAX: usize = 512;

/// Depth of a node's command channel.
pub const COMMAND_QUEUE_LEN_MAX: usize = 16_384;

/// Outcome of a client request.
pub type ClientResult = Result<ClientResponse, ClientError>;

/// Something for the node task to do.
#[derive(Debug)]
pub enum Command {
    /// A client request and where its reply goes.
    Client {
        /// The request.
        op: ClientRequest,
        /// The reply channel.
        reply: oneshot::Sender<ClientResult>,
    },
    /// A message from a peer.
    Peer {
        /// Sender.
        from: NodeId,
        /// Message.
        message: PeerMessage,
    },
    /// The transport's view of a peer changed.
    PeerStatus {
        /// The peer.
        node: NodeId,
        /// Whether a connection to it is up.
        up: bool,
    },
    /// Asks the node to snapshot its store (`RK.SNAPSHOT`).
    Snapshot {
        /// The snapshot's name.
        name: String,
        /// The reply channel.
        reply: oneshot::Sender<Result<crate::backup::SnapshotManifest, String>>,
    },
    /// Asks for the node's status.
    Status {
        /// The reply channel.
        reply: oneshot::Sender<NodeStatus>,
    },
    /// An operator's membership command.
    Membership(Input),
    /// Marks the shutdown clean, syncs, and stops the task.
    Shutdown {
        /// Answered once storage is synced.
        reply: oneshot::Sender<()>,
    },
}

/// What `ringkv admin status` and INFO show about a node.
#[derive(Debug, Clone)]
pub struct NodeStatus {
    /// The node.
    pub id: NodeId,
    /// Its actor epoch.
    pub epoch: u32,
    /// Whether it coordinates writes.
    pub ready: bool,
    /// Whether it is blank after its disk was found damaged and waits for the other replicas
    /// to refill it (it answers no reads meanwhile).
    pub rebuilding: bool,
    /// Its counters.
    pub counters: NodeCounters,
    /// The ring's members.
    pub members: Vec<NodeId>,
    /// Each member's share of the ring as primary replica (0.0 to 1.0).
    pub shares: Vec<(NodeId, f64)>,
    /// Each member's share of the ring as any replica (0.0 to 1.0 each; they sum to N).
    pub replica_shares: Vec<(NodeId, f64)>,
    /// Where each member of the ring stands.
    pub locations: Vec<(NodeId, ringkv_core::placement::Location)>,
    /// Every node gossip knows, with its status.
    pub membership: Vec<(NodeId, String)>,
    /// The storage's counters (flushes, compactions, bytes).
    pub storage: Vec<(&'static str, u64)>,
}

/// Where the node task sends peer messages.
pub trait PeerSink: Send + 'static {
    /// Queues a message for a peer; drops it (and counts) when the peer's queue is full.
    fn send(&mut self, to: NodeId, message: PeerMessage);

    /// Whether a connection to `to` is set up (or being set up).
    fn knows(&self, to: NodeId) -> bool;

    /// Sets up a connection to `to`, whose peer address gossip advertises as `address`.
    fn connect(&mut self, to: NodeId, address: &str);
}

/// What became of a peer message handed to the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Queued for the node.
    Queued,
    /// Dropped: the node's queue is full.
    Full,
    /// Dropped: the node has stopped.
    Stopped,
}

/// A cloneable handle on a running node task.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    commands: mpsc::Sender<Command>,
}

impl NodeHandle {
    /// A handle on no task, and the receiving end of its commands (for unit tests).
    #[cfg(test)]
    pub(crate) fn detached() -> (NodeHandle, mpsc::Receiver<Command>) {
        let (commands, receiver) = mpsc::channel(1);
        (NodeHandle { commands }, receiver)
    }

    /// Runs a client request and waits for its outcome.
    pub async fn request(&self, op: ClientRequest) -> ClientResult {
        let (reply, receive) = oneshot::channel();
        if self.commands.send(Command::Client { op, reply }).await.is_err() {
            return Err(ClientError::NotReady);
        }
        receive.await.unwrap_or(Err(ClientError::NotReady))
    }

    /// Hands a peer message to the node; drops it if the node's queue is full (deadlines and
    /// repair make up for it).
    pub fn peer_message(&self, from: NodeId, message: PeerMessage) -> Delivery {
        match self.commands.try_send(Command::Peer { from, message }) {
            Ok(()) => Delivery::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => Delivery::Full,
            Err(mpsc::error::TrySendError::Closed(_)) => Delivery::Stopped,
        }
    }

    /// Reports a peer's connection state.
    pub async fn peer_status(&self, node: NodeId, up: bool) {
        let _ = self.commands.send(Command::PeerStatus { node, up }).await;
    }

    /// The node's status, or `None` when the task has stopped.
    pub async fn status(&self) -> Option<NodeStatus> {
        let (reply, receive) = oneshot::channel();
        self.commands.send(Command::Status { reply }).await.ok()?;
        receive.await.ok()
    }

    /// Snapshots the node's store as `name` (see `crate::backup`); `None` when the task has
    /// stopped.
    pub async fn snapshot(
        &self,
        name: String,
    ) -> Option<Result<crate::backup::SnapshotManifest, String>> {
        let (reply, receive) = oneshot::channel();
        self.commands.send(Command::Snapshot { name, reply }).await.ok()?;
        receive.await.ok()
    }

    /// Hands an operator's membership command (decommission, remove a node) to the node.
    pub async fn membership(&self, input: Input) -> bool {
        self.commands.send(Command::Membership(input)).await.is_ok()
    }

    /// Shuts the node down cleanly; returns when its storage is synced.
    pub async fn shutdown(&self) {
        let (reply, receive) = oneshot::channel();
        if self.commands.send(Command::Shutdown { reply }).await.is_ok() {
            let _ = receive.await;
        }
    }
}

/// Storage whose work can run on the blocking pool.
pub trait DriverStorage: Storage<Work = Self::SendWork> + Send + 'static {
    /// The work, sendable to another thread.
    type SendWork: StorageWork<Done = Self::SendDone> + Send + 'static;
    /// The work's result, sendable back.
    type SendDone: Send + 'static;
}

impl<S, W, D> DriverStorage for S
where
    S: Storage<Work = W> + Send + 'static,
    W: StorageWork<Done = D> + Send + 'static,
    D: Send + 'static,
{
    type SendWork = W;
    type SendDone = D;
}

/// The health of a node's storage, as the driver watches it.
pub trait StorageHealth {
    /// Why the storage needs its node restarted (corruption found, an engine poisoned by a
    /// failed fsync), if it does.
    fn failure(&self) -> Option<String>;

    /// Reads everything the storage holds on disk, so that damage is found now rather than by
    /// a client's read; the damage found is then reported by [`StorageHealth::failure`].
    fn scrub(&mut self) -> Result<(), StorageError>;

    /// Writes snapshot `name` of the store (see `crate::backup`), stamped with the node's id
    /// and wall clock. Storage without files has none to offer.
    fn snapshot(
        &mut self,
        name: &str,
        node_id: NodeId,
        taken_at: WallTime,
    ) -> Result<crate::backup::SnapshotManifest, String> {
        let _ = (name, node_id, taken_at);
        Err("this node's storage keeps no snapshots (it is not on disk)".into())
    }
}

/// Builds the node afresh from its data directory, as at boot (fresh seed, the start-up
/// policy that rebuilds a corrupt disk). Called only once the previous node has been dropped,
/// so its directory lock is free.
pub type Reopen<S> = Box<dyn FnMut() -> Result<Node<S>, StorageError> + Send>;

/// How the task keeps a node's storage healthy.
pub struct Lifecycle<S: Storage> {
    /// How to restart the node when its storage fails; without it a failed node keeps running
    /// (refusing writes) until an operator restarts it.
    pub reopen: Option<Reopen<S>>,
    /// How often to scrub the storage; `None` never does.
    pub scrub_interval: Option<std::time::Duration>,
}

impl<S: Storage> Lifecycle<S> {
    /// No restarts, no scrubs.
    pub fn none() -> Self {
        Lifecycle { reopen: None, scrub_interval: None }
    }
}

impl<S: Storage> std::fmt::Debug for Lifecycle<S> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Lifecycle")
            .field("reopen", &self.reopen.is_some())
            .field("scrub_interval", &self.scrub_interval)
            .finish()
    }
}

/// Longest wait between two attempts to reopen a failed node's storage.
const REOPEN_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// Starts the task that owns `node`, whose keyspace keeps `replicas_n` replicas per key (for
/// its status). Peer messages go to `peers`.
/// Storage work runs as soon as it is due, or, with `work_interval`, on that period.
pub fn spawn<S: DriverStorage + StorageHealth, P: PeerSink>(
    node: Node<S>,
    peers: P,
    metrics: Arc<Metrics>,
    work_interval: Option<std::time::Duration>,
    lifecycle: Lifecycle<S>,
    replicas_n: usize,
) -> (NodeHandle, tokio::task::JoinHandle<()>) {
    let (commands, receiver) = mpsc::channel(COMMAND_QUEUE_LEN_MAX);
    let (work_done, work_results) = mpsc::unbounded_channel();
    let mut task = NodeTask::new(node, peers, metrics, work_done, work_interval, lifecycle);
    task.replicas_n = replicas_n;
    let join = tokio::spawn(task.run(receiver, work_results));
    (NodeHandle { commands }, join)
}

struct NodeTask<S: DriverStorage + StorageHealth, P: PeerSink> {
    node: Node<S>,
    peers: P,
    metrics: Arc<Metrics>,
    pending: BTreeMap<RequestId, oneshot::Sender<ClientResult>>,
    next_request: RequestId,
    origin: tokio::time::Instant,
    work_done: mpsc::UnboundedSender<S::SendDone>,
    work_in_flight: usize,
    stopping: Option<oneshot::Sender<()>>,
    work_interval: Option<std::time::Duration>,
    next_work_at: Option<tokio::time::Instant>,
    lifecycle: Lifecycle<S>,
    next_scrub_at: Option<tokio::time::Instant>,
    /// Replicas per key of the node's keyspace, for the status's replica shares.
    replicas_n: usize,
}

/// How one incarnation of the node ended.
enum Ended {
    /// Shut down, or every handle dropped.
    Stopped,
    /// Its storage failed for this reason; it is to be reopened.
    Failed(String),
}

impl<S: DriverStorage + StorageHealth, P: PeerSink> NodeTask<S, P> {
    fn new(
        node: Node<S>,
        peers: P,
        metrics: Arc<Metrics>,
        work_done: mpsc::UnboundedSender<S::SendDone>,
        work_interval: Option<std::time::Duration>,
        lifecycle: Lifecycle<S>,
    ) -> Self {
        let now = tokio::time::Instant::now();
        NodeTask {
            node,
            peers,
            metrics,
            pending: BTreeMap::new(),
            next_request: 1,
            origin: now,
            work_done,
            work_in_flight: 0,
            stopping: None,
            work_interval,
            next_work_at: work_interval.map(|interval| now + interval),
            next_scrub_at: lifecycle.scrub_interval.map(|interval| now + interval),
            lifecycle,
            replicas_n: 1,
        }
    }

    async fn run(
        mut self,
        mut receiver: mpsc::Receiver<Command>,
        mut work_results: mpsc::UnboundedReceiver<S::SendDone>,
    ) {
        loop {
            let reason = match self.run_node(&mut receiver, &mut work_results).await {
                Ended::Stopped => return,
                Ended::Failed(reason) => reason,
            };
            match self.restart(reason, &mut receiver, &mut work_results).await {
                Some(task) => self = task,
                None => return,
            }
        }
    }

    /// Drops the failed node once its storage work has come back, and reopens it (retrying
    /// with backoff: an I/O error at start is not corruption and may pass). Meanwhile clients
    /// are told the node is not ready and peer messages are dropped, as if it were down.
    /// `None` when told to shut down (or every handle dropped) before it could reopen.
    async fn restart(
        mut self,
        reason: String,
        receiver: &mut mpsc::Receiver<Command>,
        work_results: &mut mpsc::UnboundedReceiver<S::SendDone>,
    ) -> Option<Self> {
        tracing::warn!(%reason, "storage failed: restarting the node from its data directory");
        // Work in flight still holds the old engine's files; its results are of no use now.
        while self.work_in_flight > 0 {
            work_results.recv().await?;
            self.work_in_flight -= 1;
        }
        let NodeTask {
            node,
            peers,
            metrics,
            work_done,
            work_interval,
            mut lifecycle,
            replicas_n,
            ..
        } = self;
        // Dropping the node drops the replies it owed (clients see "not ready") and releases
        // the directory lock for the reopen.
        drop(node);
        let mut reopen = lifecycle.reopen.take()?;
        let mut backoff = std::time::Duration::from_millis(100);
        loop {
            match run_blocking(&mut reopen) {
                Ok(node) => {
                    lifecycle.reopen = Some(reopen);
                    metrics.node_restarts.inc();
                    tracing::warn!(epoch = node.actor().epoch, "node restarted");
                    let mut task =
                        NodeTask::new(node, peers, metrics, work_done, work_interval, lifecycle);
                    task.replicas_n = replicas_n;
                    task.drain_outputs();
                    return Some(task);
                }
                Err(error) => {
                    tracing::error!(%error, ?backoff, "cannot reopen the node's storage; retrying");
                }
            }
            let retry_at = tokio::time::Instant::now() + backoff;
            backoff = (backoff * 2).min(REOPEN_BACKOFF_MAX);
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(retry_at) => break,
                    command = receiver.recv() => match command? {
                        Command::Client { reply, .. } => {
                            let _ = reply.send(Err(ClientError::NotReady));
                        }
                        Command::Shutdown { reply } => {
                            let _ = reply.send(());
                            return None;
                        }
                        _ => {}
                    },
                }
            }
        }
    }

    /// Runs this node until it stops or its storage fails.
    async fn run_node(
        &mut self,
        receiver: &mut mpsc::Receiver<Command>,
        work_results: &mut mpsc::UnboundedReceiver<S::SendDone>,
    ) -> Ended {
        self.drain_outputs();
        loop {
            if self.stopping.is_some() && self.work_in_flight == 0 {
                self.finish_shutdown();
                return Ended::Stopped;
            }
            if self.lifecycle.reopen.is_some() && self.stopping.is_none() {
                if let Some(reason) = self.node.storage().failure() {
                    return Ended::Failed(reason);
                }
            }
            let deadline = self
                .node
                .poll_timeout()
                .map(|at| self.origin + std::time::Duration::from_nanos(at.as_nanos()));
            let sleep = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            // A fixed deadline, not a fresh sleep per wake-up: under steady load the loop wakes
            // constantly and a fresh sleep would never fire.
            let next_work_at = self.next_work_at;
            let work_tick = async {
                match next_work_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let next_scrub_at = self.next_scrub_at;
            let scrub_tick = async {
                match next_scrub_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = work_tick => {
                    self.next_work_at = self.work_interval.map(|interval| tokio::time::Instant::now() + interval);
                    self.start_work();
                }
                () = scrub_tick, if self.stopping.is_none() => {
                    self.scrub();
                }
                done = work_results.recv() => {
                    let Some(done) = done else { return Ended::Stopped };
                    self.work_in_flight -= 1;
                    self.finish_work(done);
                }
                command = receiver.recv(), if self.stopping.is_none() => {
                    let Some(command) = command else { return Ended::Stopped };
                    // One reading of the clocks serves the whole batch: the commands arrived
                    // together, and reading both clocks per command cost about 3% of the CPU
                    // under a pipelined load.
                    let now = self.now();
                    self.node.set_wall_clock(wall_clock());
                    self.apply(now, command);
                    for _ in 0..COMMANDS_PER_WAKE_MAX {
                        if self.stopping.is_some() {
                            break;
                        }
                        let Ok(command) = receiver.try_recv() else { break };
                        self.apply(now, command);
                    }
                }
                () = sleep => {
                    let now = self.now();
                    self.node.set_wall_clock(wall_clock());
                    self.node.handle_timeout(now);
                }
            }
            self.drain_outputs();
        }
    }

    /// Scrubs the storage. The engine belongs to this task, so the scrub runs here, through
    /// [`run_blocking`]; the node answers nothing meanwhile (a scrub reads every table once, a
    /// few seconds per gigabyte).
    fn scrub(&mut self) {
        let started = std::time::Instant::now();
        let result = run_blocking(|| self.node.storage_mut().scrub());
        self.metrics.storage_scrubs.inc();
        match result {
            Ok(()) => tracing::debug!(elapsed = ?started.elapsed(), "scrub found no damage"),
            Err(error) => tracing::error!(%error, "scrub failed"),
        }
        self.next_scrub_at =
            self.lifecycle.scrub_interval.map(|interval| tokio::time::Instant::now() + interval);
    }

    /// Applies one command at `now` (the wall clock already set).
    fn apply(&mut self, now: Instant, command: Command) {
        match command {
            Command::Client { op, reply } => {
                let request = self.next_request;
                self.next_request += 1;
                self.pending.insert(request, reply);
                self.node.handle(now, Input::Client { request, op });
            }
            Command::Peer { from, message } => self.node.handle(now, Input::Peer { from, message }),
            Command::PeerStatus { node, up } => {
                self.node.handle(now, Input::PeerStatus { node, up })
            }
            Command::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Command::Snapshot { name, reply } => {
                // Hard links and a WAL copy of at most a few memtables: short, but on the disk,
                // so the runtime's other tasks move off this thread meanwhile.
                let node_id = self.node.id();
                let taken =
                    run_blocking(|| self.node.storage_mut().snapshot(&name, node_id, wall_clock()));
                if let Ok(manifest) = &taken {
                    tracing::info!(name, files = manifest.files.len(), "snapshot taken");
                }
                let _ = reply.send(taken);
            }
            Command::Membership(input) => self.node.handle(now, input),
            Command::Shutdown { reply } => self.stopping = Some(reply),
        }
    }

    /// Called once no storage work is in flight: marks the shutdown clean and syncs it.
    fn finish_shutdown(&mut self) {
        if let Err(error) = self.node.shutdown() {
            tracing::error!(%error, "could not mark the shutdown clean");
        }
        let synced = run_blocking(|| self.node.storage_mut().sync());
        if let Err(error) = synced {
            tracing::error!(%error, "final sync failed");
        }
        if let Some(reply) = self.stopping.take() {
            let _ = reply.send(());
        }
    }

    /// Hands every piece of due storage work to the blocking pool.
    fn start_work(&mut self) {
        while let Some(work) = self.node.storage_mut().poll_work() {
            let results = self.work_done.clone();
            self.work_in_flight += 1;
            tokio::task::spawn_blocking(move || {
                let _ = results.send(work.run());
            });
        }
    }

    fn finish_work(&mut self, done: S::SendDone) {
        let now = self.now();
        self.node.set_wall_clock(wall_clock());
        // A finish that syncs the manifest blocks this task either way; on a multi-threaded
        // runtime `run_blocking` moves the worker's other tasks (connections, peer links) to
        // another thread meanwhile. Not for plain WAL syncs: they are many and cheap to finish,
        // and the hand-off has a cost.
        let finished = if self.node.storage().finish_blocks(&done) {
            run_blocking(|| self.node.storage_mut().finish_work(done))
        } else {
            self.node.storage_mut().finish_work(done)
        };
        match finished {
            Ok(_) => {
                self.metrics.storage_syncs.inc();
                self.node.handle(now, Input::StorageSynced);
            }
            Err(error) => {
                tracing::error!(%error, "storage work failed: the node stops accepting writes");
                self.node.handle(now, Input::StorageFailed { reason: error.0 });
            }
        }
    }

    fn drain_outputs(&mut self) {
        while let Some(output) = self.node.poll_output() {
            match output {
                Output::Send { to, message } => {
                    // A node learned from gossip (one that joined) is dialled at the address it
                    // advertises.
                    if !self.peers.knows(to) {
                        if let Some(state) = self.node.membership().get(&to) {
                            self.peers.connect(to, &state.address);
                        }
                    }
                    self.peers.send(to, message);
                }
                Output::Reply { request, result } => {
                    if let Some(reply) = self.pending.remove(&request) {
                        let _ = reply.send(result);
                    }
                }
                // Work is polled after every wake-up anyway; this output only says it matters.
                Output::SyncStorage => {}
                _ => {}
            }
        }
        if self.stopping.is_none() && self.work_interval.is_none() {
            self.start_work();
        }
    }

    fn status(&self) -> NodeStatus {
        NodeStatus {
            id: self.node.id(),
            epoch: self.node.actor().epoch,
            ready: self.node.is_ready(),
            rebuilding: self.node.is_rebuilding(),
            counters: self.node.counters(),
            members: self.node.ring().members().collect(),
            shares: self.node.ring().primary_shares().into_iter().collect(),
            replica_shares: replica_shares(self.node.ring(), self.replicas_n),
            locations: self
                .node
                .ring()
                .members()
                .map(|member| (member, self.node.ring().location(member).clone()))
                .collect(),
            storage: self.node.storage().stats(),
            membership: self
                .node
                .membership()
                .iter()
                .map(|(id, state)| (*id, format!("{:?}", state.status).to_ascii_lowercase()))
                .collect(),
        }
    }

    fn now(&self) -> Instant {
        Instant::from_nanos(self.origin.elapsed().as_nanos() as u64)
    }
}

/// Each member's share of `ring` as any of `replicas_n` replicas: the width of the arcs whose
/// preference list holds it, over the whole circle.
fn replica_shares(ring: &ringkv_core::ring::Ring, replicas_n: usize) -> Vec<(NodeId, f64)> {
    let mut shares: BTreeMap<NodeId, f64> = ring.members().map(|node| (node, 0.0)).collect();
    for range in ring.ranges(replicas_n) {
        let width = range.end_inclusive.wrapping_sub(range.start_exclusive);
        // A single-token ring's only arc is the whole circle (width 0 mod 2^64).
        let share = if width == 0 { 1.0 } else { width as f64 / 2f64.powi(64) };
        for node in range.after {
            *shares.entry(node).or_insert(0.0) += share;
        }
    }
    shares.into_iter().collect()
}

/// The machine's wall clock, the one place the driver reads it.
pub fn wall_clock() -> WallTime {
    let since_epoch =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    WallTime::from_millis(since_epoch.as_millis() as u64)
}

/// Runs blocking storage work on the node task. On a multi-threaded runtime `block_in_place`
/// first hands the worker's other tasks to another thread; a current-thread runtime (one per
/// node in a dev cluster) has no other worker, and its other tasks serve this node alone, which
/// waits for the work either way.
fn run_blocking<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::current().runtime_flavor() {
        tokio::runtime::RuntimeFlavor::CurrentThread => work(),
        _ => tokio::task::block_in_place(work),
    }
}
