//! ringkv-core: all of a ringkv node's logic, as sans-IO state machines.
//!
//! Nothing here reads a clock, spawns a thread, sleeps, or draws unseeded randomness: time comes
//! in as arguments, randomness from a seed, and every effect leaves as an [`node::Output`]. The
//! same code therefore runs under the deterministic simulator (`ringkv-sim`) and the tokio driver
//! (`ringkv-net`).
//!
//! Start at [`node::Node`]; the modules below it each own one concept:
//! [`ring`] (placement), [`version`] (causality), [`hlc`] (timestamps), [`coordinator`]
//! (quorum bookkeeping), [`storage`] (what the node needs from a disk).
#![forbid(unsafe_code)]

pub mod anti_entropy;
pub mod buggify;
pub mod cas;
pub mod consistency;
pub mod coordinator;
pub mod error;
pub mod failure_detector;
pub mod flush;
pub mod forwards;
pub mod gossip;
pub mod harness;
pub mod hints;
pub mod hlc;
pub mod lsm;
pub mod membership;
pub mod message;
pub mod node;
pub mod paxos;
pub mod placement;
pub mod planted;
pub mod refill;
pub mod restore;
pub mod ring;
pub mod storage;
pub mod streaming;
pub mod time;
pub mod types;
pub mod version;

pub use error::{ClientError, StorageError};
pub use message::{ClientRequest, ClientResponse, PeerMessage, ReadResult, RequestId};
pub use node::{Input, Node, NodeConfig, Output};
pub use time::{Duration, Instant, WallTime};
pub use types::{ConflictMode, Consistency, Key, KeyspaceConfig, Limits, NodeId, Value};
pub use version::{Context, Versioned};
