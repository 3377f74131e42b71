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
}
