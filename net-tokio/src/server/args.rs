//! Argument parsing shared by the commands, and the reasons for refusing well-known Redis
//! commands ringkv lacks.

use ringkv_core::{Consistency, Context, Duration};

use super::serial::error_reply;
use crate::resp::Reply;

/// Why a well-known Redis command is refused, for the ones clients commonly send: a reason
/// helps more than "unknown command".
pub(super) fn unsupported_reason(command: &str) -> Option<&'static str> {
    Some(match command {
        "MULTI" | "EXEC" | "DISCARD" | "WATCH" | "UNWATCH" => "there are no transactions",
        "KEYS" => "it would list the whole cluster in one reply; use SCAN",
        "SWAPDB" | "MOVE" => {
            "each database is a keyspace of its own, with its own replicas and storage; keys do \
             not move between them"
        }
        "HSET" | "HGET" | "HMSET" | "HMGET" | "HGETALL" | "HDEL" | "HINCRBY" | "LPUSH"
        | "RPUSH" | "LPOP" | "RPOP" | "LRANGE" | "SADD" | "SREM" | "SMEMBERS" | "SISMEMBER"
        | "ZADD" | "ZRANGE" | "ZREM" | "ZSCORE" | "XADD" | "XREAD" | "PFADD" | "SETBIT"
        | "GETBIT" => "values are strings only",
        "SUBSCRIBE" | "PSUBSCRIBE" | "PUBLISH" | "UNSUBSCRIBE" => "there is no publish/subscribe",
        "EVAL" | "EVALSHA" | "SCRIPT" | "FUNCTION" | "FCALL" => "there is no scripting",
        "CLUSTER" | "READONLY" | "READWRITE" => {
            "ringkv is not Redis Cluster: any node serves any key, without slots"
        }
        _ => return None,
    })
}

pub(super) fn wrong_arity(command: &str) -> Reply {
    Reply::err(format!("wrong number of arguments for '{command}' command"))
}

pub(super) fn parse_i64(text: &[u8]) -> Option<i64> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// The longest time to live accepted, in milliseconds: 400 years, so that the expiry time (the
/// wall clock plus the TTL, in nanoseconds since 1970 in a `u64`) cannot overflow. Redis refuses
/// an overflowing expiry the same way.
pub(super) const TTL_MS_MAX: i64 = 400 * 365 * 24 * 3_600 * 1_000;

/// A positive time to live in seconds (`in_seconds`) or milliseconds, if within
/// [`TTL_MS_MAX`].
pub(super) fn positive_ttl(amount: i64, in_seconds: bool) -> Option<Duration> {
    let ms = if in_seconds { amount.checked_mul(1_000)? } else { amount };
    (1..=TTL_MS_MAX).contains(&ms).then(|| Duration::from_millis(ms as u64))
}

pub(super) fn parse_consistency(text: &[u8]) -> Result<Consistency, Reply> {
    String::from_utf8_lossy(text).parse::<Consistency>().map_err(Reply::err)
}

pub(super) fn parse_context(text: &[u8]) -> Result<Option<Context>, Reply> {
    if text.is_empty() || text == b"-" {
        return Ok(None);
    }
    let bytes = hex_decode(text).ok_or_else(|| Reply::err("invalid causal context: not hex"))?;
    Context::from_bytes(&bytes).map(Some).map_err(|error| error_reply(&error))
}

pub(super) fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

pub(super) fn hex_decode(text: &[u8]) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::is_data_command;
    #[test]
    fn common_redis_commands_ringkv_lacks_are_refused_with_a_reason() {
        let reason = unsupported_reason("SWAPDB").expect("SWAPDB has a reason");
        assert!(reason.contains("keyspace of its own"), "{reason}");
        for served in ["MSETNX", "RENAME", "COPY", "DBSIZE", "RANDOMKEY", "FLUSHALL", "WAIT"] {
            assert_eq!(unsupported_reason(served), None, "{served}");
        }
        // Serial operations made these supported: they must reach their handlers.
        for served in ["INCR", "DECRBY", "INCRBYFLOAT", "APPEND", "SETRANGE", "GETDEL"] {
            assert_eq!(unsupported_reason(served), None, "{served}");
            assert!(is_data_command(served), "{served}");
        }
        assert!(unsupported_reason("KEYS").is_some_and(|reason| reason.contains("SCAN")));
        assert!(unsupported_reason("HSET").is_some_and(|reason| reason.contains("strings")));
        assert_eq!(unsupported_reason("GET"), None);
        assert_eq!(unsupported_reason("NOSUCHCOMMAND"), None);
    }

    #[test]
    fn contexts_round_trip_through_hex() {
        assert_eq!(hex_decode(hex_encode(&[0, 255, 16]).as_bytes()), Some(vec![0, 255, 16]));
        assert!(hex_decode(b"abc").is_none());
        assert!(parse_context(b"zz").is_err());
        assert_eq!(parse_context(b"-").ok(), Some(None));
    }
}
