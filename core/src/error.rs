//! Errors a client can see, and errors from the storage layer.
//!
//! Every variant's message is written for the person at the other end of a Redis connection:
//! it says what went wrong and, where it helps, the numbers involved.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::consistency::Consistency;

/// Why a client request failed.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ClientError {
    /// Fewer replicas are reachable than the consistency level needs; nothing was attempted.
    #[error("unavailable: {alive} of {required} required replicas are reachable")]
    Unavailable {
        /// Replicas needed.
        required: usize,
        /// Replicas believed up.
        alive: usize,
    },
    /// The deadline passed before enough replicas answered. A write may still have been applied
    /// on some replicas: its outcome is unknown.
    #[error("timeout: {acked} of {required} required replicas answered before the deadline")]
    Timeout {
        /// Replicas needed.
        required: usize,
        /// Replicas that answered in time.
        acked: usize,
    },
    /// The key is longer than the configured limit.
    #[error("key too large: {len_bytes} bytes, the limit is {max_bytes}")]
    KeyTooLarge {
        /// Length of the key sent.
        len_bytes: usize,
        /// Configured limit.
        max_bytes: usize,
    },
    /// The value is longer than the configured limit.
    #[error("value too large: {len_bytes} bytes, the limit is {max_bytes}")]
    ValueTooLarge {
        /// Length of the value sent.
        len_bytes: usize,
        /// Configured limit.
        max_bytes: usize,
    },
    /// The key is empty.
    #[error("empty key: keys must be at least one byte")]
    EmptyKey,
    /// A batch carried no keys.
    #[error("empty batch: mget and mset need at least one key")]
    EmptyBatch,
    /// A batch carried more keys than the limit.
    #[error("batch too large: {keys_count} keys, the limit is {max_keys}")]
    BatchTooLarge {
        /// Keys sent.
        keys_count: usize,
        /// Configured limit.
        max_keys: usize,
    },
    /// The consistency level asks for more replicas than a key has.
    #[error("consistency {consistency:?} needs more replicas than the {replicas_n} each key has")]
    InvalidConsistency {
        /// Level asked for.
        consistency: Consistency,
        /// Replicas per key.
        replicas_n: usize,
    },
    /// A level counted in the coordinator's datacenter (`LOCAL_ONE`, `LOCAL_QUORUM`) asked of
    /// a node whose datacenter holds no replica of the key.
    #[error("consistency {consistency:?} needs replicas in datacenter {datacenter}, which holds none of this key")]
    NoLocalReplicas {
        /// Level asked for.
        consistency: Consistency,
        /// The coordinator's datacenter.
        datacenter: String,
    },
    /// A causal context could not be decoded.
    #[error("invalid causal context: {reason}")]
    InvalidContext {
        /// What was wrong with it.
        reason: String,
    },
    /// The node is coordinating as many requests as it allows.
    #[error("overloaded: {in_flight} requests in flight, the limit is {max}")]
    Overloaded {
        /// Requests in flight.
        in_flight: usize,
        /// Configured limit.
        max: usize,
    },
    /// The node is starting and cannot coordinate writes yet.
    #[error("not ready: the node is still starting")]
    NotReady,
    /// A serial increment met a value that is not a 64-bit decimal integer (Redis's message).
    #[error("value is not an integer or out of range")]
    NotAnInteger,
    /// A serial increment would overflow a 64-bit integer; nothing was written.
    #[error("increment or decrement would overflow")]
    IncrementOverflow,
    /// A serial float increment met a value (or an increment) that is not a float.
    #[error("value is not a valid float")]
    NotAFloat,
    /// A serial float increment would produce NaN or an infinity; nothing was written.
    #[error("increment would produce NaN or Infinity")]
    FloatOverflow,
    /// A serial operation found no Paxos quorum before its deadline and never proposed, so
    /// nothing was applied (a partition, or contention from other proposers).
    #[error(
        "no paxos quorum: {promised} of {required} required replicas promised after {attempts} rounds; nothing was applied"
    )]
    NoPaxosQuorum {
        /// Promises needed.
        required: usize,
        /// Most promises gathered in one round.
        promised: usize,
        /// Rounds tried.
        attempts: u32,
    },
    /// A flush (`FLUSHALL`) did not reach every member before its deadline. The members that
    /// acknowledged have truncated; run it again once the missing ones are up.
    #[error(
        "flush incomplete: {acked} of {members} nodes truncated before the deadline (missing: {missing:?}); run it again once every node is up"
    )]
    FlushIncomplete {
        /// Members that truncated.
        acked: usize,
        /// Members the flush had to reach.
        members: usize,
        /// Ids of the members that did not acknowledge.
        missing: Vec<u32>,
    },
    /// The node's storage failed; the node no longer accepts writes.
    #[error("storage failure: {reason}")]
    Storage {
        /// What the storage engine reported.
        reason: String,
    },
}

impl ClientError {
    /// Whether a write that failed this way may nevertheless have been applied somewhere. A
    /// history checker records such a write as "unknown" rather than "failed".
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            ClientError::Timeout { .. }
                | ClientError::Storage { .. }
                | ClientError::FlushIncomplete { .. }
        )
    }
}

/// A failure of the storage layer under a node.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("storage: {0}")]
pub struct StorageError(pub String);

impl From<StorageError> for ClientError {
    fn from(error: StorageError) -> Self {
        ClientError::Storage { reason: error.0 }
    }
}
