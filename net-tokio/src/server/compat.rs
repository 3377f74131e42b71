//! Redis commands clients expect of a string store, beyond the core set: absolute expiry
//! (`EXPIREAT`, `PEXPIREAT`, `EXPIRETIME`, `PEXPIRETIME`), `GETEX`, `GETRANGE`/`SUBSTR`,
//! `OBJECT ENCODING`, `CONFIG GET` and the `COMMAND` subcommands redis-cli probes, and Redis's
//! exact wording for an unknown command. Replies and errors follow Redis 7.
//!
//! `EXPIREAT` and `GETEX` read, then write with the read's causal context, as `EXPIRE` does:
//! they are not atomic, so a write racing them becomes a sibling.

use bytes::Bytes;
use ringkv_core::{ClientRequest, Duration};

use super::args::{parse_i64, positive_ttl, wrong_arity, TTL_MS_MAX};
use super::glob::{glob_matches, glob_tokens, GLOB_STEPS_MAX};
use super::Ops;
use crate::driver::wall_clock;
use crate::resp::Reply;

/// The most bytes of a command name or argument an unknown-command error quotes, as Redis.
const UNKNOWN_QUOTE_BYTES_MAX: usize = 128;

/// `ERR unknown command 'name', with args beginning with: 'a' 'b' `, byte for byte as Redis 7
/// words it (each quoted argument followed by a space).
pub(super) fn unknown_command(args: &[Bytes]) -> Reply {
    let quote = |bytes: &Bytes| {
        let shown = &bytes[..bytes.len().min(UNKNOWN_QUOTE_BYTES_MAX)];
        String::from_utf8_lossy(shown).into_owned()
    };
    let mut text = format!("unknown command '{}', with args beginning with: ", quote(&args[0]));
    for arg in &args[1..] {
        text.push_str(&format!("'{}' ", quote(arg)));
    }
    Reply::err(text)
}

/// What a time to live becomes once an absolute or relative expiry is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ExpiryChange {
    /// Keep the value with this time to live.
    Expire(Duration),
    /// The time is already past: the key is deleted, as Redis deletes it.
    Delete,
    /// Drop the time to live (`GETEX ... PERSIST`).
    Persist,
}

/// Resolves a Unix time in seconds (`in_seconds`) or milliseconds against `now_ms`. `None`
/// when the time is out of range (Redis's "invalid expire time").
pub(super) fn expiry_at(at: i64, in_seconds: bool, now_ms: u64) -> Option<ExpiryChange> {
    let at_ms = if in_seconds { at.checked_mul(1_000)? } else { at };
    let left_ms = i128::from(at_ms) - i128::from(now_ms);
    if left_ms <= 0 {
        return Some(ExpiryChange::Delete);
    }
    (left_ms <= i128::from(TTL_MS_MAX))
        .then(|| ExpiryChange::Expire(Duration::from_millis(left_ms as u64)))
}

/// Resolves a relative time to live in seconds or milliseconds; `None` when it is not positive
/// or out of range (`GETEX` refuses both, unlike `EXPIRE`).
fn expiry_in(amount: i64, in_seconds: bool) -> Option<ExpiryChange> {
    positive_ttl(amount, in_seconds).map(ExpiryChange::Expire)
}

/// The options of `GETEX key [EX s|PX ms|EXAT s|PXAT ms|PERSIST]`: `None` for a plain read.
pub(super) fn getex_change(options: &[Bytes], now_ms: u64) -> Result<Option<ExpiryChange>, Reply> {
    let invalid = || Reply::err("invalid expire time in 'getex' command");
    match options {
        [] => Ok(None),
        [persist] if persist.eq_ignore_ascii_case(b"PERSIST") => Ok(Some(ExpiryChange::Persist)),
        [unit, amount] => {
            let unit = String::from_utf8_lossy(unit).to_ascii_uppercase();
            if !matches!(unit.as_str(), "EX" | "PX" | "EXAT" | "PXAT") {
                return Err(Reply::err("syntax error"));
            }
            let amount = parse_i64(amount)
                .ok_or_else(|| Reply::err("value is not an integer or out of range"))?;
            let change = match unit.as_str() {
                "EX" => expiry_in(amount, true),
                "PX" => expiry_in(amount, false),
                // Redis refuses a non-positive absolute time, and deletes at a past one.
                _ if amount <= 0 => None,
                "EXAT" => expiry_at(amount, true, now_ms),
                _ => expiry_at(amount, false, now_ms),
            };
            change.map(Some).ok_or_else(invalid)
        }
        _ => Err(Reply::err("syntax error")),
    }
}

/// `GETRANGE`'s bounds on a value of `len` bytes, as Redis computes them (negative offsets
/// count from the end, then both are clamped); `None` for an empty result.
pub(super) fn byte_range(len: usize, start: i64, end: i64) -> Option<(usize, usize)> {
    if start < 0 && end < 0 && start > end {
        return None;
    }
    let len = len as i64;
    let start = if start < 0 { len + start } else { start }.max(0);
    let end = if end < 0 { len + end } else { end }.max(0).min(len - 1);
    (len > 0 && start <= end).then(|| (start as usize, end as usize + 1))
}

/// Redis's encoding name for a string value: `int` for a canonical 64-bit integer, `embstr`
/// up to 44 bytes, `raw` beyond.
pub(super) fn string_encoding(value: &[u8]) -> &'static str {
    let canonical_integer = value.len() <= 20
        && std::str::from_utf8(value)
            .ok()
            .and_then(|text| text.parse::<i64>().ok().map(|number| number.to_string() == text))
            .unwrap_or(false);
    if canonical_integer {
        "int"
    } else if value.len() <= 44 {
        "embstr"
    } else {
        "raw"
    }
}

/// The configuration parameters `CONFIG GET` reports, with ringkv's fixed answers: the ones
/// client libraries and test harnesses commonly probe. ringkv is configured by its RON file,
/// so `CONFIG SET` is refused.
const CONFIG_PARAMETERS: &[(&str, &str)] = &[
    ("appendonly", "yes"),
    ("databases", "1"),
    ("maxmemory", "0"),
    ("maxmemory-policy", "noeviction"),
    ("proto-max-bulk-len", "536870912"),
    ("save", ""),
    ("timeout", "0"),
];

/// `CONFIG GET pattern [pattern ...]`, `CONFIG SET`, `CONFIG RESETSTAT`.
pub(super) fn config(args: &[Bytes]) -> Reply {
    let Some(subcommand) = args.get(1) else { return wrong_arity("config") };
    let subcommand = String::from_utf8_lossy(subcommand).to_ascii_uppercase();
    match subcommand.as_str() {
        "GET" if args.len() >= 3 => {
            let mut pairs = Vec::new();
            for (name, value) in CONFIG_PARAMETERS {
                let matched = args[2..].iter().any(|pattern| {
                    let lower = pattern.to_ascii_lowercase();
                    let mut steps = GLOB_STEPS_MAX;
                    glob_matches(&glob_tokens(&lower), name.as_bytes(), &mut steps).unwrap_or(false)
                });
                if matched {
                    pairs.push(Reply::Bulk(Bytes::from_static(name.as_bytes())));
                    pairs.push(Reply::Bulk(Bytes::from_static(value.as_bytes())));
                }
            }
            Reply::Array(pairs)
        }
        "GET" => wrong_arity("config|get"),
        "SET" => Reply::err("CONFIG SET is not supported: ringkv is configured by its RON file"),
        "RESETSTAT" => Reply::ok(),
        _ => Reply::err(format!(
            "unknown subcommand '{}'. Try CONFIG HELP.",
            String::from_utf8_lossy(&args[1])
        )),
    }
}

/// `COMMAND`, `COMMAND COUNT`, `COMMAND DOCS`, `COMMAND INFO`: enough for redis-cli, which asks
/// for docs to show hints and copes with none. `known` is how many commands ringkv serves.
pub(super) fn command(args: &[Bytes], known: usize) -> Reply {
    let Some(subcommand) = args.get(1) else { return Reply::Array(Vec::new()) };
    match String::from_utf8_lossy(subcommand).to_ascii_uppercase().as_str() {
        "COUNT" if args.len() == 2 => Reply::Integer(known as i64),
        "DOCS" => Reply::Array(Vec::new()),
        // One nil per name asked: ringkv keeps no per-command metadata table.
        "INFO" => Reply::Array(args[2..].iter().map(|_| Reply::Null).collect()),
        "COUNT" => wrong_arity("command|count"),
        _ => Reply::err(format!(
            "unknown subcommand '{}'. Try COMMAND HELP.",
            String::from_utf8_lossy(subcommand)
        )),
    }
}

impl Ops {
    /// Applies `change` to `key` by a read and a write with its context; `Ok(None)` when the
    /// key is absent, else the value read.
    pub(super) async fn change_expiry(
        &self,
        key: &Bytes,
        change: Option<ExpiryChange>,
    ) -> Result<Option<Bytes>, Reply> {
        let current = self.read(key.clone(), self.read_consistency).await?;
        let Some(value) = current.values.last().cloned() else { return Ok(None) };
        let request = match change {
            None => return Ok(Some(value)),
            Some(ExpiryChange::Persist) if current.expire_at.is_none() => return Ok(Some(value)),
            Some(ExpiryChange::Delete) => ClientRequest::Delete {
                key: key.clone(),
                context: Some(current.context),
                consistency: self.write_consistency,
            },
            Some(ExpiryChange::Expire(ttl)) => ClientRequest::Put {
                key: key.clone(),
                value: value.clone(),
                context: Some(current.context),
                ttl: Some(ttl),
                consistency: self.write_consistency,
            },
            Some(ExpiryChange::Persist) => ClientRequest::Put {
                key: key.clone(),
                value: value.clone(),
                context: Some(current.context),
                ttl: None,
                consistency: self.write_consistency,
            },
        };
        self.write(request).await?;
        Ok(Some(value))
    }

    /// `EXPIREAT key unix-seconds` / `PEXPIREAT key unix-ms`: 1 if the key existed, 0 if not.
    pub(super) async fn expire_at(&self, args: &[Bytes], millis: bool) -> Reply {
        let Some(at) = parse_i64(&args[2]) else {
            return Reply::err("value is not an integer or out of range");
        };
        let Some(change) = expiry_at(at, !millis, wall_clock().as_millis()) else {
            let name = if millis { "pexpireat" } else { "expireat" };
            return Reply::err(format!("invalid expire time in '{name}' command"));
        };
        match self.change_expiry(&args[1], Some(change)).await {
            Ok(found) => Reply::Integer(i64::from(found.is_some())),
            Err(reply) => reply,
        }
    }

    /// `EXPIRETIME` / `PEXPIRETIME`: the absolute expiry in Unix seconds or milliseconds, -1
    /// without one, -2 for an absent key.
    pub(super) async fn expire_time(&self, key: Bytes, millis: bool) -> Reply {
        let current = match self.read(key, self.read_consistency).await {
            Ok(current) => current,
            Err(reply) => return reply,
        };
        if current.values.is_empty() {
            return Reply::Integer(-2);
        }
        let Some(expire_at) = current.expire_at else { return Reply::Integer(-1) };
        let at_ms = expire_at.as_millis() as i64;
        Reply::Integer(if millis { at_ms } else { (at_ms + 500) / 1_000 })
    }

    /// `GETEX key [EX s|PX ms|EXAT s|PXAT ms|PERSIST]`: the value (nil if absent), with its time
    /// to live changed as asked.
    pub(super) async fn getex(&self, args: &[Bytes]) -> Reply {
        let change = match getex_change(&args[2..], wall_clock().as_millis()) {
            Ok(change) => change,
            Err(reply) => return reply,
        };
        match self.change_expiry(&args[1], change).await {
            Ok(found) => found.map_or(Reply::Null, Reply::Bulk),
            Err(reply) => reply,
        }
    }

    /// `GETRANGE key start end` (and its old name `SUBSTR`).
    pub(super) async fn getrange(&self, args: &[Bytes]) -> Reply {
        let (Some(start), Some(end)) = (parse_i64(&args[2]), parse_i64(&args[3])) else {
            return Reply::err("value is not an integer or out of range");
        };
        let current = match self.read(args[1].clone(), self.read_consistency).await {
            Ok(current) => current,
            Err(reply) => return reply,
        };
        let value = current.values.last().cloned().unwrap_or_default();
        match byte_range(value.len(), start, end) {
            Some((from, to)) => Reply::Bulk(value.slice(from..to)),
            None => Reply::Bulk(Bytes::new()),
        }
    }

    /// `OBJECT ENCODING key`: nil for an absent key.
    pub(super) async fn object(&self, args: &[Bytes]) -> Reply {
        let subcommand = args.get(1).map(|word| word.to_ascii_uppercase());
        match (subcommand.as_deref(), args.len()) {
            (Some(b"ENCODING"), 3) => {
                match self.read(args[2].clone(), self.read_consistency).await {
                    Ok(current) => current.values.last().map_or(Reply::Null, |value| {
                        Reply::Bulk(Bytes::from_static(string_encoding(value).as_bytes()))
                    }),
                    Err(reply) => reply,
                }
            }
            (Some(b"ENCODING"), _) => wrong_arity("object|encoding"),
            (None, _) => wrong_arity("object"),
            (Some(_), _) => Reply::err(format!(
                "unknown subcommand '{}'. Try OBJECT HELP.",
                String::from_utf8_lossy(&args[1])
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(words: &[&str]) -> Vec<Bytes> {
        words.iter().map(|word| Bytes::copy_from_slice(word.as_bytes())).collect()
    }

    fn text(reply: Reply) -> String {
        match reply {
            Reply::Error(text) => text,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn unknown_commands_are_worded_as_redis_words_them() {
        assert_eq!(
            text(unknown_command(&words(&["foo", "a", "b"]))),
            "ERR unknown command 'foo', with args beginning with: 'a' 'b' "
        );
        assert_eq!(
            text(unknown_command(&words(&["nope"]))),
            "ERR unknown command 'nope', with args beginning with: "
        );
        let long = "x".repeat(300);
        let reply = text(unknown_command(&words(&[&long])));
        assert!(reply.contains(&format!("'{}'", "x".repeat(128))) && !reply.contains(&long));
    }

    #[test]
    fn getrange_bounds_match_redis() {
        // Redis's documented examples on "This is a string" (16 bytes).
        assert_eq!(byte_range(16, 0, 3), Some((0, 4)));
        assert_eq!(byte_range(16, -3, -1), Some((13, 16)));
        assert_eq!(byte_range(16, 0, -1), Some((0, 16)));
        assert_eq!(byte_range(16, 10, 100), Some((10, 16)));
        assert_eq!(byte_range(16, 5, 3), None);
        assert_eq!(byte_range(16, -1, -5), None);
        assert_eq!(byte_range(16, -100, 2), Some((0, 3)));
        assert_eq!(byte_range(0, 0, -1), None);
    }

    #[test]
    fn absolute_expiry_resolves_against_now() {
        let now_ms = 1_700_000_000_000;
        assert_eq!(
            expiry_at(1_700_000_010, true, now_ms),
            Some(ExpiryChange::Expire(Duration::from_secs(10)))
        );
        assert_eq!(expiry_at(1_600_000_000, true, now_ms), Some(ExpiryChange::Delete));
        assert_eq!(expiry_at(i64::MAX, true, now_ms), None, "overflows");
        assert_eq!(expiry_at(i64::MAX, false, now_ms), None, "beyond 400 years");
    }

    #[test]
    fn getex_options_parse_as_redis_does() {
        let now_ms = 1_700_000_000_000;
        let parse = |options: &[&str]| getex_change(&words(options), now_ms);
        assert_eq!(parse(&[]), Ok(None));
        assert_eq!(parse(&["persist"]), Ok(Some(ExpiryChange::Persist)));
        assert_eq!(parse(&["EX", "5"]), Ok(Some(ExpiryChange::Expire(Duration::from_secs(5)))));
        assert_eq!(
            parse(&["PX", "1500"]),
            Ok(Some(ExpiryChange::Expire(Duration::from_millis(1_500))))
        );
        assert_eq!(parse(&["PXAT", "1"]), Ok(Some(ExpiryChange::Delete)));
        assert_eq!(
            text(parse(&["EX", "0"]).unwrap_err()),
            "ERR invalid expire time in 'getex' command"
        );
        assert_eq!(
            text(parse(&["EXAT", "-1"]).unwrap_err()),
            "ERR invalid expire time in 'getex' command"
        );
        assert_eq!(
            text(parse(&["EX", "soon"]).unwrap_err()),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(text(parse(&["EX"]).unwrap_err()), "ERR syntax error");
        assert_eq!(text(parse(&["EX", "1", "PERSIST"]).unwrap_err()), "ERR syntax error");
    }

    #[test]
    fn encodings_are_named_as_redis_names_them() {
        assert_eq!(string_encoding(b"12345"), "int");
        assert_eq!(string_encoding(b"-9223372036854775808"), "int");
        assert_eq!(string_encoding(b"007"), "embstr", "not canonical");
        assert_eq!(string_encoding(b"hello"), "embstr");
        assert_eq!(string_encoding(&[b'a'; 45]), "raw");
    }

    #[test]
    fn config_get_matches_patterns_and_config_set_is_refused() {
        let reply = config(&words(&["CONFIG", "GET", "max*"]));
        let Reply::Array(pairs) = reply else { panic!("an array") };
        let names: Vec<_> = pairs.iter().step_by(2).cloned().collect();
        assert_eq!(
            names,
            vec![
                Reply::Bulk(Bytes::from_static(b"maxmemory")),
                Reply::Bulk(Bytes::from_static(b"maxmemory-policy"))
            ]
        );
        assert_eq!(config(&words(&["CONFIG", "GET", "nosuch"])), Reply::Array(Vec::new()));
        assert!(text(config(&words(&["CONFIG", "SET", "save", ""]))).contains("RON file"));
        assert_eq!(
            text(config(&words(&["CONFIG", "GET"]))),
            "ERR wrong number of arguments for 'config|get' command"
        );
        assert_eq!(command(&words(&["COMMAND", "COUNT"]), 7), Reply::Integer(7));
    }
}
