//! Consistency levels: how many replicas must answer before a request completes.
//!
//! A leaf module (it depends on nothing in the crate), so that `error.rs` can name a level in
//! an error and `types.rs` can return errors from the level's arithmetic
//! (`Consistency::required`) without a module cycle.

use serde::{Deserialize, Serialize};

/// How many replicas must answer before a request completes, chosen per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Consistency {
    /// One replica.
    One,
    /// Two replicas.
    Two,
    /// Three replicas.
    Three,
    /// A majority of the N replicas: `N / 2 + 1`.
    Quorum,
    /// All N replicas.
    All,
    /// One replica in the coordinator's datacenter.
    LocalOne,
    /// A majority of the replicas in the coordinator's datacenter; replicas elsewhere are
    /// written but not waited for.
    LocalQuorum,
    /// A majority of the replicas in every datacenter that holds replicas of the key.
    EachQuorum,
}

impl Consistency {
    /// Whether the level counts only replicas in the coordinator's datacenter.
    pub fn is_local(self) -> bool {
        matches!(self, Consistency::LocalOne | Consistency::LocalQuorum)
    }
}
