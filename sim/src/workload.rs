//! Workload clients: what operations they send, on which keys, with which values.
//!
//! Owns: [`WorkloadConfig`] (client count, rate, mix, key distribution, value size,
//! consistency, timeouts) and each client's generator state ([`ClientState`]). Input: a client's
//! turn to act. Output: the next request, as the node sees it ([`ClientRequest`]) and as the
//! history records it ([`OpRequest`]).
//!
//! Every written value is unique: it encodes the client id and the client's sequence number
//! (`c3-s17`), padded to `value_bytes`, so a value read identifies the one write that made it.
//! A read-modify-write and a delete are two steps: a read, then a write carrying the read's
//! causal context (the delete replaces exactly what the read saw).
//!
//! Serial operations (compare-and-set, increments, serial reads and deletes) use their own few
//! keys ([`serial_key_name`]), which plain operations never touch: the linearizability checker
//! judges those keys, the other checkers the plain ones. A compare-and-set expects the value the
//! client last saw on the key, so under contention some apply and some do not.
//!
//! Invariant: a client has at most one operation in flight (Jepsen-style clients), so its
//! operations are totally ordered and each follow-up write knows which read it continues.

use std::collections::BTreeMap;

use bytes::Bytes;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use ringkv_core::cas::{CasCondition, CasOp, CasTtl};
use ringkv_core::{ClientRequest, Consistency, Context, Duration, Key, Value};

use crate::history::{OpIndex, OpRequest};

/// Relative weights of the operation kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpMix {
    /// Single-key reads.
    pub get: u32,
    /// Blind single-key writes (kept beside every existing sibling).
    pub put: u32,
    /// Single-key overwrites (`Set`: replace what the coordinator has seen).
    pub set: u32,
    /// A read, then a delete carrying its context.
    pub delete: u32,
    /// Multi-key reads.
    pub mget: u32,
    /// Multi-key overwrites.
    pub mset: u32,
    /// A read, then a write carrying its context.
    pub read_modify_write: u32,
    /// Serial compare-and-set of a serial key: a set conditioned on the value the client last
    /// saw there (or, one time in four, on the key being absent: `SET NX`).
    pub cas: u32,
    /// Serial increments of a serial key by 1 to 3.
    pub incr: u32,
    /// Serial reads of a serial key.
    pub serial_get: u32,
    /// Serial unconditional deletes of a serial key (`GETDEL`).
    pub serial_delete: u32,
    /// Cluster-wide flushes (`FLUSHALL`): every key removed. Not with serial operations: the
    /// linearizability checker does not model a flush.
    pub flush: u32,
}

impl OpMix {
    /// Whether any serial operation is in the mix.
    pub fn has_serial(&self) -> bool {
        self.cas + self.incr + self.serial_get + self.serial_delete > 0
    }
}

impl Default for OpMix {
    fn default() -> Self {
        OpMix {
            get: 30,
            put: 10,
            set: 10,
            delete: 5,
            mget: 5,
            mset: 5,
            read_modify_write: 35,
            cas: 0,
            incr: 0,
            serial_get: 0,
            serial_delete: 0,
            flush: 0,
        }
    }
}

/// How keys are picked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeyDistribution {
    /// Every key equally likely.
    Uniform,
    /// Key `i` (from 0) has weight `1 / (i + 1)^exponent`.
    Zipfian {
        /// Skew; around 1 is typical.
        exponent: f64,
    },
    /// Key 0 with probability `hot_share`, else uniform.
    HotKey {
        /// Share of operations on the hot key.
        hot_share: f64,
    },
}

/// What the clients do.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadConfig {
    /// Number of clients.
    pub clients_count: usize,
    /// Operations per simulated second, over all clients (each waits for its previous one).
    pub ops_per_sec: f64,
    /// Operation mix.
    pub mix: OpMix,
    /// Number of distinct keys.
    pub keys_count: usize,
    /// How keys are picked.
    pub key_distribution: KeyDistribution,
    /// Size of every written value.
    pub value_bytes: usize,
    /// Keys per mget or mset.
    pub batch_keys: usize,
    /// Consistency of reads.
    pub read_consistency: Consistency,
    /// Consistency of writes.
    pub write_consistency: Consistency,
    /// How long a client waits for a reply before recording the outcome as unknown.
    pub op_timeout: Duration,
    /// Number of serial keys (named by [`serial_key_name`], apart from the plain keys): the
    /// serial operations of the mix use only these, and plain operations never touch them.
    pub serial_keys_count: usize,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            clients_count: 10,
            ops_per_sec: 1_000.0,
            mix: OpMix::default(),
            keys_count: 100,
            key_distribution: KeyDistribution::Zipfian { exponent: 1.0 },
            value_bytes: 16,
            batch_keys: 3,
            read_consistency: Consistency::Quorum,
            write_consistency: Consistency::Quorum,
            op_timeout: Duration::from_secs(2),
            serial_keys_count: 3,
        }
    }
}

/// The name of key number `index`.
pub fn key_name(index: usize) -> Key {
    Bytes::from(format!("key{index:05}"))
}

/// The name of serial key number `index`.
pub fn serial_key_name(index: usize) -> Key {
    Bytes::from(format!("serial{index:03}"))
}

/// Picks keys by a distribution; the Zipfian table is built once.
#[derive(Debug, Clone)]
pub struct KeyChooser {
    keys_count: usize,
    distribution: KeyDistribution,
    cumulative: Vec<f64>,
}

impl KeyChooser {
    /// A chooser over `keys_count` keys.
    pub fn new(keys_count: usize, distribution: KeyDistribution) -> Self {
        assert!(keys_count > 0, "a workload needs at least one key");
        let cumulative = match distribution {
            KeyDistribution::Zipfian { exponent } => {
                let mut total = 0.0;
                (0..keys_count)
                    .map(|index| {
                        total += 1.0 / ((index + 1) as f64).powf(exponent);
                        total
                    })
                    .collect()
            }
            _ => Vec::new(),
        };
        KeyChooser { keys_count, distribution, cumulative }
    }

    /// The index of the next key.
    pub fn choose(&self, rng: &mut ChaCha8Rng) -> usize {
        match self.distribution {
            KeyDistribution::Uniform => rng.random_range(0..self.keys_count),
            KeyDistribution::HotKey { hot_share } => {
                if rng.random_bool(hot_share.clamp(0.0, 1.0)) {
                    0
                } else {
                    rng.random_range(0..self.keys_count)
                }
            }
            KeyDistribution::Zipfian { .. } => {
                let total = self.cumulative.last().copied().unwrap_or(1.0);
                let target = rng.random::<f64>() * total;
                self.cumulative.partition_point(|weight| *weight < target).min(self.keys_count - 1)
            }
        }
    }
}

/// The second step a client owes after a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUp {
    /// Write a new value with the read's context.
    Put,
    /// Delete with the read's context.
    Delete,
}

/// One client's generator state.
#[derive(Debug)]
pub struct ClientState {
    id: usize,
    rng: ChaCha8Rng,
    seq: u64,
    /// The operation in flight, if any.
    pub in_flight: Option<OpIndex>,
    /// The write owed after the read in flight succeeds.
    pub follow_up: Option<FollowUp>,
    /// The value this client last saw on each serial key (`None`: absent), which its next
    /// compare-and-set expects.
    serial_seen: BTreeMap<Key, Option<Value>>,
}

impl ClientState {
    /// Client `id` drawing from `rng`.
    pub fn new(id: usize, rng: ChaCha8Rng) -> Self {
        ClientState {
            id,
            rng,
            seq: 0,
            in_flight: None,
            follow_up: None,
            serial_seen: BTreeMap::new(),
        }
    }

    /// Notes the value a serial operation reported on `key`, for the next compare-and-set.
    pub fn observe_serial(&mut self, key: &Key, current: Option<Value>) {
        self.serial_seen.insert(key.clone(), current);
    }

    /// The client's generator (for think times and coordinator choice).
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    /// The next operation: a first step (never a follow-up). Returns the node's request, the
    /// history's record and the follow-up owed if the request is a read that starts a
    /// two-step operation.
    pub fn next_op(
        &mut self,
        config: &WorkloadConfig,
        keys: &KeyChooser,
    ) -> (ClientRequest, OpRequest, Option<FollowUp>) {
        let mix = config.mix;
        // Kinds added later go at the end, so that mixes without them draw as they always did.
        let weights = [
            mix.get,
            mix.put,
            mix.delete,
            mix.mget,
            mix.mset,
            mix.read_modify_write,
            mix.set,
            mix.cas,
            mix.incr,
            mix.serial_get,
            mix.serial_delete,
            mix.flush,
        ];
        let total: u32 = weights.iter().sum();
        assert!(total > 0, "the operation mix is empty");
        let mut pick = self.rng.random_range(0..total);
        let kind = weights
            .iter()
            .position(|weight| {
                if pick < *weight {
                    return true;
                }
                pick -= weight;
                false
            })
            .unwrap_or(0);
        let read_consistency = config.read_consistency;
        let write_consistency = config.write_consistency;
        if kind == 11 {
            // Recorded as what it means to the checkers: every plain key removed.
            let keys = (0..config.keys_count).map(key_name).collect();
            return (ClientRequest::Flush, OpRequest::Flush { keys }, None);
        }
        if kind >= 7 {
            let (key, op) = self.serial_op(config, kind);
            let request = ClientRequest::Cas { key: key.clone(), op: op.clone() };
            return (request, OpRequest::Cas { key, op }, None);
        }
        match kind {
            1 => {
                let key = key_name(keys.choose(&mut self.rng));
                let value = self.unique_value(config.value_bytes);
                let request = ClientRequest::Put {
                    key: key.clone(),
                    value: value.clone(),
                    context: None,
                    ttl: None,
                    consistency: write_consistency,
                };
                let record = OpRequest::Write {
                    writes: vec![(key, Some(value))],
                    context_from: None,
                    overwrite: false,
                    consistency: write_consistency,
                };
                (request, record, None)
            }
            6 => {
                let key = key_name(keys.choose(&mut self.rng));
                let value = self.unique_value(config.value_bytes);
                let request = ClientRequest::Set {
                    key: key.clone(),
                    value: value.clone(),
                    ttl: None,
                    consistency: write_consistency,
                };
                let record = OpRequest::Write {
                    writes: vec![(key, Some(value))],
                    context_from: None,
                    overwrite: true,
                    consistency: write_consistency,
                };
                (request, record, None)
            }
            3 => {
                let batch = self.distinct_keys(config, keys);
                let request =
                    ClientRequest::MGet { keys: batch.clone(), consistency: read_consistency };
                (request, OpRequest::Read { keys: batch, consistency: read_consistency }, None)
            }
            4 => {
                let entries: Vec<(Key, Value)> = self
                    .distinct_keys(config, keys)
                    .into_iter()
                    .map(|key| (key, self.unique_value(config.value_bytes)))
                    .collect();
                let writes = entries.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect();
                let request = ClientRequest::MSet { entries, consistency: write_consistency };
                let record = OpRequest::Write {
                    writes,
                    context_from: None,
                    overwrite: true,
                    consistency: write_consistency,
                };
                (request, record, None)
            }
            _ => {
                let key = key_name(keys.choose(&mut self.rng));
                let follow_up = match kind {
                    2 => Some(FollowUp::Delete),
                    5 => Some(FollowUp::Put),
                    _ => None,
                };
                let request =
                    ClientRequest::Get { key: key.clone(), consistency: read_consistency };
                (
                    request,
                    OpRequest::Read { keys: vec![key], consistency: read_consistency },
                    follow_up,
                )
            }
        }
    }

    /// The write that continues the read `read` of `key`, carrying its context.
    pub fn follow_up_op(
        &mut self,
        config: &WorkloadConfig,
        follow_up: FollowUp,
        key: Key,
        context: Context,
        read: OpIndex,
    ) -> (ClientRequest, OpRequest) {
        let consistency = config.write_consistency;
        match follow_up {
            FollowUp::Put => {
                let value = self.unique_value(config.value_bytes);
                let request = ClientRequest::Put {
                    key: key.clone(),
                    value: value.clone(),
                    context: Some(context),
                    ttl: None,
                    consistency,
                };
                let writes = vec![(key, Some(value))];
                (
                    request,
                    OpRequest::Write {
                        writes,
                        context_from: Some(read),
                        overwrite: false,
                        consistency,
                    },
                )
            }
            FollowUp::Delete => {
                let request =
                    ClientRequest::Delete { key: key.clone(), context: Some(context), consistency };
                let writes = vec![(key, None)];
                (
                    request,
                    OpRequest::Write {
                        writes,
                        context_from: Some(read),
                        overwrite: false,
                        consistency,
                    },
                )
            }
        }
    }

    /// A serial operation of kind `kind` (7 and up, in the order of the mix's weights).
    fn serial_op(&mut self, config: &WorkloadConfig, kind: usize) -> (Key, CasOp) {
        let key = serial_key_name(self.rng.random_range(0..config.serial_keys_count.max(1)));
        let op = match kind {
            7 => {
                // Decimal integers, unique per client and sequence, so increments apply to them.
                self.seq += 1;
                let value =
                    Bytes::from(((self.id as u64 + 1) * 1_000_000_000 + self.seq).to_string());
                let condition = if self.rng.random_range(0..4) == 0 {
                    CasCondition::Absent
                } else {
                    CasCondition::Matches(self.serial_seen.get(&key).cloned().flatten())
                };
                CasOp::Set { value, condition, ttl: CasTtl::Clear }
            }
            8 => CasOp::IncrBy { delta: self.rng.random_range(1..=3) },
            9 => CasOp::Read,
            _ => CasOp::Delete { condition: CasCondition::Always },
        };
        (key, op)
    }

    fn unique_value(&mut self, value_bytes: usize) -> Value {
        self.seq += 1;
        let mut text = format!("c{}-s{}", self.id, self.seq).into_bytes();
        if text.len() < value_bytes {
            text.resize(value_bytes, b'.');
        }
        Bytes::from(text)
    }

    fn distinct_keys(&mut self, config: &WorkloadConfig, keys: &KeyChooser) -> Vec<Key> {
        let wanted = config.batch_keys.clamp(1, config.keys_count);
        let mut chosen: Vec<usize> = Vec::with_capacity(wanted);
        // Skewed distributions repeat keys often; the bound keeps a tiny keyspace from looping.
        let attempts_max = wanted * 20;
        for _ in 0..attempts_max {
            let key = keys.choose(&mut self.rng);
            if !chosen.contains(&key) {
                chosen.push(key);
            }
            if chosen.len() == wanted {
                break;
            }
        }
        chosen.into_iter().map(key_name).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::seed::child_rng;

    #[test]
    fn every_written_value_is_distinct_across_clients() {
        let config = WorkloadConfig { value_bytes: 4, ..WorkloadConfig::default() };
        let keys = KeyChooser::new(config.keys_count, config.key_distribution);
        let mut values = BTreeSet::new();
        let mut writes_count = 0;
        for id in 0..3 {
            let mut client = ClientState::new(id, child_rng(1, "client", id as u64));
            for _ in 0..500 {
                let (_, record, _) = client.next_op(&config, &keys);
                if let OpRequest::Write { writes, .. } = record {
                    for (_, value) in writes {
                        writes_count += 1;
                        assert!(values.insert(value.expect("puts carry values")));
                    }
                }
            }
        }
        assert!(writes_count > 100);
    }

    #[test]
    fn the_hot_key_gets_its_share_and_zipf_favours_low_keys() {
        let mut rng = child_rng(2, "keys", 0);
        let hot = KeyChooser::new(100, KeyDistribution::HotKey { hot_share: 0.5 });
        let hot_count = (0..10_000).filter(|_| hot.choose(&mut rng) == 0).count();
        assert!((4_700..5_400).contains(&hot_count), "{hot_count}");
        let zipf = KeyChooser::new(100, KeyDistribution::Zipfian { exponent: 1.0 });
        let draws: Vec<usize> = (0..10_000).map(|_| zipf.choose(&mut rng)).collect();
        let first = draws.iter().filter(|key| **key == 0).count();
        let tenth = draws.iter().filter(|key| **key == 9).count();
        assert!(first > 4 * tenth, "key 0: {first}, key 9: {tenth}");
        assert!(draws.iter().all(|key| *key < 100));
    }
}
