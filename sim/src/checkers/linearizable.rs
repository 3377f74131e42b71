//! Checker: serial operations are linearizable, key by key.
//!
//! Every serial (Paxos) operation on a key must take effect at one instant between its
//! invocation and its reply, in an order that a single register evaluating
//! [`ringkv_core::cas::evaluate`] would produce: each acknowledged reply (applied or not, the
//! value before and after) must be exactly what the register returns at that point.
//! Linearizability is compositional, so each key is searched alone.
//!
//! The search is Wing and Gong's, with the memo of Lowe's variant: depth first over which
//! pending operation takes effect next, remembering each (set of operations taken, register
//! value) already explored so that no configuration is expanded twice. Outcomes shape it:
//!
//! - a *failed* operation had no effect and is left out;
//! - an *unknown* (or pending) operation may have taken effect at any instant after its
//!   invocation, or never: it is optional, constrains no other operation's real-time order,
//!   and is tried only where it would change the value (taking it where it changes nothing is
//!   the same as leaving it out). Identical unknown operations are interchangeable, so only the
//!   earliest-invoked of each is a candidate, which keeps a pile of unknown increments from
//!   multiplying the search;
//! - an unknown serial read is left out (it changes nothing).
//!
//! On a violation the message also gives the smallest window of the key's history that is
//! non-linearizable on its own, narrowed from both ends by binary search: the earliest reply
//! after which the history up to it fails (ops still in flight then count as unknown), then
//! the latest start from which that stretch still fails whatever value the key held there (ops
//! done before it dropped, ops in flight at it optional). Either cut only relaxes the
//! constraints, so a window that fails proves the whole history does.
//!
//! A key whose search exceeds [`SEARCH_STATES_MAX`] is reported as inconclusive in no
//! violation: a bounded checker must not turn a slow search into a false alarm. Plain reads
//! and writes never touch serial keys (the workload keeps them apart), so only serial
//! operations are searched.

use std::collections::{BTreeMap, BTreeSet};

use ringkv_core::cas::{self, CasOp, CasReply};
use ringkv_core::{Instant, Key, Value};

use super::{Analysis, CheckInput, Violation};
use crate::history::{History, OpIndex, OpOutcome, OpRequest};

const NAME: &str = "linearizable";

/// Most configurations one key's search may expand before it gives up as inconclusive.
pub const SEARCH_STATES_MAX: usize = 2_000_000;

/// Operations the violation message lists from where the search got stuck.
const STUCK_OPS_SHOWN_MAX: usize = 4;

/// Runs the check.
pub fn check(input: CheckInput<'_>, _analysis: &Analysis) -> Vec<Violation> {
    check_keys(input.history)
        .into_iter()
        .filter_map(|(key, verdict, window)| match verdict {
            Verdict::Linearizable | Verdict::Inconclusive => None,
            Verdict::Violation(message) => Some(
                Violation::new(
                    NAME,
                    format!("serial key {}: {message}", String::from_utf8_lossy(&key)),
                )
                .with_ops(window),
            ),
        })
        .collect()
}

/// What the search concluded for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Some order explains every reply.
    Linearizable,
    /// No order does; the message tells where the longest attempt got stuck.
    Violation(String),
    /// The search exceeded [`SEARCH_STATES_MAX`].
    Inconclusive,
}

/// Searches every key that serial operations touched, in key order.
pub fn check_history(history: &History) -> Vec<(Key, Verdict)> {
    check_keys(history).into_iter().map(|(key, verdict, _)| (key, verdict)).collect()
}

/// [`check_history`], with the operations each violation involves: those of its smallest
/// window, or every searched op of the key when no window could be cut out (empty when the
/// key is linearizable or inconclusive).
fn check_keys(history: &History) -> Vec<(Key, Verdict, Vec<OpIndex>)> {
    let mut per_key: BTreeMap<Key, Vec<SerialOp>> = BTreeMap::new();
    for (index, record) in history.iter() {
        let OpRequest::Cas { key, op } = &record.request else { continue };
        let reply = match &record.outcome {
            OpOutcome::Serial(reply) => Some(reply.clone()),
            OpOutcome::Unknown(_) | OpOutcome::Pending => None,
            OpOutcome::Failed(_) | OpOutcome::Ok { .. } => continue,
        };
        if reply.is_none() && !op.may_write() {
            continue;
        }
        per_key.entry(key.clone()).or_default().push(SerialOp {
            index,
            client: record.client,
            invoked_at: record.invoked_at,
            completed_at: if reply.is_some() { record.completed_at } else { None },
            op: op.clone(),
            reply,
            optional: false,
        });
    }
    per_key
        .into_iter()
        .map(|(key, mut ops)| {
            ops.sort_by_key(|op| (op.invoked_at, op.index));
            match Search::new(ops.clone(), Start::Absent, SEARCH_STATES_MAX).run() {
                Verdict::Violation(message) => {
                    let (window, involved) = describe_window(&ops);
                    (key, Verdict::Violation(format!("{message}; {window}")), involved)
                }
                other => (key, other, Vec::new()),
            }
        })
        .collect()
}

/// Most configurations each search of the window narrowing may expand: narrowing runs only on
/// a violation and makes about twenty searches, each of a part of the history.
const WINDOW_STATES_MAX: usize = 200_000;

/// Operations of the smallest window the violation message lists.
const WINDOW_OPS_SHOWN_MAX: usize = 12;

/// A key's ops as of `until`: those invoked by then, with the ones still in flight then made
/// unknown (each may or may not have taken effect by then). If the whole history has a
/// linearization, its ops placed by `until` are one for this prefix, so a prefix that has none
/// proves the history has none; and a later prefix only adds constraints.
fn prefix(ops: &[SerialOp], until: Instant) -> Vec<SerialOp> {
    ops.iter()
        .filter(|op| op.invoked_at <= until)
        .filter_map(|op| {
            let mut op = op.clone();
            if op.completed_at.is_some_and(|completed_at| completed_at > until) {
                op.reply = None;
                op.completed_at = None;
                if !op.op.may_write() {
                    return None;
                }
            }
            Some(op)
        })
        .collect()
}

/// A key's ops from `from` on, searched from any start value: the ops that completed before
/// `from` took effect before every op invoked since and are left out (the free start value
/// stands for their effect), and acknowledged ops in flight at `from` become optional. Again
/// a linearization of the whole gives one of the window, so a window that has none is a proof.
fn suffix(ops: &[SerialOp], from: Instant) -> Vec<SerialOp> {
    ops.iter()
        .filter(|op| op.completed_at.is_none_or(|completed_at| completed_at >= from))
        .map(|op| {
            let mut op = op.clone();
            if op.invoked_at < from && op.reply.is_some() {
                op.optional = true;
            }
            op
        })
        .collect()
}

fn window_fails(ops: Vec<SerialOp>, start: Start) -> bool {
    matches!(Search::new(ops, start, WINDOW_STATES_MAX).run(), Verdict::Violation(_))
}

/// Narrows a key's non-linearizable history (sorted by invocation) to a short stretch that is
/// non-linearizable on its own: first the earliest reply after which the prefix fails, then
/// the latest start from which that prefix still fails whatever value the key held there.
/// Both are binary searches, as failing is monotone in each bound; a bounded search that gives
/// up counts as not failing, so every window returned was itself found to fail.
fn smallest_window(ops: &[SerialOp]) -> Option<(Vec<SerialOp>, Start)> {
    let mut untils: Vec<Instant> = ops.iter().filter_map(|op| op.completed_at).collect();
    untils.sort_unstable();
    untils.dedup();
    let (mut low, mut high) = (0, untils.len());
    while low < high {
        let middle = (low + high) / 2;
        if window_fails(prefix(ops, untils[middle]), Start::Absent) {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    let failing_prefix = prefix(ops, *untils.get(low)?);
    let mut froms: Vec<Instant> = failing_prefix.iter().map(|op| op.invoked_at).collect();
    froms.dedup();
    // How many of the starts, from the first on, still fail from any value.
    let (mut low, mut high) = (0, froms.len());
    while low < high {
        let middle = (low + high) / 2;
        if window_fails(suffix(&failing_prefix, froms[middle]), Start::Any) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    match low.checked_sub(1) {
        Some(last_failing) => Some((suffix(&failing_prefix, froms[last_failing]), Start::Any)),
        None => Some((failing_prefix, Start::Absent)),
    }
}

fn millis(at: Instant) -> String {
    format!("{:.3}", at.as_nanos() as f64 / 1e6)
}

/// The violation's smallest window, for its message, and the indexes of its ops.
fn describe_window(ops: &[SerialOp]) -> (String, Vec<OpIndex>) {
    let Some((window, start)) = smallest_window(ops) else {
        let involved = ops.iter().map(|op| op.index).collect();
        return ("no smaller non-linearizable window could be cut out".to_string(), involved);
    };
    let first = window.iter().map(|op| op.invoked_at).min().unwrap_or_default();
    let last = window.iter().filter_map(|op| op.completed_at).max().unwrap_or(first);
    let start = match start {
        Start::Absent => "from the absent key",
        Start::Any => "from whatever value the key held",
    };
    let shown: Vec<String> = window
        .iter()
        .take(WINDOW_OPS_SHOWN_MAX)
        .map(|op| {
            let mut text = format!("[{}..] {}", millis(op.invoked_at), op.describe());
            if op.optional {
                text.push_str(" (in flight when the window opens)");
            }
            text
        })
        .collect();
    let more = window.len().saturating_sub(WINDOW_OPS_SHOWN_MAX);
    let involved = window.iter().map(|op| op.index).collect();
    let text = format!(
        "smallest non-linearizable window: {} ops invoked {}..{} ms, {start}: {}{}",
        window.len(),
        millis(first),
        millis(last),
        shown.join("; "),
        if more > 0 { format!("; and {more} more") } else { String::new() }
    );
    (text, involved)
}

/// One serial operation of a key's history.
#[derive(Debug, Clone)]
struct SerialOp {
    index: OpIndex,
    client: usize,
    invoked_at: Instant,
    /// `None`: unknown outcome, which bounds nothing.
    completed_at: Option<Instant>,
    op: CasOp,
    /// `None`: unknown outcome (optional, any reply).
    reply: Option<CasReply>,
    /// An acknowledged op a window cut in flight: it may have taken effect before the window
    /// (then its reply is not checked) or inside it (then it is), so it is optional and
    /// bounds no other op's order.
    optional: bool,
}

impl SerialOp {
    /// Whether the op must be explained (acknowledged and not cut in flight by a window).
    fn counts(&self) -> bool {
        self.reply.is_some() && !self.optional
    }

    fn describe(&self) -> String {
        let outcome = match &self.reply {
            Some(reply) => format!(
                "replied applied={} previous={} current={}",
                reply.applied,
                show(reply.previous.as_ref()),
                show(reply.current.as_ref())
            ),
            None => "outcome unknown".to_string(),
        };
        format!("op {} (client {}) {:?}: {outcome}", self.index, self.client, self.op)
    }
}

fn show(value: Option<&Value>) -> String {
    match value {
        Some(value) => format!("{:?}", String::from_utf8_lossy(value)),
        None => "absent".to_string(),
    }
}

/// A deterministic 64-bit mix (splitmix64), for the memo's hashes.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn value_hash(value: Option<&Value>) -> u128 {
    let Some(value) = value else { return 0 };
    let mut high = mix(value.len() as u64 ^ 0x5151);
    let mut low = mix(value.len() as u64);
    for chunk in value.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        high = mix(high ^ word);
        low = mix(low.rotate_left(17) ^ word ^ 0xa5a5);
    }
    (u128::from(high) << 64 | u128::from(low)) | 1
}

/// One frame of the depth-first search: the candidates at that point and which comes next.
struct Frame {
    candidates: Vec<usize>,
    next: usize,
    /// The candidate this frame took (to undo), with the value before it and whether the
    /// value was known then.
    taken: Option<(usize, Option<Value>, bool)>,
}

/// What the register holds before the first op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// The key is absent (the whole history).
    Absent,
    /// Any value (a window cut out of the history): the first op taken fixes it to the value
    /// its reply saw before it.
    Any,
}

struct Search {
    ops: Vec<SerialOp>,
    /// For each unknown op, the next unknown op identical to it (same request), if any.
    next_twin: Vec<Option<usize>>,
    /// Whether each unknown op waits for an identical, earlier-invoked twin to be taken first.
    has_earlier_twin: Vec<bool>,
    zobrist: Vec<u128>,
    taken: Vec<bool>,
    taken_hash: u128,
    value: Option<Value>,
    /// Whether `value` is known (false only at an [`Start::Any`] start, before any op).
    pinned: bool,
    acked_left: usize,
    /// The acknowledged ops (`acked_left` at the start): `ops` never changes during a search,
    /// so this is counted once, not again at every step (`note_depth` runs at each one).
    acked_total: usize,
    states_max: usize,
    seen: BTreeSet<u128>,
    /// The deepest point reached: acknowledged ops taken, the value there, its candidates.
    deepest: (usize, Option<Value>, Vec<usize>),
}

impl Search {
    fn new(ops: Vec<SerialOp>, start: Start, states_max: usize) -> Self {
        let mut next_twin = vec![None; ops.len()];
        let mut has_earlier_twin = vec![false; ops.len()];
        let mut last_of_kind: BTreeMap<String, usize> = BTreeMap::new();
        for (position, op) in ops.iter().enumerate() {
            if op.reply.is_some() {
                continue;
            }
            let kind = format!("{:?}", op.op);
            if let Some(earlier) = last_of_kind.insert(kind, position) {
                next_twin[earlier] = Some(position);
                has_earlier_twin[position] = true;
            }
        }
        let zobrist = (0..ops.len() as u64)
            .map(|position| {
                u128::from(mix(position.wrapping_mul(2))) << 64
                    | u128::from(mix(position.wrapping_mul(2) + 1))
            })
            .collect();
        let acked_left = ops.iter().filter(|op| op.counts()).count();
        Search {
            taken: vec![false; ops.len()],
            next_twin,
            has_earlier_twin,
            zobrist,
            taken_hash: 0,
            value: None,
            pinned: start == Start::Absent,
            acked_left,
            acked_total: acked_left,
            states_max,
            seen: BTreeSet::new(),
            deepest: (0, None, Vec::new()),
            ops,
        }
    }

    /// The ops that may take effect next: not taken, invoked no later than the earliest reply
    /// among the acknowledged ops not taken (which must come after them otherwise).
    fn candidates(&self) -> Vec<usize> {
        let mut deadline: Option<Instant> = None;
        let mut candidates = Vec::new();
        // Taken ops are skipped below whatever else holds, so the walk starts at the first
        // op not taken: usually most of a long history is behind it.
        let first_open = self.taken.iter().position(|taken| !taken).unwrap_or(self.ops.len());
        for (position, op) in self.ops.iter().enumerate().skip(first_open) {
            if self.taken[position] {
                continue;
            }
            if deadline.is_some_and(|deadline| op.invoked_at > deadline) {
                break;
            }
            if let Some(completed_at) = op.completed_at.filter(|_| op.counts()) {
                deadline = Some(deadline.map_or(completed_at, |d| d.min(completed_at)));
            }
            // Before the value is known only an op with a reply can fix it; an unknown op
            // taken there would leave it unknown, which changes nothing.
            let fixes_value = self.pinned || op.reply.is_some();
            if !self.has_earlier_twin[position] && fixes_value {
                candidates.push(position);
            }
        }
        // Acknowledged ops first: a correct history is usually explained greedily.
        candidates.sort_by_key(|&position| !self.ops[position].counts());
        candidates
    }

    /// The value after taking op `position` now, or `None` when it cannot be taken here.
    fn step(&self, position: usize) -> Option<Option<Value>> {
        let op = &self.ops[position];
        let before = match (&op.reply, self.pinned) {
            (_, true) => self.value.as_ref(),
            (Some(reply), false) => reply.previous.as_ref(),
            (None, false) => return None,
        };
        let evaluated = cas::evaluate(&op.op, before, usize::MAX);
        match (&op.reply, evaluated) {
            (Some(reply), Ok(evaluated)) => {
                if &evaluated.reply != reply {
                    return None;
                }
                Some(match evaluated.write {
                    Some(write) => write.value,
                    None => before.cloned(),
                })
            }
            // An acknowledged op the register would have refused does not fit here.
            (Some(_), Err(_)) => None,
            // An unknown op is tried only where it changes the value.
            (None, Ok(evaluated)) => {
                let after = evaluated.write?.value;
                (after != self.value).then_some(after)
            }
            (None, Err(_)) => None,
        }
    }

    fn take(&mut self, position: usize, after: Option<Value>) -> (Option<Value>, bool) {
        self.taken[position] = true;
        self.taken_hash ^= self.zobrist[position];
        if self.ops[position].counts() {
            self.acked_left -= 1;
        }
        if let Some(twin) = self.next_twin[position] {
            self.has_earlier_twin[twin] = false;
        }
        let was_pinned = std::mem::replace(&mut self.pinned, true);
        (std::mem::replace(&mut self.value, after), was_pinned)
    }

    fn untake(&mut self, position: usize, before: Option<Value>, was_pinned: bool) {
        self.taken[position] = false;
        self.taken_hash ^= self.zobrist[position];
        if self.ops[position].counts() {
            self.acked_left += 1;
        }
        if let Some(twin) = self.next_twin[position] {
            self.has_earlier_twin[twin] = true;
        }
        self.value = before;
        self.pinned = was_pinned;
    }

    fn note_depth(&mut self, candidates: &[usize]) {
        let depth = self.acked_total - self.acked_left;
        if depth > self.deepest.0 || self.deepest.2.is_empty() {
            self.deepest = (depth, self.value.clone(), candidates.to_vec());
        }
    }

    fn run(mut self) -> Verdict {
        if self.acked_left == 0 {
            return Verdict::Linearizable;
        }
        let first = self.candidates();
        self.note_depth(&first);
        let mut stack = vec![Frame { candidates: first, next: 0, taken: None }];
        while let Some(frame) = stack.last_mut() {
            if let Some((position, before, was_pinned)) = frame.taken.take() {
                self.untake(position, before, was_pinned);
            }
            let frame = stack.last_mut().expect("the frame just read");
            let mut advanced = None;
            while frame.next < frame.candidates.len() {
                let position = frame.candidates[frame.next];
                frame.next += 1;
                let Some(after) = self.step(position) else { continue };
                let key = self.taken_hash ^ self.zobrist[position] ^ value_hash(after.as_ref());
                if !self.seen.insert(key) {
                    continue;
                }
                advanced = Some((position, after));
                break;
            }
            let Some((position, after)) = advanced else {
                stack.pop();
                continue;
            };
            let (before, was_pinned) = self.take(position, after);
            stack.last_mut().expect("the frame just advanced").taken =
                Some((position, before, was_pinned));
            if self.acked_left == 0 {
                return Verdict::Linearizable;
            }
            if self.seen.len() > self.states_max {
                return Verdict::Inconclusive;
            }
            let candidates = self.candidates();
            self.note_depth(&candidates);
            stack.push(Frame { candidates, next: 0, taken: None });
        }
        Verdict::Violation(self.describe_failure())
    }

    fn describe_failure(&self) -> String {
        let acked_total = self.acked_total;
        let (depth, value, candidates) = &self.deepest;
        let stuck: Vec<String> = candidates
            .iter()
            .filter(|&&position| self.ops[position].counts())
            .take(STUCK_OPS_SHOWN_MAX)
            .map(|&position| self.ops[position].describe())
            .collect();
        format!(
            "no linearization of {} serial ops ({acked_total} acknowledged); the longest order \
             explains {depth} acknowledged ops and leaves the value {}, where none of the next \
             ones fits: {}",
            self.ops.len(),
            show(value.as_ref()),
            stuck.join("; ")
        )
    }
}

#[cfg(test)]
mod tests {
    use ringkv_core::cas::{CasCondition, CasTtl};
    use ringkv_core::NodeId;

    use super::*;
    use crate::checkers::fixtures::{at, bytes};

    fn value(text: &str) -> Option<Value> {
        Some(bytes(text))
    }

    fn reply(applied: bool, previous: Option<Value>, current: Option<Value>) -> OpOutcome {
        OpOutcome::Serial(CasReply { applied, previous, current })
    }

    fn serial(
        history: &mut History,
        client: usize,
        op: CasOp,
        span: (u64, u64),
        outcome: OpOutcome,
    ) {
        let request = OpRequest::Cas { key: bytes("k"), op };
        let index = history.invoke(client, NodeId(1), request, at(span.0), false);
        history.complete(index, at(span.1), outcome);
    }

    fn incr() -> CasOp {
        CasOp::IncrBy { delta: 1 }
    }

    fn cas(expected: Option<&str>, new: &str) -> CasOp {
        CasOp::Set {
            value: bytes(new),
            condition: CasCondition::Matches(expected.map(bytes)),
            ttl: CasTtl::Clear,
        }
    }

    fn verdict(history: &History) -> Verdict {
        let verdicts = check_history(history);
        assert_eq!(verdicts.len(), 1, "one serial key");
        verdicts[0].1.clone()
    }

    #[test]
    fn sequential_increments_are_linearizable() {
        let mut history = History::new();
        for step in 0..20u64 {
            let after = (step + 1).to_string();
            let before = (step > 0).then(|| bytes(&step.to_string()));
            serial(
                &mut history,
                0,
                incr(),
                (step * 10, step * 10 + 5),
                reply(true, before, value(&after)),
            );
        }
        assert_eq!(verdict(&history), Verdict::Linearizable);
    }

    #[test]
    fn concurrent_ops_may_take_either_order() {
        let mut history = History::new();
        // Both overlap: the second-invoked one took effect first.
        serial(&mut history, 0, incr(), (0, 10), reply(true, value("1"), value("2")));
        serial(&mut history, 1, incr(), (1, 9), reply(true, None, value("1")));
        assert_eq!(verdict(&history), Verdict::Linearizable);
    }

    #[test]
    fn real_time_order_is_enforced() {
        let mut history = History::new();
        // The second op began after the first replied, yet it claims to have come first.
        serial(&mut history, 0, incr(), (0, 5), reply(true, value("1"), value("2")));
        serial(&mut history, 1, incr(), (6, 9), reply(true, None, value("1")));
        let Verdict::Violation(message) = verdict(&history) else { panic!("must be caught") };
        assert!(message.contains("2 acknowledged"), "{message}");
    }

    #[test]
    fn duplicate_increment_is_caught() {
        let mut history = History::new();
        // Two sequential increments that both saw the same value: one was applied twice over.
        serial(&mut history, 0, incr(), (0, 5), reply(true, None, value("1")));
        serial(&mut history, 1, incr(), (6, 9), reply(true, None, value("1")));
        assert!(matches!(verdict(&history), Verdict::Violation(_)));
    }

    #[test]
    fn lost_cas_is_caught_by_a_later_serial_read() {
        let mut history = History::new();
        serial(&mut history, 0, cas(None, "a"), (0, 5), reply(true, None, value("a")));
        serial(&mut history, 1, CasOp::Read, (6, 9), reply(true, None, None));
        assert!(matches!(verdict(&history), Verdict::Violation(_)));
    }

    #[test]
    fn a_violation_names_the_smallest_window_that_fails_on_its_own() {
        // Two clients increment in overlapping pairs, 60 times; at step 30 the second one's
        // reply repeats the count the first had just returned.
        let mut history = History::new();
        let mut count = 0u64;
        for step in 0..60u64 {
            for client in 0..2usize {
                let stale = step == 30 && client == 1;
                if !stale {
                    count += 1;
                }
                let before = (count > 1).then(|| bytes(&(count - 1).to_string()));
                let start = step * 100 + client as u64;
                let outcome = reply(true, before, value(&count.to_string()));
                serial(&mut history, client, incr(), (start, start + 50), outcome);
            }
        }
        let Verdict::Violation(message) = verdict(&history) else {
            panic!("the repeated count must be caught")
        };
        let window = message.split("smallest non-linearizable window: ").nth(1).unwrap();
        assert!(window.starts_with("2 ops invoked"), "{window}");
        assert!(window.contains("from whatever value the key held"), "{window}");
        assert!(window.contains("op 60 ") && window.contains("op 61 "), "{window}");
        // The violation carries the window's ops, for tools that link them.
        let violations = check_keys(&history);
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].2, vec![60, 61]);
    }

    #[test]
    fn two_winning_cas_on_the_same_value_are_caught() {
        let mut history = History::new();
        serial(&mut history, 0, cas(None, "a"), (0, 10), reply(true, None, value("a")));
        serial(&mut history, 1, cas(None, "b"), (0, 10), reply(true, None, value("b")));
        assert!(matches!(verdict(&history), Verdict::Violation(_)));
    }

    #[test]
    fn unknown_ops_may_or_may_not_have_applied() {
        let mut history = History::new();
        // Unknown increments, then a read that saw two of the three applied.
        for client in 0..3 {
            serial(&mut history, client, incr(), (0, 5), OpOutcome::Unknown("timeout".into()));
        }
        serial(&mut history, 3, CasOp::Read, (10, 12), reply(true, value("2"), value("2")));
        assert_eq!(verdict(&history), Verdict::Linearizable);
        // A later read that saw the count go down is not explainable.
        serial(&mut history, 3, CasOp::Read, (20, 22), reply(true, value("1"), value("1")));
        assert!(matches!(verdict(&history), Verdict::Violation(_)));
    }

    #[test]
    fn an_unknown_op_takes_effect_only_after_its_invocation() {
        let mut history = History::new();
        serial(&mut history, 0, CasOp::Read, (0, 5), reply(true, value("x"), value("x")));
        serial(&mut history, 1, cas(None, "x"), (10, 12), OpOutcome::Unknown("timeout".into()));
        assert!(matches!(verdict(&history), Verdict::Violation(_)));
    }

    #[test]
    fn failed_ops_had_no_effect() {
        let mut history = History::new();
        serial(&mut history, 0, cas(None, "a"), (0, 5), OpOutcome::Failed("no quorum".into()));
        serial(&mut history, 1, CasOp::Read, (6, 9), reply(true, value("a"), value("a")));
        assert!(matches!(verdict(&history), Verdict::Violation(_)));
    }

    #[test]
    fn many_unknown_increments_do_not_blow_up_the_search() {
        let mut history = History::new();
        // 40 unknown increments beside a correct count, then a read showing a count no subset
        // reaches: the search must exhaust (not give up) and report a violation.
        for client in 0..40 {
            serial(&mut history, client, incr(), (0, 100), OpOutcome::Unknown("timeout".into()));
        }
        serial(&mut history, 41, CasOp::Read, (200, 201), reply(true, value("41"), value("41")));
        assert!(matches!(verdict(&history), Verdict::Violation(_)));
    }
}
