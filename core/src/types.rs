//! The small vocabulary every module shares: node ids, consistency levels, limits and
//! keyspace options.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::ClientError;
use crate::time::Duration;

/// A physical node of the cluster. Ids are assigned by the operator and never reused for a
/// different machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u32);

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// A key: opaque bytes, at most [`Limits::key_bytes_max`] long.
pub type Key = Bytes;

/// A value: opaque bytes, at most [`Limits::value_bytes_max`] long.
pub type Value = Bytes;

pub use crate::consistency::Consistency;

// The level's arithmetic lives here, beside the limits, so that `consistency.rs` (which
// `error.rs` names in an error) depends on nothing: error -> consistency <- types -> error.
impl Consistency {
    /// The number of replica answers this level needs when a key has `replicas_n` replicas.
    ///
    /// A level that asks for more replicas than exist (THREE with N=2) is refused rather than
    /// silently weakened, so the caller learns that the guarantee it asked for cannot hold.
    pub fn required(self, replicas_n: usize) -> Result<usize, ClientError> {
        let required = match self {
            Consistency::One => 1,
            Consistency::Two => 2,
            Consistency::Three => 3,
            Consistency::Quorum => replicas_n / 2 + 1,
            Consistency::All => replicas_n,
            // Counted within one datacenter; with several, the request paths count per
            // datacenter (`placement::quorums_for`).
            Consistency::LocalOne => 1,
            Consistency::LocalQuorum | Consistency::EachQuorum => replicas_n / 2 + 1,
        };
        if required > replicas_n || required == 0 {
            return Err(ClientError::InvalidConsistency { consistency: self, replicas_n });
        }
        Ok(required)
    }

    /// Whether read repair must finish before a read at this level replies. Quorum and above
    /// repair synchronously so that two quorum reads never go back in time (monotonic reads).
    pub fn repairs_before_reply(self, replicas_n: usize) -> bool {
        match self.required(replicas_n) {
            Ok(required) => required > replicas_n / 2,
            Err(_) => false,
        }
    }
}

impl std::str::FromStr for Consistency {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_uppercase().as_str() {
            "ONE" => Ok(Consistency::One),
            "TWO" => Ok(Consistency::Two),
            "THREE" => Ok(Consistency::Three),
            "QUORUM" => Ok(Consistency::Quorum),
            "ALL" => Ok(Consistency::All),
            "LOCAL_ONE" => Ok(Consistency::LocalOne),
            "LOCAL_QUORUM" => Ok(Consistency::LocalQuorum),
            "EACH_QUORUM" => Ok(Consistency::EachQuorum),
            other => Err(format!(
                "unknown consistency level `{other}`: expected ONE, TWO, THREE, QUORUM, ALL, \
                 LOCAL_ONE, LOCAL_QUORUM or EACH_QUORUM"
            )),
        }
    }
}

/// Size limits on what clients may send. Exceeding one is an error, never a truncation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest key accepted, in bytes.
    pub key_bytes_max: usize,
    /// Largest value accepted, in bytes.
    pub value_bytes_max: usize,
    /// Most keys in one mget or mset.
    pub batch_keys_max: usize,
    /// Most client requests a node coordinates at once; more get an "overloaded" error.
    pub requests_in_flight_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            key_bytes_max: 64 * 1024,
            value_bytes_max: 10 * 1024 * 1024,
            batch_keys_max: 1_000,
            requests_in_flight_max: 10_000,
        }
    }
}

impl Limits {
    /// Checks a key against the limit.
    pub fn check_key(&self, key: &[u8]) -> Result<(), ClientError> {
        if key.is_empty() {
            return Err(ClientError::EmptyKey);
        }
        if key.len() > self.key_bytes_max {
            return Err(ClientError::KeyTooLarge {
                len_bytes: key.len(),
                max_bytes: self.key_bytes_max,
            });
        }
        Ok(())
    }

    /// Checks a value against the limit.
    pub fn check_value(&self, value: &[u8]) -> Result<(), ClientError> {
        if value.len() > self.value_bytes_max {
            return Err(ClientError::ValueTooLarge {
                len_bytes: value.len(),
                max_bytes: self.value_bytes_max,
            });
        }
        Ok(())
    }

    /// Checks a batch size against the limit.
    pub fn check_batch(&self, keys_count: usize) -> Result<(), ClientError> {
        if keys_count == 0 {
            return Err(ClientError::EmptyBatch);
        }
        if keys_count > self.batch_keys_max {
            return Err(ClientError::BatchTooLarge { keys_count, max_keys: self.batch_keys_max });
        }
        Ok(())
    }
}

/// How concurrent writes to one key are reconciled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ConflictMode {
    /// Dotted version vectors: concurrent writes are kept as siblings for the client to resolve.
    DottedVersionVectors,
    /// Last write wins on hybrid-logical-clock timestamps. Concurrent writes are silently lost:
    /// only the one with the highest timestamp survives.
    LastWriteWins,
}

/// Options of the keyspace a cluster serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyspaceConfig {
    /// Replicas per key (N): with `replicas_per_dc`, their sum.
    pub replicas_n: usize,
    /// Replicas per datacenter (Cassandra's NetworkTopologyStrategy); empty for N replicas
    /// over the whole cluster. Within each, replicas spread over racks first.
    pub replicas_per_dc: std::collections::BTreeMap<String, usize>,
    /// How concurrent writes are reconciled.
    pub conflict_mode: ConflictMode,
    /// How long a tombstone (or an expired value) is kept before it may be purged. It must exceed
    /// the time any replica may stay out of touch, or a delete can be undone by a stale replica.
    pub tombstone_grace: Duration,
    /// Whether hinted writes on fallback nodes count toward W (Dynamo's sloppy quorum). Off,
    /// hints are still stored and replayed but a write needs W real replicas.
    pub sloppy_quorum: bool,
    /// How long a fallback keeps a hint for an unreachable replica; older hints are dropped and
    /// anti-entropy repairs what they carried.
    pub hint_window: Duration,
}

impl Default for KeyspaceConfig {
    fn default() -> Self {
        KeyspaceConfig {
            replicas_n: 3,
            replicas_per_dc: std::collections::BTreeMap::new(),
            conflict_mode: ConflictMode::DottedVersionVectors,
            tombstone_grace: Duration::from_secs(10 * 24 * 3600),
            sloppy_quorum: false,
            hint_window: Duration::from_secs(3 * 3600),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_is_a_majority_and_impossible_levels_are_refused() {
        assert_eq!(Consistency::Quorum.required(3), Ok(2));
        assert_eq!(Consistency::Quorum.required(5), Ok(3));
        assert_eq!(Consistency::All.required(3), Ok(3));
        assert!(Consistency::Three.required(2).is_err());
        assert!(Consistency::Quorum.repairs_before_reply(3));
        assert!(!Consistency::One.repairs_before_reply(3));
        assert_eq!("quorum".parse::<Consistency>(), Ok(Consistency::Quorum));
        assert!("MOST".parse::<Consistency>().is_err());
    }

    #[test]
    fn limits_refuse_oversized_and_empty_input() {
        let limits = Limits { key_bytes_max: 4, value_bytes_max: 8, ..Limits::default() };
        assert!(limits.check_key(b"abcd").is_ok());
        assert_eq!(
            limits.check_key(b"abcde"),
            Err(ClientError::KeyTooLarge { len_bytes: 5, max_bytes: 4 })
        );
        assert_eq!(limits.check_key(b""), Err(ClientError::EmptyKey));
        assert!(limits.check_value(&[0; 9]).is_err());
        assert!(limits.check_batch(0).is_err());
    }
}
