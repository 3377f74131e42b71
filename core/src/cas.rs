//! Compare-and-set operations: what a serial (Paxos) request asks for, and what it computes.
//!
//! Owns: [`CasOp`], the read-modify-write a client asks for (a conditional set or delete, an
//! increment, an append, a range overwrite, or a plain serial read), and [`evaluate`], the pure
//! function that turns the key's current value into the value to propose and the reply to give.
//! The Paxos round ([`crate::paxos`]) reads the current value at a quorum, calls [`evaluate`]
//! once, and proposes its result; nothing here does I/O or keeps state.
//!
//! Semantics follow Redis: an absent key counts as `0` for increments and as the empty string
//! for appends and range writes; an increment of a value that is not a 64-bit decimal integer is
//! refused with Redis's own message; an increment that overflows is refused and changes nothing;
//! `INCR`, `APPEND` and `SETRANGE` keep the key's time to live, `SET` without `KEEPTTL` clears it.
//!
//! Invariant: when [`Evaluated::write`] is `None`, the reply's `previous` and `current` are equal
//! (nothing changed).

use serde::{Deserialize, Serialize};

use crate::error::ClientError;
use crate::time::Duration;
use crate::types::Value;

/// What a conditional write requires of the key's current value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CasCondition {
    /// Always holds.
    Always,
    /// The key holds no live value (`SET NX`).
    Absent,
    /// The key holds a live value (`SET XX`).
    Present,
    /// The key's live value is exactly this one, `None` meaning absent (`RK.CAS`).
    Matches(Option<Value>),
}

impl CasCondition {
    /// Whether the condition holds for `current`.
    pub fn holds(&self, current: Option<&[u8]>) -> bool {
        match self {
            CasCondition::Always => true,
            CasCondition::Absent => current.is_none(),
            CasCondition::Present => current.is_some(),
            CasCondition::Matches(expected) => current == expected.as_deref(),
        }
    }
}

/// What a serial write does to the key's time to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CasTtl {
    /// The new value has no time to live.
    Clear,
    /// The new value keeps the current one's expiry (`KEEPTTL`, `INCR`, `APPEND`).
    Keep,
    /// The new value expires this long after the coordinator's wall clock.
    Set(Duration),
}

/// A serial read-modify-write of one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum CasOp {
    /// Reads the key at SERIAL: linearizable with every other serial operation on it.
    Read,
    /// Writes `value` if `condition` holds.
    Set {
        /// The new value.
        value: Value,
        /// What the current value must be.
        condition: CasCondition,
        /// The new value's time to live.
        ttl: CasTtl,
    },
    /// Deletes the key if `condition` holds (`GETDEL` with `Always`).
    Delete {
        /// What the current value must be.
        condition: CasCondition,
    },
    /// Adds `delta` to the key's decimal integer value (an absent key is 0).
    IncrBy {
        /// The increment (negative to decrement).
        delta: i64,
    },
    /// Adds `delta` (a decimal float, as text) to the key's decimal value.
    IncrByFloat {
        /// The increment as the client sent it.
        delta: Value,
    },
    /// Appends `value` to the key's value (an absent key is empty).
    Append {
        /// Bytes to append.
        value: Value,
    },
    /// Overwrites the key's value from byte `offset`, padding with zero bytes (`SETRANGE`).
    SetRange {
        /// Where the overwrite starts.
        offset: u64,
        /// Bytes written there.
        value: Value,
    },
}

impl CasOp {
    /// Whether the operation may write (a serial read never does).
    pub fn may_write(&self) -> bool {
        !matches!(self, CasOp::Read)
    }

    /// The largest value the request itself carries, for the limit check at admission.
    pub fn carried_value_bytes(&self) -> usize {
        match self {
            CasOp::Set { value, .. } | CasOp::Append { value } => value.len(),
            CasOp::SetRange { offset, value } => {
                usize::try_from(*offset).unwrap_or(usize::MAX).saturating_add(value.len())
            }
            CasOp::IncrByFloat { delta } => delta.len(),
            CasOp::Read | CasOp::Delete { .. } | CasOp::IncrBy { .. } => 0,
        }
    }
}

/// The outcome of a serial operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CasReply {
    /// Whether the operation's condition held (always true for increments, appends and reads).
    pub applied: bool,
    /// The live value before the operation (`None`: absent).
    pub previous: Option<Value>,
    /// The live value after it.
    pub current: Option<Value>,
}

/// The value to propose: `None` deletes the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposedValue {
    /// The new value, or `None` for a delete.
    pub value: Option<Value>,
    /// What happens to the time to live.
    pub ttl: CasTtl,
}

/// What [`evaluate`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluated {
    /// What to write; `None` when nothing changes (a read, or a condition that failed).
    pub write: Option<ProposedValue>,
    /// The reply, once the write (if any) is committed.
    pub reply: CasReply,
}

/// Computes what `op` does to a key whose live value is `current`. `value_bytes_max` bounds the
/// result (an append may not grow a value past it). Errors change nothing.
pub fn evaluate(
    op: &CasOp,
    current: Option<&Value>,
    value_bytes_max: usize,
) -> Result<Evaluated, ClientError> {
    let unchanged = || Evaluated {
        write: None,
        reply: CasReply { applied: false, previous: current.cloned(), current: current.cloned() },
    };
    let write = |value: Option<Value>, ttl: CasTtl| Evaluated {
        reply: CasReply { applied: true, previous: current.cloned(), current: value.clone() },
        write: Some(ProposedValue { value, ttl }),
    };
    let current_bytes = current.map(|value| value.as_ref());
    let too_large = |len_bytes: usize| -> Result<(), ClientError> {
        if len_bytes > value_bytes_max {
            return Err(ClientError::ValueTooLarge { len_bytes, max_bytes: value_bytes_max });
        }
        Ok(())
    };
    Ok(match op {
        CasOp::Read => {
            let mut read = unchanged();
            read.reply.applied = true;
            read
        }
        CasOp::Set { value, condition, ttl } => {
            if !condition.holds(current_bytes) {
                return Ok(unchanged());
            }
            write(Some(value.clone()), *ttl)
        }
        CasOp::Delete { condition } => {
            if !condition.holds(current_bytes) || current.is_none() {
                let mut kept = unchanged();
                // Deleting an absent key is not a change, but its condition held.
                kept.reply.applied = condition.holds(current_bytes);
                return Ok(kept);
            }
            write(None, CasTtl::Clear)
        }
        CasOp::IncrBy { delta } => {
            let base = match current_bytes {
                None => 0,
                Some(bytes) => parse_integer(bytes).ok_or(ClientError::NotAnInteger)?,
            };
            let sum = base.checked_add(*delta).ok_or(ClientError::IncrementOverflow)?;
            write(Some(Value::from(sum.to_string())), CasTtl::Keep)
        }
        CasOp::IncrByFloat { delta } => {
            let delta = parse_float(delta).ok_or(ClientError::NotAFloat)?;
            let base = match current_bytes {
                None => 0.0,
                Some(bytes) => parse_float(bytes).ok_or(ClientError::NotAFloat)?,
            };
            let sum = base + delta;
            if !sum.is_finite() {
                return Err(ClientError::FloatOverflow);
            }
            write(Some(Value::from(format_float(sum))), CasTtl::Keep)
        }
        CasOp::Append { value } => {
            let mut appended = current_bytes.map(<[u8]>::to_vec).unwrap_or_default();
            too_large(appended.len().saturating_add(value.len()))?;
            appended.extend_from_slice(value);
            write(Some(Value::from(appended)), CasTtl::Keep)
        }
        CasOp::SetRange { offset, value } => {
            let start = usize::try_from(*offset).unwrap_or(usize::MAX);
            let mut bytes = current_bytes.map(<[u8]>::to_vec).unwrap_or_default();
            if value.is_empty() {
                // Redis: an empty write changes nothing (and creates no key).
                return Ok(unchanged());
            }
            let end = start.saturating_add(value.len());
            too_large(end)?;
            if bytes.len() < end {
                bytes.resize(end, 0);
            }
            bytes[start..end].copy_from_slice(value);
            write(Some(Value::from(bytes)), CasTtl::Keep)
        }
    })
}

/// A Redis integer: optional `-`, decimal digits, no spaces, no `+`, no leading zeros beyond
/// `0` itself, within `i64`.
pub fn parse_integer(bytes: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let digits = text.strip_prefix('-').unwrap_or(text);
    let canonical = !digits.is_empty()
        && digits.bytes().all(|byte| byte.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && text != "-0";
    if !canonical {
        return None;
    }
    text.parse().ok()
}

/// A Redis float: what `strtold` would take, without spaces, not NaN.
fn parse_float(bytes: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(bytes).ok()?;
    if text.is_empty() || text.trim() != text {
        return None;
    }
    let value: f64 = text.parse().ok()?;
    (!value.is_nan()).then_some(value)
}

/// Formats a float as Redis's `INCRBYFLOAT` does: the shortest decimal that reads back the
/// same, without an exponent and without trailing zeros.
fn format_float(value: f64) -> String {
    let text = format!("{value}");
    if text.contains('e') || text.contains('E') {
        // Rust prints very large or small numbers with an exponent only in `{:e}`; this is
        // defensive for future formats.
        return format!("{value:.17}").trim_end_matches('0').trim_end_matches('.').to_string();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> Value {
        Value::from(text.to_string())
    }

    fn apply(op: CasOp, current: Option<&str>) -> Result<Evaluated, ClientError> {
        evaluate(&op, current.map(value).as_ref(), 64)
    }

    #[test]
    fn set_nx_writes_only_an_absent_key_and_reports_whether_it_did() {
        let op = || CasOp::Set {
            value: value("new"),
            condition: CasCondition::Absent,
            ttl: CasTtl::Clear,
        };
        let written = apply(op(), None).unwrap();
        assert!(written.reply.applied);
        assert_eq!(written.write.unwrap().value, Some(value("new")));
        let refused = apply(op(), Some("old")).unwrap();
        assert!(!refused.reply.applied && refused.write.is_none());
        assert_eq!(refused.reply.current, Some(value("old")));
    }

    #[test]
    fn compare_and_set_applies_only_on_the_expected_value() {
        let op = |expected: &str| CasOp::Set {
            value: value("b"),
            condition: CasCondition::Matches(Some(value(expected))),
            ttl: CasTtl::Clear,
        };
        assert!(apply(op("a"), Some("a")).unwrap().reply.applied);
        assert!(!apply(op("a"), Some("z")).unwrap().reply.applied);
        assert!(!apply(op("a"), None).unwrap().reply.applied);
    }

    #[test]
    fn increments_count_from_zero_refuse_non_integers_and_overflow() {
        let incr = |delta| CasOp::IncrBy { delta };
        assert_eq!(apply(incr(1), None).unwrap().reply.current, Some(value("1")));
        assert_eq!(apply(incr(-5), Some("3")).unwrap().reply.current, Some(value("-2")));
        assert_eq!(apply(incr(1), Some("abc")), Err(ClientError::NotAnInteger));
        assert_eq!(apply(incr(1), Some(" 1")), Err(ClientError::NotAnInteger));
        assert_eq!(apply(incr(1), Some("01")), Err(ClientError::NotAnInteger));
        assert_eq!(
            apply(incr(1), Some(&i64::MAX.to_string())),
            Err(ClientError::IncrementOverflow)
        );
        assert_eq!(apply(incr(1), None).unwrap().write.unwrap().ttl, CasTtl::Keep);
    }

    #[test]
    fn float_increments_print_like_redis() {
        let op = |delta: &str| CasOp::IncrByFloat { delta: value(delta) };
        assert_eq!(apply(op("0.1"), Some("10.5")).unwrap().reply.current, Some(value("10.6")));
        assert_eq!(apply(op("5"), None).unwrap().reply.current, Some(value("5")));
        assert_eq!(apply(op("x"), None), Err(ClientError::NotAFloat));
        assert_eq!(apply(op("1"), Some("word")), Err(ClientError::NotAFloat));
    }

    #[test]
    fn append_and_setrange_grow_the_value_within_the_limit() {
        let appended = apply(CasOp::Append { value: value("def") }, Some("abc")).unwrap();
        assert_eq!(appended.reply.current, Some(value("abcdef")));
        let ranged = apply(CasOp::SetRange { offset: 2, value: value("XY") }, None).unwrap();
        assert_eq!(ranged.reply.current, Some(Value::from(vec![0, 0, b'X', b'Y'])));
        let too_long = apply(CasOp::SetRange { offset: 63, value: value("XY") }, None);
        assert!(matches!(too_long, Err(ClientError::ValueTooLarge { len_bytes: 65, .. })));
        let empty = apply(CasOp::SetRange { offset: 3, value: value("") }, Some("a")).unwrap();
        assert!(empty.write.is_none());
    }

    #[test]
    fn getdel_deletes_a_present_key_and_leaves_an_absent_one_alone() {
        let op = || CasOp::Delete { condition: CasCondition::Always };
        let deleted = apply(op(), Some("v")).unwrap();
        assert_eq!(deleted.write.unwrap().value, None);
        assert_eq!(deleted.reply.previous, Some(value("v")));
        assert!(apply(op(), None).unwrap().write.is_none());
    }

    #[test]
    fn redis_integers_are_canonical_decimal() {
        assert_eq!(parse_integer(b"-42"), Some(-42));
        assert_eq!(parse_integer(b"0"), Some(0));
        for bad in [&b""[..], b"-", b"+1", b"1.0", b"-0", b"99999999999999999999"] {
            assert_eq!(parse_integer(bad), None, "{bad:?}");
        }
    }
}
