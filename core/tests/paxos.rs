//! Serial operations (per-key Paxos) driven through the in-process router: each test names the
//! property it shows and asserts it.

use bytes::Bytes;
use ringkv_core::cas::{CasCondition, CasOp, CasReply, CasTtl};
use ringkv_core::harness::{Cluster, Reply};
use ringkv_core::message::{ClientRequest, ClientResponse};
use ringkv_core::{ClientError, Duration, NodeConfig, NodeId};

fn config(members: u32) -> NodeConfig {
    NodeConfig::new((1..=members).map(NodeId).collect())
}

fn bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn incr(key: &str) -> ClientRequest {
    ClientRequest::Cas { key: bytes(key), op: CasOp::IncrBy { delta: 1 } }
}

fn cas(key: &str, expected: Option<&str>, new: &str) -> ClientRequest {
    let condition = CasCondition::Matches(expected.map(bytes));
    let op = CasOp::Set { value: bytes(new), condition, ttl: CasTtl::Clear };
    ClientRequest::Cas { key: bytes(key), op }
}

fn serial_read(key: &str) -> ClientRequest {
    ClientRequest::Cas { key: bytes(key), op: CasOp::Read }
}

fn reply(reply: Reply) -> CasReply {
    match reply {
        Ok(ClientResponse::Cas(reply)) => reply,
        other => panic!("expected a serial reply, got {other:?}"),
    }
}

fn current(reply: &CasReply) -> Option<&[u8]> {
    reply.current.as_deref()
}

#[test]
fn increments_through_every_coordinator_count_one_by_one() {
    let mut cluster = Cluster::new(config(3));
    for round in 1..=9u32 {
        let coordinator = NodeId(round % 3 + 1);
        let reply = reply(cluster.call(coordinator, incr("counter")));
        assert_eq!(current(&reply), Some(round.to_string().as_bytes()));
    }
    let read = reply(cluster.call(NodeId(2), serial_read("counter")));
    assert_eq!(current(&read), Some(&b"9"[..]));
}

#[test]
fn concurrent_increments_from_every_node_are_each_applied_exactly_once() {
    let mut cluster = Cluster::new(config(3));
    let mut requests = Vec::new();
    for round in 0..30u32 {
        requests.push(cluster.request(NodeId(round % 3 + 1), incr("hot")));
    }
    let mut seen = Vec::new();
    let mut unknown = 0;
    for request in requests {
        match cluster.run_until_reply(request, Duration::from_secs(30)) {
            Some(Ok(ClientResponse::Cas(reply))) => {
                let text = String::from_utf8(reply.current.unwrap().to_vec()).unwrap();
                seen.push(text.parse::<u32>().unwrap());
            }
            Some(Err(ClientError::Timeout { .. })) => unknown += 1,
            // Contention may exhaust a round's attempts before anything was proposed.
            Some(Err(ClientError::NoPaxosQuorum { .. })) => {}
            other => panic!("unexpected reply {other:?}"),
        }
    }
    seen.sort_unstable();
    let distinct = seen.windows(2).all(|pair| pair[0] < pair[1]);
    assert!(distinct, "two increments returned the same count: {seen:?}");
    assert!(seen.len() >= 10, "most increments should succeed: {} of 30", seen.len());
    let read = reply(cluster.call(NodeId(1), serial_read("hot")));
    let total: usize = String::from_utf8(read.current.unwrap().to_vec()).unwrap().parse().unwrap();
    assert!(total >= seen.len() && total <= seen.len() + unknown, "final count {total}");
}

#[test]
fn compare_and_set_applies_only_when_the_value_is_the_expected_one() {
    let mut cluster = Cluster::new(config(3));
    assert!(reply(cluster.call(NodeId(1), cas("k", None, "a"))).applied);
    let stale = reply(cluster.call(NodeId(2), cas("k", None, "b")));
    assert!(!stale.applied);
    assert_eq!(current(&stale), Some(&b"a"[..]));
    assert!(reply(cluster.call(NodeId(3), cas("k", Some("a"), "c"))).applied);
    assert!(!reply(cluster.call(NodeId(1), cas("k", Some("a"), "d"))).applied);
    // A plain read sees the committed value too.
    let get = ClientRequest::Get { key: bytes("k"), consistency: ringkv_core::Consistency::Quorum };
    match cluster.call(NodeId(2), get) {
        Ok(ClientResponse::Read(read)) => assert_eq!(read.values, vec![bytes("c")]),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn without_a_quorum_a_serial_write_fails_cleanly_and_applies_nothing() {
    let mut cluster = Cluster::new(config(3));
    assert!(reply(cluster.call(NodeId(1), cas("k", None, "a"))).applied);
    cluster.isolate(NodeId(1));
    // Node 1 does not know yet that it is cut off: its rounds time out without a promise quorum.
    match cluster.call(NodeId(1), cas("k", Some("a"), "b")) {
        Err(ClientError::NoPaxosQuorum { required: 2, .. })
        | Err(ClientError::Unavailable { .. }) => {}
        other => panic!("expected a clean failure, got {other:?}"),
    }
    cluster.heal(NodeId(1));
    cluster.run_for(Duration::from_secs(5));
    let read = reply(cluster.call(NodeId(2), serial_read("k")));
    assert_eq!(current(&read), Some(&b"a"[..]));
}

#[test]
fn promises_and_counts_survive_a_crash_and_restart_of_every_node() {
    let mut cluster = Cluster::new(config(3));
    for _ in 0..3 {
        reply(cluster.call(NodeId(1), incr("c")));
    }
    for node in 1..=3 {
        cluster.crash(NodeId(node));
        cluster.restart(NodeId(node));
    }
    cluster.run_for(Duration::from_secs(5));
    let after = reply(cluster.call(NodeId(3), incr("c")));
    assert_eq!(current(&after), Some(&b"4"[..]));
}

#[test]
fn an_increment_of_a_non_integer_is_refused_with_redis_words_and_changes_nothing() {
    let mut cluster = Cluster::new(config(3));
    assert!(reply(cluster.call(NodeId(1), cas("k", None, "abc"))).applied);
    let refused = cluster.call(NodeId(2), incr("k"));
    assert_eq!(refused, Err(ClientError::NotAnInteger));
    assert_eq!(ClientError::NotAnInteger.to_string(), "value is not an integer or out of range");
    let read = reply(cluster.call(NodeId(3), serial_read("k")));
    assert_eq!(current(&read), Some(&b"abc"[..]));
}

#[test]
fn increments_of_one_key_through_one_coordinator_share_rounds_and_all_apply() {
    // Thirty increments of one key sent at once to one node: instead of duelling for the key
    // (one wins each ballot, and a loser accepted somewhere ends unknown), those that arrive
    // while a round runs wait and run together as the key's next round, each seeing the value
    // the ones before it left.
    let mut cluster = Cluster::new(config(3));
    let requests: Vec<_> = (0..30).map(|_| cluster.request(NodeId(1), incr("hot"))).collect();
    let mut seen = Vec::new();
    for request in requests {
        match cluster.run_until_reply(request, Duration::from_secs(30)) {
            Some(Ok(ClientResponse::Cas(reply))) => {
                let text = String::from_utf8(reply.current.unwrap().to_vec()).unwrap();
                seen.push(text.parse::<u32>().unwrap());
            }
            other => panic!("every increment applies, got {other:?}"),
        }
    }
    // Replies come in arrival order, each with the count it made.
    assert_eq!(seen, (1..=30).collect::<Vec<u32>>());
    // Every replica answers three messages (prepare, propose, commit) per round.
    let answered = cluster.node(NodeId(2)).counters().paxos_messages_answered;
    assert!(answered <= 3 * 5, "30 increments took {} rounds", answered / 3);
    assert_eq!(cluster.node(NodeId(2)).counters().paxos_refusals, 0);
    let read = reply(cluster.call(NodeId(3), serial_read("hot")));
    assert_eq!(current(&read), Some(&b"30"[..]));
}
