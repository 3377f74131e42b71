//! The keyspaces of one process: a sans-IO `Node` per keyspace, each driven by a task of its
//! own ([`crate::driver`]), and the handles that reach them.
//!
//! Owns: the handle of every keyspace's node task, by keyspace name and by Redis database
//! number. Inputs: none over time; it is built once at start and shared. Used by the peer
//! transport (an inbound message goes to the node its keyspace tag names; a peer's status goes to
//! every node), by the client server (`SELECT db` picks a node) and by the admin commands that
//! change membership (they go to every node).
//!
//! Invariants: exactly one keyspace is the default (db 0); names and db numbers are unique
//! (the configuration refuses duplicates, [`crate::config::NodeFileConfig::validate`]).

use std::collections::BTreeMap;

use ringkv_core::Consistency;

use crate::config::Keyspace;
use crate::driver::NodeHandle;

/// One keyspace's node as a client and the transport reach it.
#[derive(Debug, Clone)]
pub struct KeyspaceHandle {
    /// The keyspace's name.
    pub name: String,
    /// Its Redis database number.
    pub db: u32,
    /// Replicas per key (for `WAIT` and the ring's ownership).
    pub replicas_n: usize,
    /// A new connection's read consistency here.
    pub read_consistency: Consistency,
    /// A new connection's write consistency here.
    pub write_consistency: Consistency,
    /// The keyspace's node task.
    pub node: NodeHandle,
}

impl KeyspaceHandle {
    /// The handle of `keyspace`'s node.
    pub fn new(keyspace: &Keyspace, node: NodeHandle) -> Self {
        KeyspaceHandle {
            name: keyspace.name.clone(),
            db: keyspace.db,
            replicas_n: keyspace.config.replicas_n,
            read_consistency: keyspace.read_consistency,
            write_consistency: keyspace.write_consistency,
            node,
        }
    }
}

/// Every keyspace's node in this process.
#[derive(Debug, Clone)]
pub struct NodeHandles {
    /// By database number; db 0 is the default keyspace.
    by_db: BTreeMap<u32, KeyspaceHandle>,
    /// Database number by name, for tagged peer messages.
    db_by_name: BTreeMap<String, u32>,
}

impl NodeHandles {
    /// The handles of `keyspaces`, which must hold exactly one of db 0 and no duplicate name
    /// or db (the configuration's validation guarantees both; checked here again because the
    /// routing silently misdelivers otherwise).
    pub fn new(keyspaces: Vec<KeyspaceHandle>) -> Self {
        let count = keyspaces.len();
        let db_by_name: BTreeMap<String, u32> =
            keyspaces.iter().map(|keyspace| (keyspace.name.clone(), keyspace.db)).collect();
        let by_db: BTreeMap<u32, KeyspaceHandle> =
            keyspaces.into_iter().map(|keyspace| (keyspace.db, keyspace)).collect();
        assert!(by_db.contains_key(&0), "no default keyspace (db 0)");
        assert!(by_db.len() == count && db_by_name.len() == count, "duplicate keyspace");
        NodeHandles { by_db, db_by_name }
    }

    /// The default keyspace (db 0).
    pub fn default_keyspace(&self) -> &KeyspaceHandle {
        // `new` asserts that db 0 is present.
        &self.by_db[&0]
    }

    /// The keyspace of database `db`, if one is declared.
    pub fn by_db(&self, db: u32) -> Option<&KeyspaceHandle> {
        self.by_db.get(&db)
    }

    /// The node a peer message tagged `keyspace` goes to: the default keyspace's for an untagged
    /// one; `None` for a keyspace this node does not have.
    pub fn for_tag(&self, keyspace: Option<&str>) -> Option<&NodeHandle> {
        match keyspace {
            None => Some(&self.default_keyspace().node),
            Some(name) => {
                let db = self.db_by_name.get(name)?;
                // A tagged message names a keyspace other than the default one, whose
                // messages are never tagged.
                (*db != 0).then(|| &self.by_db[db].node)
            }
        }
    }

    /// Every keyspace, the default first, then by database number.
    pub fn all(&self) -> impl Iterator<Item = &KeyspaceHandle> {
        self.by_db.values()
    }

    /// How many keyspaces there are.
    pub fn len(&self) -> usize {
        self.by_db.len()
    }

    /// Never true: there is always the default keyspace.
    pub fn is_empty(&self) -> bool {
        self.by_db.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untagged_messages_go_to_the_default_keyspace_and_unknown_tags_nowhere() {
        let (node, _receiver) = NodeHandle::detached();
        let handle = |name: &str, db| KeyspaceHandle {
            name: name.into(),
            db,
            replicas_n: 3,
            read_consistency: Consistency::Quorum,
            write_consistency: Consistency::Quorum,
            node: node.clone(),
        };
        let handles = NodeHandles::new(vec![handle("main", 0), handle("cache", 1)]);
        assert!(handles.for_tag(None).is_some());
        assert!(handles.for_tag(Some("cache")).is_some());
        assert!(handles.for_tag(Some("main")).is_none(), "the default keyspace is never tagged");
        assert!(handles.for_tag(Some("other")).is_none());
        assert_eq!(handles.by_db(1).map(|keyspace| keyspace.name.as_str()), Some("cache"));
        assert!(handles.by_db(7).is_none());
        assert_eq!(handles.all().map(|keyspace| keyspace.db).collect::<Vec<_>>(), vec![0, 1]);
    }
}
