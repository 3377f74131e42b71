//! ringkv-net: the tokio driver that runs ringkv nodes on real sockets and files.
//!
//! [`start`] wires one node: its task ([`driver`]), peer connections ([`peer`], [`frame`]), the
//! Redis-protocol client server ([`server`], [`resp`]), TLS ([`tls`]), client users
//! ([`users`]) and metrics ([`metrics`]). The node's logic
//! is entirely in `ringkv-core`; nothing here decides anything about data.
//!
//! A node with several keyspaces ([`config::NodeFileConfig::keyspaces`]) runs one core `Node`
//! per keyspace, each on a task of its own with its own storage directory, all behind one set of
//! listeners and peer links ([`keyspaces`]; ARCHITECTURE.md, "Keyspaces").
#![forbid(unsafe_code)]

pub mod admin;
pub mod backup;
pub mod config;
pub mod disk;
pub mod driver;
pub mod frame;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod keyspaces;
pub mod metrics;
pub mod peer;
pub mod resp;
pub mod server;
pub mod tls;
pub mod users;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use ringkv_core::{Duration, Instant, Limits, Node, NodeConfig, NodeId};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::{Keyspace, NodeFileConfig};
use crate::driver::NodeHandle;
use crate::keyspaces::{KeyspaceHandle, NodeHandles};
use crate::metrics::Metrics;
use crate::peer::PeerSettings;
use crate::server::ServerSettings;
use crate::tls::TlsState;
use crate::users::Users;

/// A node running on this process's tokio runtime.
#[derive(Debug)]
pub struct RunningNode {
    /// The node's id.
    pub id: NodeId,
    /// Where clients connect (the bound address, useful with port 0).
    pub client_addr: SocketAddr,
    /// Where peers connect.
    pub peer_addr: SocketAddr,
    /// Where metrics are served.
    pub metrics_addr: Option<SocketAddr>,
    /// Where TLS clients connect (the bound address), if the node has a TLS client port.
    pub tls_client_addr: Option<SocketAddr>,
    /// The node's TLS material, to reload ([`TlsState::reload`]); `None` without TLS.
    pub tls: Option<Arc<TlsState>>,
    /// The default keyspace's node task (db 0).
    pub handle: NodeHandle,
    /// Every keyspace's node task.
    pub handles: Arc<NodeHandles>,
    /// The node's metrics.
    pub metrics: Arc<Metrics>,
    tasks: Vec<JoinHandle<()>>,
    node_tasks: Vec<JoinHandle<()>>,
}

impl RunningNode {
    /// Stops accepting connections, marks the shutdown clean, syncs storage and stops the node
    /// (every keyspace's).
    pub async fn shutdown(self) {
        for task in &self.tasks {
            task.abort();
        }
        for keyspace in self.handles.all() {
            keyspace.node.shutdown().await;
        }
        for task in self.node_tasks {
            let _ = task.await;
        }
    }

    /// Stops everything at once, as a crash would (no clean-shutdown marker, no final sync).
    pub fn kill(self) {
        for task in &self.tasks {
            task.abort();
        }
        for task in &self.node_tasks {
            task.abort();
        }
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A port could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Storage failed while the node recovered.
    #[error("storage: {0}")]
    Storage(#[from] ringkv_core::StorageError),
    /// The node's thread or runtime could not be started.
    #[error("cannot start the node's runtime: {0}")]
    Runtime(String),
    /// A file of the `tls` section could not be used.
    #[error("{0}")]
    Tls(#[from] tls::TlsError),
    /// The configuration declares keyspaces that this way of starting cannot give storage.
    #[error("{0}")]
    Keyspaces(String),
}

/// A node running on a thread of its own, with a tokio runtime of `worker_threads` threads
/// (a current-thread runtime for 1). A dev cluster runs each node this way, as separate machines
/// would: nodes sharing one work-stealing runtime bounced each other's tasks and data between
/// the cores (ARCHITECTURE.md, "Runtime").
#[derive(Debug)]
pub struct NodeThread {
    /// The node's id.
    pub id: NodeId,
    /// Where clients connect.
    pub client_addr: SocketAddr,
    /// Where peers connect.
    pub peer_addr: SocketAddr,
    /// Where metrics are served.
    pub metrics_addr: Option<SocketAddr>,
    /// Where TLS clients connect, if the node has a TLS client port.
    pub tls_client_addr: Option<SocketAddr>,
    /// The node's TLS material, to reload on SIGHUP; `None` without TLS.
    pub tls: Option<Arc<TlsState>>,
    /// The node task's handle (usable from any runtime).
    pub handle: NodeHandle,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl NodeThread {
    /// Starts the node of `config` on its data directory ([`start_on_disk`]) on a new thread and
    /// returns once it listens. Blocks the calling thread meanwhile.
    pub fn start(config: NodeFileConfig) -> Result<NodeThread, StartError> {
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("ringkv-node-{}", config.node_id))
            .spawn(move || {
                let runtime = match node_runtime(config.worker_threads) {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = started_tx.send(Err(StartError::Runtime(error.to_string())));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match start_on_disk(&config).await {
                        Ok(node) => {
                            let addresses = StartedNode {
                                id: node.id,
                                client_addr: node.client_addr,
                                peer_addr: node.peer_addr,
                                metrics_addr: node.metrics_addr,
                                tls_client_addr: node.tls_client_addr,
                                tls: node.tls.clone(),
                                handle: node.handle.clone(),
                            };
                            let _ = started_tx.send(Ok(addresses));
                            // A dropped sender (the handle dropped) stops the node as well.
                            let _ = stop_rx.await;
                            node.shutdown().await;
                        }
                        Err(error) => {
                            let _ = started_tx.send(Err(error));
                        }
                    }
                });
            })
            .map_err(|error| StartError::Runtime(error.to_string()))?;
        let started = started_rx.recv().map_err(|_| {
            StartError::Runtime("the node's thread stopped while starting".into())
        })??;
        Ok(NodeThread {
            id: started.id,
            client_addr: started.client_addr,
            peer_addr: started.peer_addr,
            metrics_addr: started.metrics_addr,
            tls_client_addr: started.tls_client_addr,
            tls: started.tls,
            handle: started.handle,
            stop,
            thread,
        })
    }

    /// Shuts the node down cleanly ([`RunningNode::shutdown`]) and waits for its thread.
    pub fn shutdown(self) {
        let _ = self.stop.send(());
        if self.thread.join().is_err() {
            tracing::error!(node = %self.id, "the node's thread panicked");
        }
    }
}

/// What a node's thread reports once its node listens.
struct StartedNode {
    id: NodeId,
    client_addr: SocketAddr,
    peer_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    tls_client_addr: Option<SocketAddr>,
    tls: Option<Arc<TlsState>>,
    handle: NodeHandle,
}

/// The runtime one node runs on: current-thread for one thread, else multi-threaded.
fn node_runtime(worker_threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = if worker_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(worker_threads);
        builder
    };
    builder.enable_all().build()
}

/// Opens every keyspace's storage (the default keyspace's in `config.data_dir`, each other's in
/// `<data_dir>/keyspaces/<name>/`, recovering what was synced; a corrupt disk is rebuilt blank,
/// see [`open_disk`]) and starts the node. Each directory is locked while the node runs, so no
/// second node opens it. When a keyspace's storage fails while running, that keyspace's node
/// restarts from its directory in the same way, keeping the listeners.
pub async fn start_on_disk(config: &NodeFileConfig) -> Result<RunningNode, StartError> {
    let mut starts = Vec::new();
    for keyspace in config.keyspaces() {
        let directory = keyspace_dir(config, &keyspace);
        let storage = open_disk_waiting(config, &directory).await?;
        let (reopen_config, reopen_keyspace) = (config.clone(), keyspace.clone());
        let lifecycle = driver::Lifecycle {
            reopen: Some(Box::new(move || {
                let storage = open_disk_at(&reopen_config, &directory)
                    .map_err(OpenError::into_storage_error)?;
                let id = NodeId(reopen_config.node_id);
                let members =
                    reopen_config.members.iter().map(|member| NodeId(member.id)).collect();
                Node::new(
                    node_config(&reopen_config, &reopen_keyspace, members),
                    id,
                    seed_for(id),
                    Instant::ZERO,
                    storage,
                )
            })),
            scrub_interval: match config.scrub_interval_s {
                0 => None,
                seconds => Some(StdDuration::from_secs(seconds)),
            },
        };
        starts.push(KeyspaceStart { keyspace, storage, lifecycle });
    }
    start_keyspaces(config, starts).await
}

/// Where `keyspace` keeps its data: the default keyspace directly in `data_dir`, as before
/// keyspaces existed (so existing data stays where it is), any other in
/// `<data_dir>/keyspaces/<name>/`.
pub fn keyspace_dir(config: &NodeFileConfig, keyspace: &Keyspace) -> std::path::PathBuf {
    if keyspace.is_default() {
        config.data_dir.clone()
    } else {
        config.data_dir.join("keyspaces").join(&keyspace.name)
    }
}

/// Opens the storage in `directory`, waiting a little for its lock: a node stopped a moment ago
/// in this process may still be releasing it.
async fn open_disk_waiting(
    config: &NodeFileConfig,
    directory: &std::path::Path,
) -> Result<disk::DiskStorage, StartError> {
    let mut attempts = 0;
    loop {
        let (open_config, open_directory) = (config.clone(), directory.to_path_buf());
        let opened =
            tokio::task::spawn_blocking(move || open_disk_at(&open_config, &open_directory)).await;
        let opened = opened.unwrap_or_else(|error| {
            Err(OpenError::Storage(ringkv_core::StorageError(format!("open task failed: {error}"))))
        });
        match opened {
            Ok(storage) => return Ok(storage),
            Err(OpenError::Locked(error)) if attempts < 40 => {
                attempts += 1;
                tracing::debug!(%error, "waiting for the data directory lock");
                tokio::time::sleep(StdDuration::from_millis(50)).await;
            }
            Err(OpenError::Locked(error) | OpenError::Storage(error)) => return Err(error.into()),
        }
    }
}

/// Why [`open_disk`] failed.
#[derive(Debug)]
pub enum OpenError {
    /// Another holder has the directory's lock (perhaps a node of this process still stopping).
    Locked(ringkv_core::StorageError),
    /// The directory or the engine could not be opened.
    Storage(ringkv_core::StorageError),
}

impl OpenError {
    fn into_storage_error(self) -> ringkv_core::StorageError {
        match self {
            OpenError::Locked(error) | OpenError::Storage(error) => error,
        }
    }
}

/// Locks `config.data_dir` and opens the default keyspace's engine in it ([`open_disk_at`]).
pub fn open_disk(config: &NodeFileConfig) -> Result<disk::DiskStorage, OpenError> {
    open_disk_at(config, &config.data_dir)
}

/// Locks `data_dir` (created if missing) and opens the engine in it by the start-up policy
/// (`LsmStorage::open_or_rebuild`): a disk whose recovery finds corruption, or that was marked
/// corrupt while running, has its engine files moved aside and starts blank; the node then
/// draws a new epoch and serves no reads until anti-entropy has refilled it. Blocks on the disk.
pub fn open_disk_at(
    config: &NodeFileConfig,
    data_dir: &std::path::Path,
) -> Result<disk::DiskStorage, OpenError> {
    let directory = data_dir.display().to_string();
    std::fs::create_dir_all(data_dir).map_err(|error| {
        OpenError::Storage(ringkv_core::StorageError(format!("cannot create {directory}: {error}")))
    })?;
    let fs = ringkv_storage::StdFs::new(data_dir).map_err(|error| {
        OpenError::Storage(ringkv_core::StorageError(format!("cannot open {directory}: {error}")))
    })?;
    let lock = fs.lock().map_err(|error| {
        OpenError::Locked(ringkv_core::StorageError(format!("cannot lock {directory}: {error}")))
    })?;
    let defaults = ringkv_core::lsm::LsmStorage::<ringkv_storage::StdFs>::node_options();
    let options = ringkv_storage::Options {
        memtable_bytes_max: config.memtable_bytes_max,
        table: ringkv_storage::TableOptions {
            compression: config.compression.engine(),
            ..defaults.table
        },
        ..defaults
    };
    let (engine, rebuilt) =
        ringkv_core::lsm::LsmStorage::open_or_rebuild(fs, options).map_err(OpenError::Storage)?;
    if let Some(reason) = rebuilt {
        tracing::warn!(
            %reason,
            directory,
            "the disk was damaged: its files were moved aside (quarantine-*) and the node starts \
             blank, to be refilled by the other replicas"
        );
    }
    Ok(disk::DiskStorage::new(engine, lock))
}

/// Starts a node on `storage` with the settings of `config`, without restarts or scrubs.
pub async fn start<S: driver::DriverStorage + driver::StorageHealth>(
    config: &NodeFileConfig,
    storage: S,
) -> Result<RunningNode, StartError> {
    start_with(config, storage, driver::Lifecycle::none()).await
}

/// Starts a node on `storage` with the settings of `config`; `lifecycle` says how the node is
/// restarted when its storage fails and how often it is scrubbed. Only for a node with just the
/// default keyspace: the storage of others is opened by [`start_on_disk`].
pub async fn start_with<S: driver::DriverStorage + driver::StorageHealth>(
    config: &NodeFileConfig,
    storage: S,
    lifecycle: driver::Lifecycle<S>,
) -> Result<RunningNode, StartError> {
    let mut keyspaces = config.keyspaces();
    if keyspaces.len() != 1 {
        return Err(StartError::Keyspaces(format!(
            "the configuration declares {} keyspaces but one store was given; start the node \
             with start_on_disk, which opens each keyspace's directory",
            keyspaces.len()
        )));
    }
    let keyspace = keyspaces.remove(0);
    start_keyspaces(config, vec![KeyspaceStart { keyspace, storage, lifecycle }]).await
}

/// One keyspace's node as it starts: its storage, and how it is restarted and scrubbed.
pub struct KeyspaceStart<S: ringkv_core::storage::Storage> {
    /// The keyspace.
    pub keyspace: Keyspace,
    /// Its store.
    pub storage: S,
    /// How its node is restarted when the store fails, and how often it is scrubbed.
    pub lifecycle: driver::Lifecycle<S>,
}

/// Starts a node of one core `Node` per keyspace of `starts` (the default keyspace first)
/// behind one set of listeners and peer links.
pub async fn start_keyspaces<S: driver::DriverStorage + driver::StorageHealth>(
    config: &NodeFileConfig,
    starts: Vec<KeyspaceStart<S>>,
) -> Result<RunningNode, StartError> {
    let id = NodeId(config.node_id);
    let members: Vec<NodeId> = config.members.iter().map(|member| NodeId(member.id)).collect();
    let tls = match &config.tls {
        Some(files) => {
            tls::install_crypto_provider();
            Some(Arc::new(TlsState::load(files.clone())?))
        }
        None => None,
    };
    let client_listener = bind(config.client_addr).await?;
    let tls_client_listener = match tls.as_ref().and_then(|tls| tls.client_addr()) {
        Some(address) => Some(bind(address).await?),
        None => None,
    };
    let peer_listener = bind(config.peer_addr).await?;
    let metrics_listener = match config.metrics_addr {
        Some(address) => Some(bind(address).await?),
        None => None,
    };
    let metrics = Arc::new(Metrics::default());
    // Every keyspace's node is built before any task starts, so a store that fails to recover
    // stops the start with nothing running.
    let mut nodes = Vec::new();
    for start in starts {
        let node_config = node_config(config, &start.keyspace, members.clone());
        let node = Node::new(node_config, id, seed_for(id), Instant::ZERO, start.storage)?;
        nodes.push((start.keyspace, node, start.lifecycle));
    }
    let settings = Arc::new(PeerSettings {
        me: id,
        cluster: config.cluster.clone(),
        secret: config.cluster_secret.as_bytes().to_vec(),
        frame_bytes_max: config.value_bytes_max + config.key_bytes_max + 64 * 1024,
        queue_len_max: 65_536,
        // Short, so that a healed partition is bridged within a few hundred milliseconds; a
        // dial is one SYN, cheap to repeat (peer.rs, module documentation).
        backoff_max: StdDuration::from_millis(200),
        connect_timeout: StdDuration::from_millis(500),
        user_timeout: StdDuration::from_millis(1_500),
        tls: tls.clone().filter(|_| config.tls.as_ref().is_some_and(|t| t.peer_ca_pem.is_some())),
    });
    let handles_slot = Arc::new(std::sync::OnceLock::new());
    let dialer = peer::PeerDialer::new(settings.clone(), handles_slot.clone(), metrics.clone());
    for member in &config.members {
        dialer.dial_address(NodeId(member.id), member.peer_addr);
    }
    let work_interval = match config.durability {
        config::Durability::Fsync => None,
        config::Durability::Interval(interval_ms) => Some(StdDuration::from_millis(interval_ms)),
    };
    let mut keyspace_handles = Vec::new();
    let mut node_tasks = Vec::new();
    for (keyspace, node, lifecycle) in nodes {
        let tag = (!keyspace.is_default()).then(|| keyspace.name.clone());
        let queues = dialer.queues_for(tag);
        let replicas_n = keyspace.config.replicas_n;
        let (handle, node_task) =
            driver::spawn(node, queues, metrics.clone(), work_interval, lifecycle, replicas_n);
        keyspace_handles.push(KeyspaceHandle::new(&keyspace, handle));
        node_tasks.push(node_task);
    }
    drop(dialer);
    let handles = Arc::new(NodeHandles::new(keyspace_handles));
    let handle = handles.default_keyspace().node.clone();
    // The dial tasks wait for these handles before they report peer status.
    let _ = handles_slot.set(handles.clone());
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(peer::accept(
        peer_listener.1,
        settings,
        handles.clone(),
        metrics.clone(),
    )));
    let server_settings = Arc::new(ServerSettings {
        users: Arc::new(Users::new(config.password.clone(), &config.users)),
        tls: tls.clone(),
        connections_max: config.connections_max,
        pipeline_depth_max: config.pipeline_depth_max,
        read_consistency: handles.default_keyspace().read_consistency,
        write_consistency: handles.default_keyspace().write_consistency,
        resp: resp::RespLimits {
            bulk_bytes_max: config.value_bytes_max.max(config.key_bytes_max) + 1,
            ..resp::RespLimits::default()
        },
        allow_flush: config.allow_flush,
        replicas_n: handles.default_keyspace().replicas_n,
        data_dir: Some(config.data_dir.clone()),
        keyspaces: Some(handles.clone()),
    });
    if users_without_a_default_password(config) {
        tracing::warn!(
            "users are configured but the default user has no password: connections that do not \
             AUTH run every command as `default` (set `password` to require a login)"
        );
    }
    let tls_client_addr = match (tls_client_listener, &tls) {
        (Some((address, tls_listener)), Some(tls)) => {
            tasks.push(tokio::spawn(server::serve_with_tls(
                client_listener.1,
                tls_listener,
                handle.clone(),
                server_settings,
                metrics.clone(),
                tls.clone(),
            )));
            Some(address)
        }
        _ => {
            tasks.push(tokio::spawn(server::serve(
                client_listener.1,
                handle.clone(),
                server_settings,
                metrics.clone(),
            )));
            None
        }
    };
    for keyspace in handles.all() {
        // The default keyspace's values keep their names of before keyspaces; another's are
        // prefixed with `keyspace_<name>_`.
        let prefix =
            if keyspace.db == 0 { String::new() } else { format!("keyspace_{}_", keyspace.name) };
        tasks.push(tokio::spawn(export_node_counters(
            keyspace.node.clone(),
            metrics.clone(),
            prefix,
        )));
    }
    let metrics_addr = match metrics_listener {
        Some((address, listener)) => {
            tasks.push(tokio::spawn(metrics::serve(listener, metrics.clone())));
            Some(address)
        }
        None => None,
    };
    Ok(RunningNode {
        id,
        client_addr: client_listener.0,
        peer_addr: peer_listener.0,
        metrics_addr,
        tls_client_addr,
        tls,
        handle,
        handles,
        metrics,
        tasks,
        node_tasks,
    })
}

/// Whether named users exist while the default user needs no password, which makes them
/// pointless for access control (Redis behaves the same; the start warns).
fn users_without_a_default_password(config: &NodeFileConfig) -> bool {
    !config.users.is_empty()
        && config.password.is_none()
        && !config.users.iter().any(|user| user.name == users::DEFAULT_USER)
}

/// Copies the node's counters into the metrics once a second, so `/metrics` shows them without
/// the scrape waiting on the node.
async fn export_node_counters(node: NodeHandle, metrics: Arc<Metrics>, prefix: String) {
    let mut ticker = tokio::time::interval(StdDuration::from_secs(1));
    loop {
        ticker.tick().await;
        let Some(status) = node.status().await else { return };
        let counters = status.counters;
        metrics.set_node_values(
            status.storage.iter().map(|(name, value)| (format!("{prefix}{name}"), *value)),
        );
        let values = [
            ("read_repairs_sent_total".to_string(), counters.read_repairs_sent),
            ("peer_messages_dropped_total".to_string(), counters.peer_messages_dropped),
            ("tombstones_purged_total".to_string(), counters.tombstones_purged),
            ("client_errors_total".to_string(), counters.client_errors),
            ("storage_errors_total".to_string(), counters.storage_errors),
            ("duplicate_forwards_total".to_string(), counters.duplicate_forwards),
            ("gossip_rounds_total".to_string(), counters.gossip_rounds),
            ("hints_stored_total".to_string(), counters.hints_stored),
            ("hints_replayed_total".to_string(), counters.hints_replayed),
            ("hints_dropped_total".to_string(), counters.hints_dropped),
            ("repair_exchanges_total".to_string(), counters.repair_exchanges),
            ("repair_keys_compared_total".to_string(), counters.repair_keys_compared),
            ("repair_keys_streamed_total".to_string(), counters.repair_keys_streamed),
            ("repair_slices_narrowed_total".to_string(), counters.repair_slices_narrowed),
            ("epoch".to_string(), u64::from(status.epoch)),
        ];
        metrics.set_node_values(
            values.into_iter().map(|(name, value)| (format!("{prefix}{name}"), value)),
        );
    }
}

/// The configuration of `keyspace`'s node on this process.
fn node_config(config: &NodeFileConfig, keyspace: &Keyspace, members: Vec<NodeId>) -> NodeConfig {
    let mut node = NodeConfig::new(members);
    node.address = config.peer_addr.to_string();
    node.join = config.join;
    node.acknowledge_before_sync = config.durability != config::Durability::Fsync;
    let location = config.location();
    node.datacenter = location.datacenter;
    node.rack = location.rack;
    node.locations = config.locations();
    node.vnodes_per_node = config.vnodes;
    node.keyspace = keyspace.config.clone();
    node.limits = Limits {
        key_bytes_max: config.key_bytes_max,
        value_bytes_max: config.value_bytes_max,
        ..Limits::default()
    };
    node.request_timeout = Duration::from_millis(config.request_timeout_ms);
    node.cache_keys_max = config.cache_keys_max;
    node.anti_entropy_interval = Duration::from_secs(config.anti_entropy_interval_s);
    node
}

/// A fresh seed for every start of a node, from the operating system: a node whose disk was lost
/// draws its new epoch from it, so it must never repeat (`Node::new`).
fn seed_for(id: NodeId) -> u64 {
    let nonce = frame::nonce();
    let mut seed = [0u8; 8];
    seed.copy_from_slice(&nonce[..8]);
    u64::from_le_bytes(seed) ^ u64::from(id.0)
}

async fn bind(address: SocketAddr) -> Result<(SocketAddr, TcpListener), StartError> {
    let listener =
        TcpListener::bind(address).await.map_err(|source| StartError::Bind { address, source })?;
    let bound = listener.local_addr().map_err(|source| StartError::Bind { address, source })?;
    Ok((bound, listener))
}
