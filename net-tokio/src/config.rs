//! A node's configuration file, in RON.
//!
//! Every field is named in errors: a missing or unknown field is reported by RON with its line
//! and column, and [`NodeFileConfig::validate`] names the field whose value is wrong.
//!
//! Topology and keyspaces (README.md, "Datacenters, racks and keyspaces"): each member entry
//! says where that member stands (`datacenter`, `rack`), so every node places replicas alike
//! from its first moment; the `keyspaces` list declares the keyspaces a client reaches with
//! `SELECT db`. [`NodeFileConfig::keyspaces`] resolves both into what the nodes run.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ringkv_core::placement::Location;
use ringkv_core::{Consistency, Duration, KeyspaceConfig, NodeId};
use serde::{Deserialize, Serialize};

/// One member of the cluster, where its peer port listens and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberAddress {
    /// The member's node id.
    pub id: u32,
    /// Its peer address.
    pub peer_addr: SocketAddr,
    /// Its datacenter; `dc1` when not given.
    #[serde(default = "default_datacenter")]
    pub datacenter: String,
    /// Its rack within the datacenter; `rack1` when not given.
    #[serde(default = "default_rack")]
    pub rack: String,
}

impl MemberAddress {
    /// A member at the default location (`dc1`, `rack1`).
    pub fn new(id: u32, peer_addr: SocketAddr) -> Self {
        MemberAddress { id, peer_addr, datacenter: default_datacenter(), rack: default_rack() }
    }

    /// Where the member stands.
    pub fn location(&self) -> Location {
        Location::new(self.datacenter.clone(), self.rack.clone())
    }
}

/// How a keyspace reconciles concurrent writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConflictMode {
    /// Dotted version vectors: concurrent writes are kept as siblings. The default.
    Dvv,
    /// Last write wins by hybrid-clock timestamp: concurrent writes are lost, by design.
    Lww,
}

impl ConflictMode {
    /// Core's setting.
    pub fn core(self) -> ringkv_core::ConflictMode {
        match self {
            ConflictMode::Dvv => ringkv_core::ConflictMode::DottedVersionVectors,
            ConflictMode::Lww => ringkv_core::ConflictMode::LastWriteWins,
        }
    }
}

/// One entry of the `keyspaces` list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyspaceFileConfig {
    /// The keyspace's name: 1 to 64 letters, digits, `_` or `-` (it names its directory
    /// `<data_dir>/keyspaces/<name>/` and tags its peer messages).
    pub name: String,
    /// The Redis database number that selects it (`SELECT db`); db 0 is the default keyspace,
    /// which keeps its data directly in `data_dir`.
    pub db: u32,
    /// Replicas per key over the whole cluster; 0 (the default) means the sum of
    /// `replicas_per_dc`, or 3 without it.
    #[serde(default)]
    pub replicas_n: usize,
    /// Replicas per datacenter (`{"dc1": 3, "dc2": 2}`); empty places `replicas_n` replicas
    /// over the whole cluster.
    #[serde(default)]
    pub replicas_per_dc: BTreeMap<String, usize>,
    /// How concurrent writes are reconciled: `Dvv` (the default) or `Lww`.
    #[serde(default = "default_conflict_mode")]
    pub conflict_mode: ConflictMode,
    /// Whether hinted writes on fallback nodes count toward W.
    #[serde(default)]
    pub sloppy_quorum: bool,
    /// How long a fallback keeps a hint for an unreachable replica, in seconds (3 hours).
    #[serde(default = "default_hint_window_s")]
    pub hint_window_s: u64,
    /// How long a tombstone is kept before it may be purged, in seconds (10 days); at least
    /// `hint_window_s`.
    #[serde(default = "default_tombstone_grace_s")]
    pub tombstone_grace_s: u64,
    /// A new connection's read consistency in this keyspace.
    #[serde(default = "default_consistency")]
    pub read_consistency: Consistency,
    /// A new connection's write consistency in this keyspace.
    #[serde(default = "default_consistency")]
    pub write_consistency: Consistency,
}

/// A keyspace as the node runs it, resolved from the configuration ([`NodeFileConfig::keyspaces`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Keyspace {
    /// Its name (`default` for the implicit default keyspace).
    pub name: String,
    /// Its Redis database number.
    pub db: u32,
    /// What its node is configured with.
    pub config: KeyspaceConfig,
    /// A new connection's read consistency.
    pub read_consistency: Consistency,
    /// A new connection's write consistency.
    pub write_consistency: Consistency,
}

impl Keyspace {
    /// Whether this is the default keyspace (db 0), whose data stays in `data_dir` and whose
    /// peer messages carry no tag.
    pub fn is_default(&self) -> bool {
        self.db == 0
    }
}

/// The name of the default keyspace when the `keyspaces` list does not declare db 0.
pub const DEFAULT_KEYSPACE_NAME: &str = "default";

/// Longest keyspace name, in bytes.
const KEYSPACE_NAME_BYTES_MAX: usize = 64;

/// Most keyspaces per node: each runs a node of its own, with its own gossip and storage.
pub const KEYSPACES_MAX: usize = 16;

fn default_conflict_mode() -> ConflictMode {
    ConflictMode::Dvv
}
fn default_hint_window_s() -> u64 {
    3 * 3600
}
fn default_tombstone_grace_s() -> u64 {
    10 * 24 * 3600
}

/// When a node's writes reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Durability {
    /// A write is acknowledged once fsynced (group commit). The default.
    Fsync,
    /// A write is acknowledged once written; storage work, the WAL fsync included, runs every
    /// this many milliseconds, so a power loss can lose that much. There is no `none`: the
    /// engine must sync its WAL before it flushes a memtable, so a long interval is the closest.
    Interval(u64),
}

/// How the node's storage compresses the data blocks of the tables it writes.
///
/// It applies to tables written from the next flush or compaction on: every block records its
/// own codec, so changing it never makes older tables unreadable, and compactions rewrite them
/// with the new setting over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compression {
    /// Blocks are stored as they are.
    None,
    /// LZ4: fast, a moderate ratio. The default.
    Lz4,
    /// Zstandard at `level` (1 to 22; 3 is zstd's own default): a better ratio than LZ4 for
    /// more CPU, mostly when flushing and compacting. RON: `Zstd(level: 3)`.
    Zstd {
        /// The compression level, 1 to 22.
        level: i32,
    },
}

impl Compression {
    /// The storage engine's setting.
    pub fn engine(self) -> ringkv_storage::Compression {
        match self {
            Compression::None => ringkv_storage::Compression::None,
            Compression::Lz4 => ringkv_storage::Compression::Lz4,
            Compression::Zstd { level } => ringkv_storage::Compression::Zstd { level },
        }
    }
}

/// What `ringkv node --config FILE` reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFileConfig {
    /// This node's id; must appear in `members`.
    pub node_id: u32,
    /// The cluster's name; peers of another cluster are refused.
    pub cluster: String,
    /// The shared secret peers prove they know (at least 16 bytes).
    pub cluster_secret: String,
    /// Where Redis clients connect.
    pub client_addr: SocketAddr,
    /// Where peers connect.
    pub peer_addr: SocketAddr,
    /// Where `/metrics` is served, if anywhere.
    #[serde(default)]
    pub metrics_addr: Option<SocketAddr>,
    /// Every member, this node included.
    pub members: Vec<MemberAddress>,
    /// Where the node keeps its data (created if missing).
    pub data_dir: std::path::PathBuf,
    /// When writes reach the disk.
    #[serde(default = "default_durability")]
    pub durability: Durability,
    /// Whether this node joins a running cluster: it is not one of `members`, which then name
    /// the running nodes it contacts (seeds). It streams the ranges it will own, then owns them.
    #[serde(default)]
    pub join: bool,
    /// Replicas per key.
    #[serde(default = "default_replicas_n")]
    pub replicas_n: usize,
    /// Virtual nodes per member.
    #[serde(default = "default_vnodes")]
    pub vnodes: u32,
    /// Default consistency of reads.
    #[serde(default = "default_consistency")]
    pub read_consistency: Consistency,
    /// Default consistency of writes.
    #[serde(default = "default_consistency")]
    pub write_consistency: Consistency,
    /// Whether `FLUSHALL`/`FLUSHDB` may remove every key of the cluster (off by default, so a
    /// stray command cannot wipe a production cluster; `ringkv dev` turns it on for test
    /// harnesses). Every node decides for the clients it serves.
    #[serde(default)]
    pub allow_flush: bool,
    /// Password clients must give with AUTH, if any.
    #[serde(default)]
    pub password: Option<String>,
    /// Largest key, in bytes.
    #[serde(default = "default_key_bytes_max")]
    pub key_bytes_max: usize,
    /// Largest value, in bytes.
    #[serde(default = "default_value_bytes_max")]
    pub value_bytes_max: usize,
    /// Most client connections.
    #[serde(default = "default_connections_max")]
    pub connections_max: usize,
    /// Most pipelined commands per read from a connection.
    #[serde(default = "default_pipeline_depth_max")]
    pub pipeline_depth_max: usize,
    /// Request deadline, in milliseconds.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Keys each keyspace's node keeps decoded in memory (objects, and Paxos acceptor states
    /// apart): a read of a cached key skips the storage lookup and the decode. Once full, a
    /// cache starts over. Roughly 300 bytes per cached key of a 100-byte value.
    #[serde(default = "default_cache_keys_max")]
    pub cache_keys_max: usize,
    /// This node's datacenter. A member takes its location from its own entry in `members`;
    /// given here too, it must agree with that entry (a contradiction is refused). A joining
    /// node, which has no entry, stands here (`dc1` when empty).
    #[serde(default)]
    pub datacenter: String,
    /// This node's rack, under the same rule as `datacenter` (`rack1` when empty).
    #[serde(default)]
    pub rack: String,
    /// Seconds between two scrubs of the node's storage (every table read back from the disk
    /// and checked, so damage is found before a client's read meets it); 0 turns scrubs off.
    /// The node answers nothing while a scrub runs.
    #[serde(default = "default_scrub_interval_s")]
    pub scrub_interval_s: u64,
    /// Bytes of writes a memtable holds before it is frozen and flushed to a table (at least
    /// 4 KiB). Memory per node is about four times this (frozen memtables wait for their flush)
    /// plus the block cache.
    #[serde(default = "default_memtable_bytes_max")]
    pub memtable_bytes_max: usize,
    /// How new tables compress their data blocks: `None`, `Lz4` (the default) or
    /// `Zstd(level: N)` with N from 1 to 22. Text-like values take a fraction of the space with
    /// LZ4; random or already compressed values are stored raw block by block (README.md,
    /// "Compression").
    #[serde(default = "default_compression")]
    pub compression: Compression,
    /// Seconds between two cycles of anti-entropy (at least 1). A cycle compares one replica
    /// group with its other replicas in slices of about 10,000 keys, one slice every 100 ms
    /// (ARCHITECTURE.md, "Repair"); hinted handoff and read repair mend most misses long
    /// before.
    #[serde(default = "default_anti_entropy_interval_s")]
    pub anti_entropy_interval_s: u64,
    /// Threads of the node's tokio runtime (1 to 1024). The node's logic is one task either
    /// way; with 1 its connections and peer links share that thread and hand requests to it
    /// without a cross-thread wake-up, which measured fastest on a 2-core machine
    /// (ARCHITECTURE.md, "Runtime"). More threads spread the parsing and encoding of many busy
    /// connections over more cores.
    #[serde(default = "default_worker_threads")]
    pub worker_threads: usize,
    /// Log filter, as `RUST_LOG` takes it (`info`, `ringkv_net=debug`).
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// TLS for a client port of its own and for peer links; `None` keeps everything plain
    /// (README.md, "TLS").
    #[serde(default)]
    pub tls: Option<TlsFileConfig>,
    /// Named users besides `default`, who log in with `AUTH name password` (README.md,
    /// "Users"). The `default` user is the `password` field.
    #[serde(default)]
    pub users: Vec<UserFileConfig>,
    /// Keyspaces a client selects with `SELECT db` (README.md, "Keyspaces"). Empty: one
    /// keyspace, db 0, configured by the top-level `replicas_n` and consistency fields. An
    /// entry with db 0 configures the default keyspace instead of those fields.
    #[serde(default)]
    pub keyspaces: Vec<KeyspaceFileConfig>,
}

/// The `tls` section: PEM files and where TLS is spoken. The files are read at start and again
/// on `ringkv admin reload-tls` or SIGHUP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFileConfig {
    /// This node's certificate chain, leaf first. It serves clients and peers alike, so with
    /// `peer_ca_pem` it must be signed by that CA.
    pub cert_pem: PathBuf,
    /// The private key of the leaf certificate (PKCS#8, PKCS#1 or SEC1).
    pub key_pem: PathBuf,
    /// Where TLS clients connect, beside the plain `client_addr` (as Redis's `tls-port`);
    /// `None` serves no TLS clients.
    #[serde(default)]
    pub client_addr: Option<SocketAddr>,
    /// When given, TLS clients must present a certificate signed by one of these CAs.
    #[serde(default)]
    pub client_ca_pem: Option<PathBuf>,
    /// When given, peer links are TLS: a node trusts a peer's certificate only if one of these
    /// CAs signed it. Every member must then have it (the peer port speaks TLS only).
    #[serde(default)]
    pub peer_ca_pem: Option<PathBuf>,
    /// Whether a dialling peer must present a certificate signed by `peer_ca_pem` too (mutual
    /// TLS). The cluster secret's HMAC handshake runs inside TLS either way.
    #[serde(default = "default_peer_mutual_tls")]
    pub peer_mutual_tls: bool,
    /// The name a peer's certificate must carry; `None` checks the dialled IP address instead
    /// (the certificate then needs that IP as a subject alternative name).
    #[serde(default)]
    pub peer_server_name: Option<String>,
    /// How long a TLS handshake may take before the connection is closed, in milliseconds.
    #[serde(default = "default_tls_handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
}

fn default_peer_mutual_tls() -> bool {
    true
}
fn default_tls_handshake_timeout_ms() -> u64 {
    3_000
}

/// One named user of the `users` list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserFileConfig {
    /// The name given to `AUTH name password`.
    pub name: String,
    /// The password's argon2 hash as a PHC string (`ringkv hash-password` prints one).
    pub password_hash: String,
    /// What the user may do.
    pub access: Access,
}

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Access {
    /// Every command.
    ReadWrite,
    /// Reads and connection commands only; anything else gets `NOPERM`.
    ReadOnly,
}

fn default_worker_threads() -> usize {
    1
}

/// Most runtime threads accepted.
const WORKER_THREADS_MAX: usize = 1024;

fn default_memtable_bytes_max() -> usize {
    16 << 20
}

fn default_compression() -> Compression {
    Compression::Lz4
}

/// Smallest memtable accepted: smaller ones flush a table every few writes.
const MEMTABLE_BYTES_MIN: usize = 4 << 10;

fn default_durability() -> Durability {
    Durability::Fsync
}
fn default_replicas_n() -> usize {
    3
}
fn default_vnodes() -> u32 {
    ringkv_core::ring::VNODES_PER_WEIGHT_DEFAULT
}
fn default_consistency() -> Consistency {
    Consistency::Quorum
}
fn default_key_bytes_max() -> usize {
    64 * 1024
}
fn default_value_bytes_max() -> usize {
    10 * 1024 * 1024
}
fn default_connections_max() -> usize {
    10_000
}
fn default_pipeline_depth_max() -> usize {
    1_024
}
fn default_request_timeout_ms() -> u64 {
    1_000
}
/// 131,072 keys: about 40 MiB per cache at 100-byte values, and a working set of 100,000 keys
/// (redis-benchmark's `-r 100000`) stays cached once the memtable no longer holds it.
fn default_cache_keys_max() -> usize {
    131_072
}
fn default_datacenter() -> String {
    "dc1".into()
}
fn default_rack() -> String {
    "rack1".into()
}
fn default_anti_entropy_interval_s() -> u64 {
    60
}

fn default_scrub_interval_s() -> u64 {
    // Daily: bit rot is rare and a scrub reads everything.
    24 * 60 * 60
}
fn default_log_level() -> String {
    "info".into()
}

/// A configuration that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid RON for this schema (the message has line and column).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// RON's message.
        message: String,
    },
    /// A field has a value that cannot work.
    #[error("field `{field}`: {reason}")]
    Invalid {
        /// The field (`keyspaces[name].field` for a keyspace's).
        field: String,
        /// Why.
        reason: String,
    },
}

impl NodeFileConfig {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<NodeFileConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        let config = NodeFileConfig::parse(&text).map_err(|error| match error {
            ConfigError::Parse { message, .. } => {
                ConfigError::Parse { path: path.display().to_string(), message }
            }
            other => other,
        })?;
        Ok(config)
    }

    /// Parses and validates RON text.
    pub fn parse(text: &str) -> Result<NodeFileConfig, ConfigError> {
        let config: NodeFileConfig = ron::from_str(text).map_err(|error| ConfigError::Parse {
            path: "<text>".into(),
            message: error.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the values together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid =
            |field: &str, reason: String| Err(ConfigError::Invalid { field: field.into(), reason });
        let ids: BTreeSet<u32> = self.members.iter().map(|member| member.id).collect();
        if ids.len() != self.members.len() {
            return invalid("members", "a node id appears twice".into());
        }
        if !self.join && !ids.contains(&self.node_id) {
            let reason = format!(
                "{} is not among the members {ids:?} (set join: true to join a running cluster)",
                self.node_id
            );
            return invalid("node_id", reason);
        }
        if self.join && ids.contains(&self.node_id) {
            return invalid(
                "join",
                format!("node {} is already a member; join is for new nodes", self.node_id),
            );
        }
        if self.cluster_secret.len() < 16 {
            return invalid(
                "cluster_secret",
                format!("{} bytes; use at least 16", self.cluster_secret.len()),
            );
        }
        if self.data_dir.as_os_str().is_empty() {
            return invalid("data_dir", "must not be empty".into());
        }
        if self.cluster.is_empty() {
            return invalid("cluster", "must not be empty".into());
        }
        if self.durability == Durability::Interval(0) {
            return invalid(
                "durability",
                "Interval needs a positive number of milliseconds".into(),
            );
        }
        if self.memtable_bytes_max < MEMTABLE_BYTES_MIN {
            return invalid(
                "memtable_bytes_max",
                format!("{} bytes; use at least {MEMTABLE_BYTES_MIN}", self.memtable_bytes_max),
            );
        }
        if let Err(reason) = self.compression.engine().validate() {
            return invalid("compression", reason);
        }
        if self.vnodes == 0 {
            return invalid("vnodes", "must be at least 1".into());
        }
        if self.anti_entropy_interval_s == 0 {
            // Without anti-entropy a node rebuilt after disk damage would answer reads blank.
            return invalid("anti_entropy_interval_s", "must be at least 1 second".into());
        }
        if self.worker_threads == 0 || self.worker_threads > WORKER_THREADS_MAX {
            return invalid(
                "worker_threads",
                format!("{} threads; use 1 to {WORKER_THREADS_MAX}", self.worker_threads),
            );
        }
        if self.cache_keys_max == 0 {
            return invalid("cache_keys_max", "must be positive".into());
        }
        if self.request_timeout_ms == 0 {
            return invalid("request_timeout_ms", "must be positive".into());
        }
        if self.key_bytes_max == 0
            || self.value_bytes_max == 0
            || self.connections_max == 0
            || self.pipeline_depth_max == 0
        {
            return invalid("limits", "key_bytes_max, value_bytes_max, connections_max and pipeline_depth_max must be positive".into());
        }
        if let Some(tls) = &self.tls {
            validate_tls(tls)?;
        }
        validate_users(&self.users, self.password.is_some())?;
        self.validate_location()?;
        self.validate_keyspaces()
    }

    /// Where this node stands: its entry in `members`, or for a joining node (which has none)
    /// the top-level `datacenter` and `rack`.
    pub fn location(&self) -> Location {
        match self.members.iter().find(|member| member.id == self.node_id) {
            Some(member) => member.location(),
            None => Location::new(
                non_empty_or(&self.datacenter, ringkv_core::placement::DATACENTER_DEFAULT),
                non_empty_or(&self.rack, ringkv_core::placement::RACK_DEFAULT),
            ),
        }
    }

    /// Where every configured member stands, this node included (a joining node too).
    pub fn locations(&self) -> BTreeMap<NodeId, Location> {
        let mut locations: BTreeMap<NodeId, Location> =
            self.members.iter().map(|member| (NodeId(member.id), member.location())).collect();
        locations.insert(NodeId(self.node_id), self.location());
        locations
    }

    /// The keyspaces this node runs, the default keyspace (db 0) first, then by db number.
    /// Without a `keyspaces` list, or without db 0 in it, the default keyspace is named
    /// [`DEFAULT_KEYSPACE_NAME`] and configured by the top-level `replicas_n`,
    /// `read_consistency` and `write_consistency`.
    pub fn keyspaces(&self) -> Vec<Keyspace> {
        let mut keyspaces: Vec<Keyspace> = self.keyspaces.iter().map(resolve_keyspace).collect();
        if !keyspaces.iter().any(Keyspace::is_default) {
            keyspaces.push(Keyspace {
                name: DEFAULT_KEYSPACE_NAME.into(),
                db: 0,
                config: KeyspaceConfig { replicas_n: self.replicas_n, ..KeyspaceConfig::default() },
                read_consistency: self.read_consistency,
                write_consistency: self.write_consistency,
            });
        }
        keyspaces.sort_by_key(|keyspace| keyspace.db);
        keyspaces
    }

    /// Refuses a top-level `datacenter` or `rack` that contradicts this node's member entry,
    /// and empty labels in entries.
    fn validate_location(&self) -> Result<(), ConfigError> {
        let invalid =
            |field: &str, reason: String| Err(ConfigError::Invalid { field: field.into(), reason });
        for member in &self.members {
            if member.datacenter.is_empty() || member.rack.is_empty() {
                return invalid(
                    "members",
                    format!("member {} has an empty datacenter or rack", member.id),
                );
            }
        }
        let Some(entry) = self.members.iter().find(|member| member.id == self.node_id) else {
            return Ok(());
        };
        for (field, given, listed) in
            [("datacenter", &self.datacenter, &entry.datacenter), ("rack", &self.rack, &entry.rack)]
        {
            if !given.is_empty() && given != listed {
                return invalid(
                    field,
                    format!(
                        "`{given}` contradicts this node's entry in `members` (id {}), which says \
                         `{listed}`{}; the member entry is what every node places replicas by, \
                         so give the location there",
                        entry.id,
                        if listed == &default_datacenter() || listed == &default_rack() {
                            " (its default)"
                        } else {
                            ""
                        }
                    ),
                );
            }
        }
        Ok(())
    }

    /// Checks every keyspace against the others and against the cluster's topology.
    fn validate_keyspaces(&self) -> Result<(), ConfigError> {
        let invalid = |field: String, reason: String| Err(ConfigError::Invalid { field, reason });
        if self.keyspaces.len() > KEYSPACES_MAX {
            return invalid(
                "keyspaces".into(),
                format!("{} keyspaces; at most {KEYSPACES_MAX}", self.keyspaces.len()),
            );
        }
        let mut names = BTreeSet::new();
        let mut dbs = BTreeSet::new();
        for entry in &self.keyspaces {
            let field = |name: &str| format!("keyspaces[{}].{name}", entry.name);
            if !valid_keyspace_name(&entry.name) {
                return invalid(
                    "keyspaces".into(),
                    format!(
                        "keyspace name `{}` must be 1 to {KEYSPACE_NAME_BYTES_MAX} letters, \
                         digits, '_' or '-'",
                        entry.name
                    ),
                );
            }
            if !names.insert(entry.name.as_str()) {
                return invalid(
                    "keyspaces".into(),
                    format!("keyspace `{}` is declared twice", entry.name),
                );
            }
            if !dbs.insert(entry.db) {
                return invalid(
                    field("db"),
                    format!("db {} is already another keyspace's", entry.db),
                );
            }
            if entry.db != 0 && entry.name == DEFAULT_KEYSPACE_NAME && !self.declares_db_zero() {
                return invalid(
                    field("db"),
                    format!("`{DEFAULT_KEYSPACE_NAME}` names the keyspace of db 0"),
                );
            }
            let given_sum: usize = entry.replicas_per_dc.values().sum();
            if entry.replicas_n != 0
                && !entry.replicas_per_dc.is_empty()
                && entry.replicas_n != given_sum
            {
                return invalid(
                    field("replicas_n"),
                    format!(
                        "{} replicas, but replicas_per_dc sums to {given_sum}; give one of them",
                        entry.replicas_n
                    ),
                );
            }
            if entry.hint_window_s == 0 {
                return invalid(field("hint_window_s"), "must be at least 1 second".into());
            }
            if entry.tombstone_grace_s < entry.hint_window_s {
                return invalid(
                    field("tombstone_grace_s"),
                    format!(
                        "{} s is shorter than the hint window of {} s: a hint replayed after \
                         the grace would bring back a value whose tombstone was purged",
                        entry.tombstone_grace_s, entry.hint_window_s
                    ),
                );
            }
        }
        if self.declares_db_zero() {
            let defaults = NodeFileConfig::top_level_defaults();
            for (field, differs) in [
                ("replicas_n", self.replicas_n != defaults.0),
                ("read_consistency", self.read_consistency != defaults.1),
                ("write_consistency", self.write_consistency != defaults.1),
            ] {
                if differs {
                    return invalid(
                        field.into(),
                        "the keyspace with db 0 in `keyspaces` configures the default keyspace; \
                         give this there instead"
                            .into(),
                    );
                }
            }
        }
        for keyspace in self.keyspaces() {
            self.validate_placement(&keyspace)?;
        }
        Ok(())
    }

    fn declares_db_zero(&self) -> bool {
        self.keyspaces.iter().any(|entry| entry.db == 0)
    }

    /// The top-level defaults a db-0 entry must not be contradicted by: N, consistency.
    fn top_level_defaults() -> (usize, Consistency) {
        (default_replicas_n(), default_consistency())
    }

    /// Checks that a keyspace's replicas fit the cluster and its default levels can be met.
    fn validate_placement(&self, keyspace: &Keyspace) -> Result<(), ConfigError> {
        let field = |name: &str| {
            if self.keyspaces.is_empty() || (keyspace.is_default() && !self.declares_db_zero()) {
                name.to_string()
            } else {
                format!("keyspaces[{}].{name}", keyspace.name)
            }
        };
        let invalid = |field: String, reason: String| Err(ConfigError::Invalid { field, reason });
        let locations = self.locations();
        let mut nodes_per_dc: BTreeMap<&str, usize> = BTreeMap::new();
        for location in locations.values() {
            *nodes_per_dc.entry(location.datacenter.as_str()).or_default() += 1;
        }
        let replicas_n = keyspace.config.replicas_n;
        let per_dc = &keyspace.config.replicas_per_dc;
        for (datacenter, count) in per_dc {
            let Some(nodes) = nodes_per_dc.get(datacenter.as_str()) else {
                return invalid(
                    field("replicas_per_dc"),
                    format!(
                        "datacenter `{datacenter}` has no member (members stand in {})",
                        nodes_per_dc.keys().copied().collect::<Vec<_>>().join(", ")
                    ),
                );
            };
            if *count == 0 || count > nodes {
                return invalid(
                    field("replicas_per_dc"),
                    format!("{count} replicas in `{datacenter}`, which has {nodes} members"),
                );
            }
        }
        if replicas_n == 0 || replicas_n > locations.len() {
            return invalid(
                field("replicas_n"),
                format!("{replicas_n} replicas with {} members", locations.len()),
            );
        }
        let local = self.location().datacenter;
        for (name, consistency) in [
            ("read_consistency", keyspace.read_consistency),
            ("write_consistency", keyspace.write_consistency),
        ] {
            if let Err(reason) =
                level_possible(consistency, replicas_n, per_dc, &nodes_per_dc, &local)
            {
                return invalid(field(name), reason);
            }
        }
        Ok(())
    }
}

/// Whether requests at `consistency` can succeed in a keyspace of `replicas_n` replicas placed
/// by `per_dc` (empty: over the whole cluster) at a coordinator in `local`; the reason if not.
pub fn level_possible(
    consistency: Consistency,
    replicas_n: usize,
    per_dc: &BTreeMap<String, usize>,
    nodes_per_dc: &BTreeMap<&str, usize>,
    local: &str,
) -> Result<(), String> {
    if consistency.is_local() {
        if per_dc.is_empty() && nodes_per_dc.len() > 1 {
            return Err(format!(
                "{consistency:?} needs replicas in this node's datacenter `{local}`, but the \
                 keyspace places its replicas over the whole cluster (give replicas_per_dc)"
            ));
        }
        if !per_dc.is_empty() && !per_dc.contains_key(local) {
            return Err(format!(
                "{consistency:?}: the keyspace keeps no replicas in this node's datacenter \
                 `{local}`"
            ));
        }
        return Ok(());
    }
    if consistency == Consistency::EachQuorum {
        return Ok(());
    }
    consistency.required(replicas_n).map(|_| ()).map_err(|error| error.to_string())
}

/// A `keyspaces` entry as its node runs it.
fn resolve_keyspace(entry: &KeyspaceFileConfig) -> Keyspace {
    let replicas_n = match (entry.replicas_n, entry.replicas_per_dc.values().sum::<usize>()) {
        (0, 0) => default_replicas_n(),
        (0, sum) => sum,
        (given, _) => given,
    };
    Keyspace {
        name: entry.name.clone(),
        db: entry.db,
        config: KeyspaceConfig {
            replicas_n,
            replicas_per_dc: entry.replicas_per_dc.clone(),
            conflict_mode: entry.conflict_mode.core(),
            tombstone_grace: Duration::from_secs(entry.tombstone_grace_s),
            sloppy_quorum: entry.sloppy_quorum,
            hint_window: Duration::from_secs(entry.hint_window_s),
        },
        read_consistency: entry.read_consistency,
        write_consistency: entry.write_consistency,
    }
}

fn valid_keyspace_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= KEYSPACE_NAME_BYTES_MAX
        && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
}

fn non_empty_or(text: &str, fallback: &str) -> String {
    if text.is_empty() { fallback } else { text }.to_string()
}

/// Checks the `tls` section's values; the files themselves are read when the node starts
/// (`tls::TlsState::load`), which names the field and the file of any that cannot be used.
fn validate_tls(tls: &TlsFileConfig) -> Result<(), ConfigError> {
    let invalid =
        |field: &str, reason: String| Err(ConfigError::Invalid { field: field.into(), reason });
    if tls.client_addr.is_none() && tls.peer_ca_pem.is_none() {
        return invalid(
            "tls",
            "enables nothing: give client_addr (a TLS client port) or peer_ca_pem (TLS peer \
             links), or both"
                .into(),
        );
    }
    if tls.handshake_timeout_ms == 0 {
        return invalid("tls.handshake_timeout_ms", "must be positive".into());
    }
    if let Some(name) = &tls.peer_server_name {
        if rustls_pki_types::ServerName::try_from(name.as_str()).is_err() {
            return invalid("tls.peer_server_name", format!("`{name}` is not a DNS name or IP"));
        }
    }
    Ok(())
}

/// Checks the `users` list: names are unique words, hashes are argon2 PHC strings.
fn validate_users(users: &[UserFileConfig], has_default_password: bool) -> Result<(), ConfigError> {
    let invalid = |reason: String| Err(ConfigError::Invalid { field: "users".into(), reason });
    let mut names = BTreeSet::new();
    for user in users {
        let name = &user.name;
        if name.is_empty() || name.bytes().any(|byte| byte.is_ascii_whitespace() || byte < 0x21) {
            return invalid(format!("user name `{name}` must be a non-empty word"));
        }
        if !names.insert(name.as_str()) {
            return invalid(format!("user `{name}` appears twice"));
        }
        if name == "default" && has_default_password {
            return invalid(
                "user `default` is also given by the `password` field; keep one of them".into(),
            );
        }
        if let Err(reason) = crate::users::parse_password_hash(&user.password_hash) {
            return invalid(format!("user `{name}`: password_hash {reason}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"(
        node_id: 1,
        cluster: "test",
        cluster_secret: "0123456789abcdef",
        client_addr: "127.0.0.1:7001",
        peer_addr: "127.0.0.1:8001",
        members: [(id: 1, peer_addr: "127.0.0.1:8001"), (id: 2, peer_addr: "127.0.0.1:8002"), (id: 3, peer_addr: "127.0.0.1:8003")],
        data_dir: "/var/lib/ringkv",
        write_consistency: All,
        durability: Interval(20),
    )"#;

    #[test]
    fn a_good_file_parses_with_defaults() {
        let config = NodeFileConfig::parse(GOOD).unwrap();
        assert_eq!(config.replicas_n, 3);
        assert_eq!(config.write_consistency, Consistency::All);
        assert_eq!(config.read_consistency, Consistency::Quorum);
        assert_eq!(config.durability, Durability::Interval(20));
        let zero = NodeFileConfig::parse(&GOOD.replace("Interval(20)", "Interval(0)"))
            .unwrap_err()
            .to_string();
        assert!(zero.starts_with("field `durability`"), "{zero}");
        assert_eq!(config.memtable_bytes_max, 16 << 20);
        let tiny = NodeFileConfig::parse(
            &GOOD.replace("durability: Interval(20),", "memtable_bytes_max: 100,"),
        )
        .unwrap_err()
        .to_string();
        assert!(tiny.starts_with("field `memtable_bytes_max`"), "{tiny}");
        assert_eq!(config.cache_keys_max, 131_072);
        let no_cache =
            NodeFileConfig::parse(&GOOD.replace("durability: Interval(20),", "cache_keys_max: 0,"))
                .unwrap_err()
                .to_string();
        assert!(no_cache.starts_with("field `cache_keys_max`"), "{no_cache}");
        assert_eq!(config.anti_entropy_interval_s, 60);
        assert_eq!(config.worker_threads, 1);
        let no_threads =
            NodeFileConfig::parse(&GOOD.replace("durability: Interval(20),", "worker_threads: 0,"))
                .unwrap_err()
                .to_string();
        assert!(no_threads.starts_with("field `worker_threads`"), "{no_threads}");
        let never = NodeFileConfig::parse(
            &GOOD.replace("durability: Interval(20),", "anti_entropy_interval_s: 0,"),
        )
        .unwrap_err()
        .to_string();
        assert!(never.starts_with("field `anti_entropy_interval_s`"), "{never}");
    }

    #[test]
    fn tls_and_users_sections_parse_and_bad_values_name_their_field() {
        let with_tls = GOOD.replace(
            "durability: Interval(20),",
            r#"tls: Some((cert_pem: "/etc/ringkv/node.pem", key_pem: "/etc/ringkv/key.pem",
                client_addr: Some("127.0.0.1:6380"), peer_ca_pem: Some("/etc/ringkv/ca.pem"))),"#,
        );
        let config = NodeFileConfig::parse(&with_tls).unwrap();
        let tls = config.tls.unwrap();
        assert_eq!(tls.client_addr, Some("127.0.0.1:6380".parse().unwrap()));
        assert!(tls.peer_mutual_tls, "mutual TLS is the default");
        assert_eq!(tls.handshake_timeout_ms, 3_000);
        let nothing = GOOD.replace(
            "durability: Interval(20),",
            r#"tls: Some((cert_pem: "a.pem", key_pem: "b.pem")),"#,
        );
        let error = NodeFileConfig::parse(&nothing).unwrap_err().to_string();
        assert!(error.starts_with("field `tls`"), "{error}");
        let bad_name = with_tls
            .replace("peer_ca_pem:", r#"peer_server_name: Some("not a name!"), peer_ca_pem:"#);
        let error = NodeFileConfig::parse(&bad_name).unwrap_err().to_string();
        assert!(error.starts_with("field `tls.peer_server_name`"), "{error}");

        let hash = crate::users::hash_password("pass").unwrap();
        let with_users = GOOD.replace(
            "durability: Interval(20),",
            &format!(r#"users: [(name: "app", password_hash: "{hash}", access: ReadOnly)],"#),
        );
        let config = NodeFileConfig::parse(&with_users).unwrap();
        assert_eq!(config.users[0].access, Access::ReadOnly);
        let plain = with_users.replace(&hash, "hunter2");
        let error = NodeFileConfig::parse(&plain).unwrap_err().to_string();
        assert!(error.starts_with("field `users`: user `app`: password_hash"), "{error}");
        let twice = with_users.replace(
            "access: ReadOnly)",
            &format!(
                r#"access: ReadOnly), (name: "app", password_hash: "{hash}", access: ReadWrite)"#
            ),
        );
        let error = NodeFileConfig::parse(&twice).unwrap_err().to_string();
        assert!(error.contains("appears twice"), "{error}");
        let both_defaults = with_users
            .replace("\"app\"", "\"default\"")
            .replace("users:", "password: Some(\"x\"), users:");
        let error = NodeFileConfig::parse(&both_defaults).unwrap_err().to_string();
        assert!(error.contains("`default`"), "{error}");
    }

    #[test]
    fn compression_defaults_to_lz4_and_a_zstd_level_out_of_range_names_the_field() {
        let with = |setting: &str| {
            NodeFileConfig::parse(
                &GOOD.replace("durability: Interval(20),", &format!("compression: {setting},")),
            )
        };
        let config = NodeFileConfig::parse(GOOD).unwrap();
        assert_eq!(config.compression, Compression::Lz4);
        assert_eq!(config.compression.engine(), ringkv_storage::Compression::Lz4);
        assert_eq!(with("None").unwrap().compression.engine(), ringkv_storage::Compression::None);
        let zstd = with("Zstd(level: 19)").unwrap().compression;
        assert_eq!(zstd.engine(), ringkv_storage::Compression::Zstd { level: 19 });
        for level in [0, 23, -1] {
            let error = with(&format!("Zstd(level: {level})")).unwrap_err().to_string();
            assert!(error.starts_with("field `compression`"), "{error}");
            assert!(
                error.contains("from 1 to 22") && error.contains(&level.to_string()),
                "{error}"
            );
        }
        let unknown = with("Snappy").unwrap_err().to_string();
        assert!(unknown.contains("Snappy"), "{unknown}");
    }

    /// Two datacenters of three nodes, two racks in dc1; this node is 1 (dc1, r1).
    const TWO_DCS: &str = r#"(
        node_id: 1,
        cluster: "test",
        cluster_secret: "0123456789abcdef",
        client_addr: "127.0.0.1:7001",
        peer_addr: "127.0.0.1:8001",
        members: [
            (id: 1, peer_addr: "127.0.0.1:8001", datacenter: "dc1", rack: "r1"),
            (id: 2, peer_addr: "127.0.0.1:8002", datacenter: "dc1", rack: "r2"),
            (id: 3, peer_addr: "127.0.0.1:8003", datacenter: "dc1", rack: "r2"),
            (id: 4, peer_addr: "127.0.0.1:8004", datacenter: "dc2"),
            (id: 5, peer_addr: "127.0.0.1:8005", datacenter: "dc2"),
            (id: 6, peer_addr: "127.0.0.1:8006", datacenter: "dc2"),
        ],
        data_dir: "/var/lib/ringkv",
        keyspaces: [
            (name: "main", db: 0, replicas_per_dc: {"dc1": 3, "dc2": 3},
             read_consistency: LocalQuorum, write_consistency: LocalQuorum),
            (name: "cache", db: 1, replicas_n: 2, conflict_mode: Lww, sloppy_quorum: true,
             hint_window_s: 60, tombstone_grace_s: 3600, read_consistency: One),
        ],
    )"#;

    fn refusal(text: &str) -> String {
        NodeFileConfig::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn member_locations_and_keyspaces_resolve_for_the_nodes() {
        let config = NodeFileConfig::parse(TWO_DCS).unwrap();
        assert_eq!(config.location(), Location::new("dc1", "r1"));
        let locations = config.locations();
        assert_eq!(locations[&NodeId(3)], Location::new("dc1", "r2"));
        assert_eq!(locations[&NodeId(5)], Location::new("dc2", "rack1"), "rack defaults");
        let keyspaces = config.keyspaces();
        assert_eq!(keyspaces.len(), 2);
        let (main, cache) = (&keyspaces[0], &keyspaces[1]);
        assert!(main.is_default() && main.name == "main");
        assert_eq!(main.config.replicas_n, 6, "N is the sum of replicas_per_dc");
        assert_eq!(main.read_consistency, Consistency::LocalQuorum);
        assert_eq!(cache.db, 1);
        assert_eq!(cache.config.replicas_n, 2);
        assert_eq!(cache.config.conflict_mode, ringkv_core::ConflictMode::LastWriteWins);
        assert!(cache.config.sloppy_quorum);
        assert_eq!(cache.config.hint_window, Duration::from_secs(60));
        assert_eq!(cache.write_consistency, Consistency::Quorum, "levels default to QUORUM");

        // Without a list there is one keyspace, from the top-level fields, as before.
        let plain = NodeFileConfig::parse(GOOD).unwrap();
        let keyspaces = plain.keyspaces();
        assert_eq!(keyspaces.len(), 1);
        assert_eq!(keyspaces[0].name, DEFAULT_KEYSPACE_NAME);
        assert_eq!(keyspaces[0].config, KeyspaceConfig::default());
        assert_eq!(keyspaces[0].write_consistency, Consistency::All);
        assert_eq!(plain.location(), Location::default());
        // A list without db 0 keeps the top-level default keyspace beside its entries.
        let beside = NodeFileConfig::parse(&GOOD.replace(
            "durability: Interval(20),",
            r#"keyspaces: [(name: "cache", db: 3, replicas_n: 1)],"#,
        ))
        .unwrap();
        let names: Vec<(String, u32)> =
            beside.keyspaces().into_iter().map(|keyspace| (keyspace.name, keyspace.db)).collect();
        assert_eq!(names, vec![("default".to_string(), 0), ("cache".to_string(), 3)]);
    }

    #[test]
    fn a_top_level_location_must_agree_with_the_member_entry() {
        let agreeing = TWO_DCS.replace("node_id: 1,", r#"node_id: 1, datacenter: "dc1","#);
        assert!(NodeFileConfig::parse(&agreeing).is_ok());
        let contradicting = TWO_DCS.replace("node_id: 1,", r#"node_id: 1, datacenter: "dc2","#);
        let error = refusal(&contradicting);
        assert!(error.starts_with("field `datacenter`: `dc2` contradicts"), "{error}");
        let rack = GOOD.replace("node_id: 1,", r#"node_id: 1, rack: "r9","#);
        let error = refusal(&rack);
        assert!(error.starts_with("field `rack`") && error.contains("(its default)"), "{error}");
    }

    #[test]
    fn impossible_keyspaces_are_refused_naming_the_field() {
        let cases = [
            (
                TWO_DCS.replace("tombstone_grace_s: 3600", "tombstone_grace_s: 30"),
                "field `keyspaces[cache].tombstone_grace_s`: 30 s is shorter than the hint window",
            ),
            (
                TWO_DCS.replace(r#""dc2": 3}"#, r#""dc2": 4}"#),
                "field `keyspaces[main].replicas_per_dc`: 4 replicas in `dc2`, which has 3 members",
            ),
            (
                TWO_DCS.replace("replicas_n: 2,", "replicas_n: 7,"),
                "field `keyspaces[cache].replicas_n`: 7 replicas with 6 members",
            ),
            (
                TWO_DCS.replace(r#""dc2": 3}"#, r#""dc3": 3}"#),
                "field `keyspaces[main].replicas_per_dc`: datacenter `dc3` has no member",
            ),
            (
                TWO_DCS.replace(r#"name: "cache""#, r#"name: "main""#),
                "field `keyspaces`: keyspace `main` is declared twice",
            ),
            (
                TWO_DCS.replace("db: 1,", "db: 0,"),
                "field `keyspaces[cache].db`: db 0 is already another keyspace's",
            ),
            (
                TWO_DCS.replace("read_consistency: One", "read_consistency: Three"),
                "field `keyspaces[cache].read_consistency`",
            ),
            (
                TWO_DCS.replace(r#"{"dc1": 3, "dc2": 3}"#, r#"{"dc2": 3}"#),
                "field `keyspaces[main].read_consistency`: LocalQuorum: the keyspace keeps no \
                 replicas in this node's datacenter `dc1`",
            ),
            (
                TWO_DCS.replace("read_consistency: One", "read_consistency: LocalOne"),
                "field `keyspaces[cache].read_consistency`: LocalOne needs replicas in this \
                 node's datacenter",
            ),
            (
                TWO_DCS.replace(r#"name: "cache""#, r#"name: "no/slash""#),
                "field `keyspaces`: keyspace name `no/slash`",
            ),
            (
                TWO_DCS.replace("node_id: 1,", "node_id: 1, replicas_n: 5,"),
                "field `replicas_n`: the keyspace with db 0",
            ),
            (
                TWO_DCS.replace("replicas_n: 2,", r#"replicas_n: 2, replicas_per_dc: {"dc1": 1},"#),
                "field `keyspaces[cache].replicas_n`: 2 replicas, but replicas_per_dc sums to 1",
            ),
            (
                GOOD.replace("durability: Interval(20),", "replicas_n: 4,"),
                "field `replicas_n`: 4 replicas with 3 members",
            ),
        ];
        for (text, expected) in cases {
            let error = refusal(&text);
            assert!(error.starts_with(expected), "expected `{expected}`, got `{error}`");
        }
    }

    #[test]
    fn errors_name_the_field() {
        let missing =
            NodeFileConfig::parse(&GOOD.replace("node_id: 1,", "")).unwrap_err().to_string();
        assert!(missing.contains("node_id"), "{missing}");
        let unknown = NodeFileConfig::parse(&GOOD.replace("node_id: 1,", "node_id: 1, colour: 3,"))
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("colour"), "{unknown}");
        let stranger = NodeFileConfig::parse(&GOOD.replace("node_id: 1,", "node_id: 9,"))
            .unwrap_err()
            .to_string();
        assert!(stranger.starts_with("field `node_id`"), "{stranger}");
        let weak = NodeFileConfig::parse(&GOOD.replace("0123456789abcdef", "short"))
            .unwrap_err()
            .to_string();
        assert!(weak.starts_with("field `cluster_secret`"), "{weak}");
        let bad_addr = NodeFileConfig::parse(&GOOD.replace("127.0.0.1:7001", "nowhere"))
            .unwrap_err()
            .to_string();
        assert!(bad_addr.contains("1:") || bad_addr.contains("line"), "{bad_addr}");
    }
}
