//! Laws of dotted version vector sets, on objects produced by random histories of writes and
//! replica exchanges: the causal order is a partial order, merge is its least upper bound, and a
//! write carrying a read's context replaces exactly what that read returned.

use proptest::prelude::*;
use ringkv_core::hlc::HlcTimestamp;
use ringkv_core::version::{Actor, NewWrite, VersionVector, Versioned};
use ringkv_core::{ConflictMode, NodeId, Value, WallTime};

const MODE: ConflictMode = ConflictMode::DottedVersionVectors;
const REPLICAS: usize = 3;

#[derive(Debug, Clone)]
enum Step {
    /// Replica `at` coordinates a write, with the context of what replica `read_from` holds (or
    /// blind).
    Write { at: usize, read_from: Option<usize> },
    /// Replica `to` merges replica `from`'s copy.
    Sync { from: usize, to: usize },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..REPLICAS, proptest::option::of(0..REPLICAS))
            .prop_map(|(at, read_from)| Step::Write { at, read_from }),
        (0..REPLICAS, 0..REPLICAS).prop_map(|(from, to)| Step::Sync { from, to }),
    ]
}

/// Runs a history and returns every object any replica held along the way.
fn run(steps: &[Step]) -> Vec<Versioned> {
    let mut replicas = vec![Versioned::empty(); REPLICAS];
    let mut seen = vec![Versioned::empty()];
    for (index, step) in steps.iter().enumerate() {
        match *step {
            Step::Write { at, read_from } => {
                let context = read_from
                    .map(|from| replicas[from].clock.clone())
                    .unwrap_or_else(VersionVector::new);
                let write = NewWrite {
                    value: Some(Value::from(format!("v{index}"))),
                    timestamp: HlcTimestamp::from_wall(WallTime::from_millis(index as u64)),
                    expire_at: None,
                };
                let actor = Actor { node: NodeId(at as u32), epoch: 0 };
                replicas[at].update(&context, write, actor, MODE);
                replicas[at].check_invariants();
                seen.push(replicas[at].clone());
            }
            Step::Sync { from, to } => {
                let incoming = replicas[from].clone();
                replicas[to].merge(&incoming, MODE);
                replicas[to].check_invariants();
                seen.push(replicas[to].clone());
            }
        }
    }
    seen
}

fn leq(a: &Versioned, b: &Versioned) -> bool {
    b.descends(a, MODE)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn merge_is_commutative_associative_and_idempotent(steps in proptest::collection::vec(step(), 1..40), picks in proptest::collection::vec(any::<prop::sample::Index>(), 3)) {
        let states = run(&steps);
        let a = picks[0].get(&states);
        let b = picks[1].get(&states);
        let c = picks[2].get(&states);
        prop_assert_eq!(a.merged(b, MODE), b.merged(a, MODE));
        prop_assert_eq!(a.merged(b, MODE).merged(c, MODE), a.merged(&b.merged(c, MODE), MODE));
        prop_assert_eq!(&a.merged(a, MODE), a);
    }

    #[test]
    fn causal_order_is_a_partial_order(steps in proptest::collection::vec(step(), 1..40), picks in proptest::collection::vec(any::<prop::sample::Index>(), 3)) {
        let states = run(&steps);
        let a = picks[0].get(&states);
        let b = picks[1].get(&states);
        let c = picks[2].get(&states);
        prop_assert!(leq(a, a));
        if leq(a, b) && leq(b, a) {
            prop_assert_eq!(a, b);
        }
        if leq(a, b) && leq(b, c) {
            prop_assert!(leq(a, c));
        }
    }

    #[test]
    fn merge_is_the_least_upper_bound(steps in proptest::collection::vec(step(), 1..40), picks in proptest::collection::vec(any::<prop::sample::Index>(), 3)) {
        let states = run(&steps);
        let a = picks[0].get(&states);
        let b = picks[1].get(&states);
        let c = picks[2].get(&states);
        let join = a.merged(b, MODE);
        prop_assert!(leq(a, &join) && leq(b, &join));
        if leq(a, c) && leq(b, c) {
            prop_assert!(leq(&join, c), "an upper bound below the merge");
        }
    }

    #[test]
    fn a_context_write_replaces_exactly_the_siblings_the_read_returned(steps in proptest::collection::vec(step(), 1..40), read_pick in any::<prop::sample::Index>(), target_pick in any::<prop::sample::Index>()) {
        let states = run(&steps);
        let read = read_pick.get(&states);
        // The coordinator's copy has seen at least what was read (it is where the read's
        // siblings live), plus possibly concurrent writes.
        let mut target = target_pick.get(&states).merged(read, MODE);
        let before = target.clone();
        let write = NewWrite { value: Some(Value::from_static(b"new")), timestamp: HlcTimestamp(u64::MAX >> 1), expire_at: None };
        let dot = target.update(&read.clock, write, Actor { node: NodeId(99), epoch: 0 }, MODE);
        for sibling in &read.siblings {
            prop_assert!(target.siblings.iter().all(|kept| kept.dot != sibling.dot), "a sibling the read returned survived");
        }
        for sibling in before.siblings.iter().filter(|sibling| !read.clock.covers(sibling.dot)) {
            prop_assert!(target.siblings.contains(sibling), "a concurrent sibling was dropped");
        }
        prop_assert_eq!(target.siblings.len(), 1 + before.siblings.iter().filter(|sibling| !read.clock.covers(sibling.dot)).count());
        prop_assert!(target.siblings.iter().any(|sibling| sibling.dot == dot));
    }
}
