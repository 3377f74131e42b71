//! Restoring a node's store from a snapshot: what the restored store must forget, and how old a
//! snapshot may be, before its node starts again.
//!
//! Owns: [`prepare_restored`], run on the restored store before the node's first start (by the
//! binary's `ringkv restore` and by the simulator's restore fault), and [`check_snapshot_age`],
//! the rule a restore into a live cluster must pass.
//!
//! A snapshot is the node's store as it was, but the cluster moved on after it: the node's live
//! self issued dots, acknowledged writes and made Paxos promises that the snapshot does not
//! hold. So a restored store is treated like a rebuilt one, not like a restarted one:
//!
//! - **A new epoch.** The snapshot's epoch record (and its clean-shutdown counter, for a snapshot
//!   of a cleanly stopped node) is removed, so the node draws a random epoch, as on a blank disk.
//!   Keeping it would let the node reissue dots its live self issued after the snapshot (the
//!   snapshot's epoch, or the next one if the live node restarted since), and a replica that has
//!   seen such a dot drops the new write as already seen (Riak's kv679): planted bug
//!   `restore-keeps-epoch`.
//! - **Refilled before it serves.** The store is marked [`META_REBUILDING_KEY`], so the node
//!   answers no reads and no Paxos messages until anti-entropy has refilled it from every other
//!   replica (see ARCHITECTURE.md, "Damaged disks"): its old copy plus a replica that missed a
//!   write would otherwise form a read quorum without an acknowledged write, and its old
//!   promises could let two values be chosen. Planted bug `restore-serves-reads`.
//!
//! What the snapshot holds is still worth restoring: the refill sends only what differs, and the
//! restored objects merge with the replicas' newer ones (a dotted version vector never lets an
//! older copy replace a newer one).

use bytes::Bytes;

use crate::error::StorageError;
use crate::storage::{
    Space, Storage, META_CLEAN_KEY, META_DOTS_ISSUED_KEY, META_EPOCH_KEY, META_REBUILDING_KEY,
};
use crate::time::{Duration, WallTime};

/// Makes a store just restored from snapshot `name` safe to start a node on: a new epoch at the
/// next start and the refill mark; both durable before this returns.
pub fn prepare_restored<S: Storage>(storage: &mut S, name: &str) -> Result<(), StorageError> {
    if !crate::planted!(RestoreKeepsEpoch) {
        for key in [META_EPOCH_KEY, META_DOTS_ISSUED_KEY, META_CLEAN_KEY] {
            storage.write(Space::Meta, Bytes::from_static(key), None)?;
        }
    }
    if !crate::planted!(RestoreServesReads) {
        let reason = format!("restored from snapshot {name}");
        storage.write(Space::Meta, Bytes::from_static(META_REBUILDING_KEY), Some(reason.into()))?;
    }
    storage.sync()?;
    Ok(())
}

/// The rule for restoring into a live cluster: the snapshot must be younger than half the
/// tombstone grace. A key deleted after the snapshot is still in the restored store; what keeps
/// it from coming back is the tombstone at the other replicas, which the refill merges over it.
/// A tombstone is purged once the grace has passed, so it must outlive the refill: half the
/// grace for the snapshot's age leaves the other half for the refill (a few anti-entropy
/// cycles). A restore into a new, empty cluster has no such limit (nothing there can come back
/// over a purged tombstone), so the binary applies this rule only to a node that rejoins.
pub fn check_snapshot_age(
    taken_at: WallTime,
    now: WallTime,
    tombstone_grace: Duration,
) -> Result<(), String> {
    let age_ms = now.as_millis().saturating_sub(taken_at.as_millis());
    let limit_ms = tombstone_grace.as_millis() / 2;
    if age_ms >= limit_ms {
        return Err(format!(
            "the snapshot is {age_ms} ms old, not younger than half the tombstone grace \
             ({limit_ms} ms): keys deleted since could come back; restore into a new cluster \
             instead"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;

    #[test]
    fn a_restored_store_loses_its_epoch_and_is_marked_for_refill() {
        let mut storage = MemStorage::new();
        for key in [META_EPOCH_KEY, META_DOTS_ISSUED_KEY, META_CLEAN_KEY] {
            storage
                .write(Space::Meta, Bytes::from_static(key), Some(Bytes::from_static(b"1")))
                .unwrap();
        }
        prepare_restored(&mut storage, "nightly").unwrap();
        for key in [META_EPOCH_KEY, META_DOTS_ISSUED_KEY, META_CLEAN_KEY] {
            assert_eq!(storage.get(Space::Meta, key).unwrap(), None);
        }
        let mark = storage.get(Space::Meta, META_REBUILDING_KEY).unwrap().unwrap();
        assert_eq!(&mark[..], b"restored from snapshot nightly");
    }

    #[test]
    fn a_snapshot_older_than_half_the_grace_is_refused() {
        let grace = Duration::from_secs(3_600);
        let taken = WallTime::from_millis(1_000_000);
        let young = WallTime::from_millis(1_000_000 + 1_799_999);
        let old = WallTime::from_millis(1_000_000 + 1_800_000);
        assert!(check_snapshot_age(taken, young, grace).is_ok());
        let refused = check_snapshot_age(taken, old, grace).unwrap_err();
        assert!(refused.contains("1800000 ms old"), "{refused}");
    }
}
