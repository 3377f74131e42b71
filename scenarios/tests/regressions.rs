//! Seeds that once found a bug, replayed for good. Each failed before the fix its comment names
//! and must pass now; the scenario sweep in CI covers other seeds.
// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use ringkv_scenarios::library::library_dir;
use ringkv_scenarios::run_seed;
use ringkv_scenarios::scenario::Scenario;

fn sliced_repair() -> Scenario {
    Scenario::load(&library_dir().join("sliced-repair.ron")).unwrap()
}

fn assert_passes(scenario: &Scenario, seeds: &[u64], what: &str) {
    for &seed in seeds {
        let report = run_seed(scenario, seed, false);
        assert!(report.is_ok(), "{what}, seed {seed}:\n{report}");
    }
}

#[test]
fn purges_wait_for_refills_and_hints_do_not_outlive_the_tombstone_grace() {
    // The sliced-repair scenario with whole-ring exchanges (as every scenario before it):
    // - seeds 371, 379, 479 (resurrection): a hint stored before a delete was replayed 9 s
    //   later, after the tombstone (grace 4 s) was purged everywhere; hints now live at most the
    //   tombstone grace;
    // - seed 65 (read-after-write, resurrection): a node rebuilt blank purged a tombstone while
    //   still being refilled, counting exchanges that read its store blank, and a replica that
    //   had missed the delete served the old value; a refilling node now purges nothing, and
    //   the exchanges of a refill are forgotten when it ends.
    let mut whole_ring = sliced_repair();
    whole_ring.cluster.anti_entropy_slice_keys = 10_000;
    assert_passes(&whole_ring, &[65, 371, 379, 479], "whole-ring exchanges");
    // The same faults with slices of one key: these seeds failed the same way.
    assert_passes(&sliced_repair(), &[242, 419], "slices of one key");
}

#[test]
fn a_reply_to_a_read_from_before_a_restart_never_answers_a_new_read() {
    // consistency-one seed 31, shrunk to clogs and clean restarts: a read at ONE returned a
    // value written to another key. Coordinator op ids restarted at 1 in every incarnation, so
    // a clogged reply to a pre-restart read matched a new read of another key; every id space
    // now starts at a random point per start (79677cf).
    let shrunk = library_dir().join("regressions").join("consistency-one-seed31-min.ron");
    assert_passes(&Scenario::load(&shrunk).unwrap(), &[31], "consistency-one seed 31, shrunk");
    let full = Scenario::load(&library_dir().join("consistency-one.ron")).unwrap();
    assert_passes(&full, &[31], "consistency-one seed 31");
}
