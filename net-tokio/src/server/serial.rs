//! `SET` options and the serial (Paxos) commands: parsing into core's operations, and shaping
//! their outcomes and errors as Redis's replies.

use bytes::Bytes;
use ringkv_core::cas::{parse_integer, CasCondition, CasOp, CasReply, CasTtl};
use ringkv_core::{ClientError, Duration, WallTime};

use super::args::{positive_ttl, wrong_arity, TTL_MS_MAX};
use crate::resp::Reply;

/// What a `SET` asked for, once its options are parsed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct SetOptions {
    /// `NX`: write only an absent key.
    only_if_absent: bool,
    /// `XX`: write only a present key.
    only_if_present: bool,
    /// `GET`: reply with the value before the write.
    return_old: bool,
    expiry: SetExpiry,
}

/// What a `SET` does to the key's time to live.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum SetExpiry {
    /// No expiry option: the new value has none.
    #[default]
    Clear,
    /// `KEEPTTL`: the new value keeps the current one's.
    Keep,
    /// `EX` or `PX`: expires this long after the write.
    After(Duration),
    /// `EXAT` or `PXAT`: expires at this wall-clock time.
    At(WallTime),
}

/// The unit of a `SET` expiry option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ExpiryUnit {
    /// `EX`.
    Seconds,
    /// `PX`.
    Milliseconds,
    /// `EXAT`.
    UnixSeconds,
    /// `PXAT`.
    UnixMilliseconds,
}

impl ExpiryUnit {
    pub(super) fn of(option: &str) -> Option<ExpiryUnit> {
        Some(match option {
            "EX" => ExpiryUnit::Seconds,
            "PX" => ExpiryUnit::Milliseconds,
            "EXAT" => ExpiryUnit::UnixSeconds,
            "PXAT" => ExpiryUnit::UnixMilliseconds,
            _ => return None,
        })
    }

    /// The expiry `amount` in this unit asks for, refused with Redis's messages: not an integer,
    /// or not positive (or beyond [`TTL_MS_MAX`], or overflowing in milliseconds).
    pub(super) fn expiry(self, amount: &[u8]) -> Result<SetExpiry, Reply> {
        let amount = parse_integer(amount).ok_or_else(not_an_integer)?;
        let invalid = || Reply::err("invalid expire time in 'set' command");
        match self {
            ExpiryUnit::Seconds | ExpiryUnit::Milliseconds => {
                positive_ttl(amount, self == ExpiryUnit::Seconds)
                    .map(SetExpiry::After)
                    .ok_or_else(invalid)
            }
            ExpiryUnit::UnixSeconds | ExpiryUnit::UnixMilliseconds => {
                let ms = if self == ExpiryUnit::UnixSeconds {
                    amount.checked_mul(1_000)
                } else {
                    Some(amount)
                };
                match ms {
                    Some(ms) if ms > 0 => Ok(SetExpiry::At(WallTime::from_millis(ms as u64))),
                    _ => Err(invalid()),
                }
            }
        }
    }
}

impl SetExpiry {
    /// The time to live this expiry gives a value written at `now`.
    pub(super) fn ttl(self, now: WallTime) -> Result<CasTtl, Reply> {
        Ok(match self {
            SetExpiry::Clear => CasTtl::Clear,
            SetExpiry::Keep => CasTtl::Keep,
            SetExpiry::After(ttl) => CasTtl::Set(ttl),
            SetExpiry::At(at) => {
                let left_ms = at.as_millis().saturating_sub(now.as_millis());
                // The same bound as a relative TTL, so the expiry cannot overflow the clock.
                if left_ms > TTL_MS_MAX as u64 {
                    return Err(Reply::err("invalid expire time in 'set' command"));
                }
                // A time already past gives a TTL of zero: the value is written and expired at
                // once, as Redis does it.
                CasTtl::Set(Duration::from_millis(left_ms))
            }
        })
    }
}

impl SetOptions {
    /// Parses the options after `SET key value` with Redis's rules: `NX` with `XX`, two units of
    /// expiry, or `KEEPTTL` with an expiry are syntax errors, as is an expiry without its
    /// amount; the amount is checked after every option, so a syntax error wins over it.
    pub(super) fn parse(options: &[Bytes]) -> Result<SetOptions, Reply> {
        let mut parsed = SetOptions::default();
        let mut keep_ttl = false;
        let mut expiry: Option<(ExpiryUnit, &Bytes)> = None;
        let mut index = 0;
        while index < options.len() {
            let option = String::from_utf8_lossy(&options[index]).to_ascii_uppercase();
            match (option.as_str(), ExpiryUnit::of(&option), options.get(index + 1)) {
                ("NX", ..) if !parsed.only_if_present => parsed.only_if_absent = true,
                ("XX", ..) if !parsed.only_if_absent => parsed.only_if_present = true,
                ("GET", ..) => parsed.return_old = true,
                ("KEEPTTL", ..) if expiry.is_none() => keep_ttl = true,
                // Redis takes the same unit twice (the last amount counts), not two units.
                (_, Some(unit), Some(amount))
                    if !keep_ttl && expiry.is_none_or(|(seen, _)| seen == unit) =>
                {
                    expiry = Some((unit, amount));
                    index += 1;
                }
                _ => return Err(Reply::err("syntax error")),
            }
            index += 1;
        }
        parsed.expiry = match expiry {
            Some((unit, amount)) => unit.expiry(amount)?,
            None if keep_ttl => SetExpiry::Keep,
            None => SetExpiry::Clear,
        };
        Ok(parsed)
    }

    /// Whether the SET needs the current value (a condition, `GET` or `KEEPTTL`), and so runs as
    /// a serial operation.
    pub(super) fn is_serial(&self) -> bool {
        self.only_if_absent
            || self.only_if_present
            || self.return_old
            || self.expiry == SetExpiry::Keep
    }

    pub(super) fn condition(&self) -> CasCondition {
        if self.only_if_absent {
            CasCondition::Absent
        } else if self.only_if_present {
            CasCondition::Present
        } else {
            CasCondition::Always
        }
    }
}

/// How a `SET` runs.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SetPlan {
    /// An overwrite (`ClientRequest::Set`), with this time to live.
    Plain {
        /// The time to live, if any.
        ttl: Option<Duration>,
    },
    /// A serial operation.
    Serial(SerialCommand),
}

/// Parses `SET key value [options]` (at least three arguments) for a write at `now`.
pub(super) fn set_plan(args: &[Bytes], now: WallTime) -> Result<SetPlan, Reply> {
    debug_assert!(args.len() >= 3, "SET's arity is checked before");
    let options = SetOptions::parse(&args[3..])?;
    let ttl = options.expiry.ttl(now)?;
    if !options.is_serial() {
        let ttl = match ttl {
            CasTtl::Set(ttl) => Some(ttl),
            // `Keep` makes the SET serial, so only `Clear` is left here.
            CasTtl::Clear | CasTtl::Keep => None,
        };
        return Ok(SetPlan::Plain { ttl });
    }
    let op = CasOp::Set { value: args[2].clone(), condition: options.condition(), ttl };
    let shape = if options.return_old { ReplyShape::Previous } else { ReplyShape::OkOrNil };
    Ok(SetPlan::Serial(SerialCommand { key: args[1].clone(), op, shape }))
}

/// A serial command, parsed: the key, the operation to run on it, and how its outcome is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SerialCommand {
    pub(super) key: Bytes,
    pub(super) op: CasOp,
    pub(super) shape: ReplyShape,
}

/// How a serial command's outcome becomes its reply, as Redis shapes each command's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReplyShape {
    /// `OK` when applied, nil when the condition failed (`SET` with `NX`, `XX` or `KEEPTTL`).
    OkOrNil,
    /// The value before, bulk or nil (`SET ... GET`, `GETSET`, `GETDEL`).
    Previous,
    /// 1 when applied, 0 when the condition failed (`SETNX`, `RK.CAS`).
    Applied,
    /// The new value as an integer (`INCR`, `DECR`, `INCRBY`, `DECRBY`).
    CurrentInteger,
    /// The new value, bulk or nil (`INCRBYFLOAT`, `RK.SERIALGET`).
    Current,
    /// The new value's length (`APPEND`, `SETRANGE`).
    CurrentLength,
}

impl ReplyShape {
    pub(super) fn reply(self, outcome: CasReply) -> Reply {
        match self {
            ReplyShape::OkOrNil if outcome.applied => Reply::ok(),
            ReplyShape::OkOrNil => Reply::Null,
            ReplyShape::Previous => outcome.previous.map_or(Reply::Null, Reply::Bulk),
            ReplyShape::Applied => Reply::Integer(i64::from(outcome.applied)),
            // An increment's result is always a canonical integer (`cas::evaluate` prints it).
            ReplyShape::CurrentInteger => {
                match outcome.current.as_deref().and_then(parse_integer) {
                    Some(current) => Reply::Integer(current),
                    None => {
                        Reply::err(format!("unexpected increment result {:?}", outcome.current))
                    }
                }
            }
            ReplyShape::Current => outcome.current.map_or(Reply::Null, Reply::Bulk),
            ReplyShape::CurrentLength => {
                Reply::Integer(outcome.current.map_or(0, |current| current.len() as i64))
            }
        }
    }
}

/// Every serial command but `SET`, whose options decide whether it is one.
pub(super) const SERIAL_COMMANDS: &[&str] = &[
    "SETNX",
    "GETSET",
    "GETDEL",
    "INCR",
    "DECR",
    "INCRBY",
    "DECRBY",
    "INCRBYFLOAT",
    "APPEND",
    "SETRANGE",
    "RK.CAS",
    "RK.SERIALGET",
];

/// Whether `command` (upper-cased) is always a serial command.
pub(super) fn is_serial_command(command: &str) -> bool {
    SERIAL_COMMANDS.contains(&command)
}

/// Whether this command runs as a serial operation (for its metrics label).
pub(super) fn is_serial(command: &str, args: &[Bytes]) -> bool {
    is_serial_command(command)
        || (command == "SET"
            && args.len() > 3
            && SetOptions::parse(&args[3..]).is_ok_and(|options| options.is_serial()))
}

/// Parses a serial command other than `SET` (`command` is upper-cased and in
/// [`SERIAL_COMMANDS`]), with Redis's arity and argument errors.
pub(super) fn serial_command(command: &str, args: &[Bytes]) -> Result<SerialCommand, Reply> {
    let arity = match command {
        "GETDEL" | "INCR" | "DECR" | "RK.SERIALGET" => 2,
        "SETRANGE" | "RK.CAS" => 4,
        _ => 3,
    };
    if args.len() != arity {
        return Err(wrong_arity(&command.to_ascii_lowercase()));
    }
    let key = args[1].clone();
    let always = |value: &Bytes, condition| CasOp::Set {
        value: value.clone(),
        condition,
        ttl: CasTtl::Clear,
    };
    let (op, shape) = match command {
        "SETNX" => (always(&args[2], CasCondition::Absent), ReplyShape::Applied),
        "GETSET" => (always(&args[2], CasCondition::Always), ReplyShape::Previous),
        "GETDEL" => (CasOp::Delete { condition: CasCondition::Always }, ReplyShape::Previous),
        "INCR" => (CasOp::IncrBy { delta: 1 }, ReplyShape::CurrentInteger),
        "DECR" => (CasOp::IncrBy { delta: -1 }, ReplyShape::CurrentInteger),
        "INCRBY" => {
            let delta = parse_integer(&args[2]).ok_or_else(not_an_integer)?;
            (CasOp::IncrBy { delta }, ReplyShape::CurrentInteger)
        }
        "DECRBY" => {
            let delta = parse_integer(&args[2]).ok_or_else(not_an_integer)?;
            // Redis's own check: negating i64::MIN overflows.
            let delta =
                delta.checked_neg().ok_or_else(|| Reply::err("decrement would overflow"))?;
            (CasOp::IncrBy { delta }, ReplyShape::CurrentInteger)
        }
        "INCRBYFLOAT" => {
            // The increment is checked by the operation itself (`cas::evaluate`), with the
            // same rule as the stored value, so there is one definition of a valid float.
            (CasOp::IncrByFloat { delta: args[2].clone() }, ReplyShape::Current)
        }
        "APPEND" => (CasOp::Append { value: args[2].clone() }, ReplyShape::CurrentLength),
        "SETRANGE" => {
            let offset = parse_integer(&args[2]).ok_or_else(not_an_integer)?;
            let Ok(offset) = u64::try_from(offset) else {
                return Err(Reply::err("offset is out of range"));
            };
            let value = args[3].clone();
            // Redis answers an empty write with the current length whatever the offset, and the
            // node refuses an offset past the value limit before looking at the value; an empty
            // write changes nothing at any offset, so it is sent at offset 0.
            let offset = if value.is_empty() { 0 } else { offset };
            (CasOp::SetRange { offset, value }, ReplyShape::CurrentLength)
        }
        "RK.CAS" => {
            // As a SET without KEEPTTL: the new value has no time to live.
            let expected = CasCondition::Matches(Some(args[2].clone()));
            (always(&args[3], expected), ReplyShape::Applied)
        }
        "RK.SERIALGET" => (CasOp::Read, ReplyShape::Current),
        _ => return Err(Reply::err(format!("'{command}' is not a serial command"))),
    };
    Ok(SerialCommand { key, op, shape })
}

/// The RESP error for a failed serial command: as [`error_reply`], but with Redis's message for
/// a string grown past the limit, and a timeout spelled out as an unknown outcome (a proposal
/// may have been accepted and chosen after the deadline).
pub(super) fn serial_error_reply(error: &ClientError, shape: ReplyShape) -> Reply {
    match error {
        ClientError::ValueTooLarge { .. } if shape == ReplyShape::CurrentLength => {
            Reply::err("string exceeds maximum allowed size")
        }
        ClientError::Timeout { .. } => Reply::Error(format!(
            "TIMEOUT {error}; the outcome is unknown: the operation may or may not have been \
             applied"
        )),
        _ => error_reply(error),
    }
}

pub(super) fn not_an_integer() -> Reply {
    Reply::err("value is not an integer or out of range")
}

/// The RESP error for a node error: a code the client can match on, then the node's message.
pub fn error_reply(error: &ClientError) -> Reply {
    let code = match error {
        ClientError::Unavailable { .. } => "UNAVAILABLE",
        // Its own code: unlike a timeout, nothing was applied, so a retry is safe.
        ClientError::NoPaxosQuorum { .. } => "NOQUORUM",
        ClientError::Timeout { .. } => "TIMEOUT",
        ClientError::Overloaded { .. } => "BUSY",
        ClientError::NotReady => "LOADING",
        ClientError::Storage { .. } => "IOERR",
        ClientError::FlushIncomplete { .. } => "TRYAGAIN",
        _ => "ERR",
    };
    Reply::Error(format!("{code} {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::is_data_command;

    fn words(words: &[&str]) -> Vec<Bytes> {
        words.iter().map(|word| Bytes::copy_from_slice(word.as_bytes())).collect()
    }

    fn options(options: &[&str]) -> Result<SetOptions, Reply> {
        SetOptions::parse(&words(options))
    }

    /// The error text of a refused parse.
    fn refusal<T: std::fmt::Debug>(result: Result<T, Reply>) -> String {
        match result {
            Err(Reply::Error(text)) => text,
            other => panic!("expected an error reply, got {other:?}"),
        }
    }

    const NOW: WallTime = WallTime::from_millis(1_700_000_000_000);

    #[test]
    fn set_options_parse_and_refuse_conflicts() {
        let parsed = options(&["EX", "10", "NX"]).unwrap();
        assert_eq!(parsed.expiry, SetExpiry::After(Duration::from_secs(10)));
        assert!(parsed.only_if_absent);
        assert!(options(&["NX", "GET"]).is_ok_and(|parsed| parsed.return_old));
        assert!(options(&["nx", "get", "px", "5"]).is_ok_and(|parsed| parsed.return_old));
        assert!(options(&["PX", &TTL_MS_MAX.to_string()]).is_ok());
        // Redis takes a repeated unit (the last amount counts) and a repeated NX.
        let repeated = options(&["EX", "5", "EX", "7", "NX", "NX"]).unwrap();
        assert_eq!(repeated.expiry, SetExpiry::After(Duration::from_secs(7)));
        for conflict in [
            &["NX", "XX"][..],
            &["XX", "NX"],
            &["EX", "5", "PX", "5"],
            &["EXAT", "5", "EX", "5"],
            &["KEEPTTL", "EX", "5"],
            &["PXAT", "5", "KEEPTTL"],
            &["BOGUS"],
            &["EX"],
            // A syntax error wins over a bad expiry, as in Redis, which checks the time last.
            &["EX", "0", "NX", "XX"],
        ] {
            assert_eq!(refusal(options(conflict)), "ERR syntax error", "{conflict:?}");
        }
        let invalid = "ERR invalid expire time in 'set' command";
        assert_eq!(refusal(options(&["EX", "0"])), invalid);
        assert_eq!(refusal(options(&["PX", "-5"])), invalid);
        assert_eq!(refusal(options(&["EXAT", "0"])), invalid);
        assert_eq!(refusal(options(&["PX", &(TTL_MS_MAX + 1).to_string()])), invalid);
        assert_eq!(refusal(options(&["EX", &(i64::MAX / 1_000 + 1).to_string()])), invalid);
        assert_eq!(refusal(options(&["EXAT", &(i64::MAX / 1_000 + 1).to_string()])), invalid);
        let not_integer = "ERR value is not an integer or out of range";
        assert_eq!(refusal(options(&["EX", "ten"])), not_integer);
        assert_eq!(refusal(options(&["PX", "+5"])), not_integer);
    }

    #[test]
    fn a_set_is_serial_exactly_when_it_needs_the_current_value() {
        let plan = |args: &[&str]| set_plan(&words(args), NOW);
        assert_eq!(plan(&["SET", "k", "v"]).unwrap(), SetPlan::Plain { ttl: None });
        assert_eq!(
            plan(&["SET", "k", "v", "PX", "1500"]).unwrap(),
            SetPlan::Plain { ttl: Some(Duration::from_millis(1_500)) }
        );
        // EXAT and PXAT are resolved against the server's clock; a time past expires at once.
        let at = (NOW.as_millis() + 20_000).to_string();
        assert_eq!(
            plan(&["SET", "k", "v", "PXAT", &at]).unwrap(),
            SetPlan::Plain { ttl: Some(Duration::from_millis(20_000)) }
        );
        assert_eq!(
            plan(&["SET", "k", "v", "EXAT", "1"]).unwrap(),
            SetPlan::Plain { ttl: Some(Duration::ZERO) }
        );
        let far = (NOW.as_millis() + TTL_MS_MAX as u64 + 1).to_string();
        assert!(plan(&["SET", "k", "v", "PXAT", &far]).is_err());
        let serial = |args: &[&str]| match plan(args) {
            Ok(SetPlan::Serial(serial)) => serial,
            other => panic!("{args:?} is not serial: {other:?}"),
        };
        let set = |condition, ttl| CasOp::Set { value: Bytes::from_static(b"v"), condition, ttl };
        let nx = serial(&["SET", "k", "v", "NX"]);
        assert_eq!(nx.key, Bytes::from_static(b"k"));
        assert_eq!(nx.op, set(CasCondition::Absent, CasTtl::Clear));
        assert_eq!(nx.shape, ReplyShape::OkOrNil);
        let xx = serial(&["SET", "k", "v", "XX", "EX", "3"]);
        assert_eq!(xx.op, set(CasCondition::Present, CasTtl::Set(Duration::from_secs(3))));
        let get = serial(&["SET", "k", "v", "GET"]);
        assert_eq!(
            (get.op, get.shape),
            (set(CasCondition::Always, CasTtl::Clear), ReplyShape::Previous)
        );
        let keep = serial(&["SET", "k", "v", "KEEPTTL"]);
        assert_eq!(
            (keep.op, keep.shape),
            (set(CasCondition::Always, CasTtl::Keep), ReplyShape::OkOrNil)
        );
        assert!(is_serial("SET", &words(&["SET", "k", "v", "XX"])));
        assert!(!is_serial("SET", &words(&["SET", "k", "v", "EX", "1"])));
        assert!(is_serial("INCR", &words(&["INCR", "k"])));
    }

    fn serial(args: &[&str]) -> Result<SerialCommand, Reply> {
        let args = words(args);
        let command = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
        assert!(is_serial_command(&command) && is_data_command(&command), "{command}");
        serial_command(&command, &args)
    }

    fn serial_op(args: &[&str]) -> (CasOp, ReplyShape) {
        let parsed = serial(args).unwrap();
        assert_eq!(parsed.key, Bytes::from_static(b"k"), "the key is the first argument");
        (parsed.op, parsed.shape)
    }

    #[test]
    fn serial_commands_parse_into_their_operations() {
        let value = |text: &'static str| Bytes::from_static(text.as_bytes());
        let set =
            |text, condition| CasOp::Set { value: value(text), condition, ttl: CasTtl::Clear };
        assert_eq!(
            serial_op(&["setnx", "k", "v"]),
            (set("v", CasCondition::Absent), ReplyShape::Applied)
        );
        assert_eq!(
            serial_op(&["GETSET", "k", "v"]),
            (set("v", CasCondition::Always), ReplyShape::Previous)
        );
        assert_eq!(
            serial_op(&["GETDEL", "k"]),
            (CasOp::Delete { condition: CasCondition::Always }, ReplyShape::Previous)
        );
        let incr = |delta| (CasOp::IncrBy { delta }, ReplyShape::CurrentInteger);
        assert_eq!(serial_op(&["INCR", "k"]), incr(1));
        assert_eq!(serial_op(&["DECR", "k"]), incr(-1));
        assert_eq!(serial_op(&["INCRBY", "k", "-42"]), incr(-42));
        assert_eq!(serial_op(&["DECRBY", "k", "42"]), incr(-42));
        assert_eq!(serial_op(&["DECRBY", "k", &i64::MAX.to_string()]), incr(-i64::MAX));
        assert_eq!(serial_op(&["INCRBY", "k", &i64::MIN.to_string()]), incr(i64::MIN));
        assert_eq!(
            serial_op(&["INCRBYFLOAT", "k", "1.5e2"]),
            (CasOp::IncrByFloat { delta: value("1.5e2") }, ReplyShape::Current)
        );
        assert_eq!(
            serial_op(&["APPEND", "k", "tail"]),
            (CasOp::Append { value: value("tail") }, ReplyShape::CurrentLength)
        );
        assert_eq!(
            serial_op(&["SETRANGE", "k", "6", "xy"]),
            (CasOp::SetRange { offset: 6, value: value("xy") }, ReplyShape::CurrentLength)
        );
        // An empty write changes nothing at any offset; it goes at 0, below the value limit.
        assert_eq!(
            serial_op(&["SETRANGE", "k", "999999999999", ""]),
            (CasOp::SetRange { offset: 0, value: value("") }, ReplyShape::CurrentLength)
        );
        assert_eq!(
            serial_op(&["RK.CAS", "k", "old", "new"]),
            (set("new", CasCondition::Matches(Some(value("old")))), ReplyShape::Applied)
        );
        assert_eq!(serial_op(&["rk.serialget", "k"]), (CasOp::Read, ReplyShape::Current));
    }

    #[test]
    fn serial_commands_refuse_bad_arguments_with_redis_messages() {
        let not_integer = "ERR value is not an integer or out of range";
        for bad in ["1.5", "ten", "", " 1", "+1", "01", "-0", "99999999999999999999"] {
            assert_eq!(refusal(serial(&["INCRBY", "k", bad])), not_integer, "{bad:?}");
            assert_eq!(refusal(serial(&["DECRBY", "k", bad])), not_integer, "{bad:?}");
            assert_eq!(refusal(serial(&["SETRANGE", "k", bad, "v"])), not_integer, "{bad:?}");
        }
        assert_eq!(
            refusal(serial(&["DECRBY", "k", &i64::MIN.to_string()])),
            "ERR decrement would overflow"
        );
        assert_eq!(refusal(serial(&["SETRANGE", "k", "-1", "v"])), "ERR offset is out of range");
        let arities: [&[&str]; 13] = [
            &["INCR"],
            &["INCR", "k", "1"],
            &["DECR", "k", "1"],
            &["INCRBY", "k"],
            &["DECRBY", "k", "1", "2"],
            &["INCRBYFLOAT", "k"],
            &["APPEND", "k"],
            &["SETRANGE", "k", "1"],
            &["GETDEL", "k", "x"],
            &["GETSET", "k"],
            &["SETNX", "k", "v", "NX"],
            &["RK.CAS", "k", "old"],
            &["RK.SERIALGET", "k", "x"],
        ];
        for args in arities {
            let name = args[0].to_ascii_lowercase();
            let expected = format!("ERR wrong number of arguments for '{name}' command");
            assert_eq!(refusal(serial(args)), expected, "{args:?}");
        }
    }

    #[test]
    fn serial_outcomes_are_shaped_as_redis_replies() {
        let outcome =
            |applied, previous: Option<&'static str>, current: Option<&'static str>| CasReply {
                applied,
                previous: previous.map(|text| Bytes::from_static(text.as_bytes())),
                current: current.map(|text| Bytes::from_static(text.as_bytes())),
            };
        let bulk = |text: &'static str| Reply::Bulk(Bytes::from_static(text.as_bytes()));
        assert_eq!(ReplyShape::OkOrNil.reply(outcome(true, None, Some("v"))), Reply::ok());
        assert_eq!(ReplyShape::OkOrNil.reply(outcome(false, Some("o"), Some("o"))), Reply::Null);
        assert_eq!(ReplyShape::Previous.reply(outcome(true, Some("o"), Some("v"))), bulk("o"));
        assert_eq!(ReplyShape::Previous.reply(outcome(true, None, Some("v"))), Reply::Null);
        assert_eq!(ReplyShape::Applied.reply(outcome(false, None, None)), Reply::Integer(0));
        assert_eq!(ReplyShape::Applied.reply(outcome(true, None, Some("v"))), Reply::Integer(1));
        assert_eq!(
            ReplyShape::CurrentInteger.reply(outcome(true, Some("41"), Some("42"))),
            Reply::Integer(42)
        );
        assert_eq!(ReplyShape::Current.reply(outcome(true, None, Some("10.6"))), bulk("10.6"));
        assert_eq!(ReplyShape::Current.reply(outcome(true, None, None)), Reply::Null);
        assert_eq!(
            ReplyShape::CurrentLength.reply(outcome(true, None, Some("abc"))),
            Reply::Integer(3)
        );
        assert_eq!(ReplyShape::CurrentLength.reply(outcome(false, None, None)), Reply::Integer(0));
    }

    #[test]
    fn serial_failures_say_whether_anything_was_applied() {
        let text = |reply: Reply| match reply {
            Reply::Error(text) => text,
            other => panic!("expected an error, got {other:?}"),
        };
        let no_quorum = ClientError::NoPaxosQuorum { required: 2, promised: 1, attempts: 12 };
        let refused = text(serial_error_reply(&no_quorum, ReplyShape::CurrentInteger));
        assert!(
            refused.starts_with("NOQUORUM ") && refused.contains("nothing was applied"),
            "{refused}"
        );
        let timeout = ClientError::Timeout { required: 2, acked: 1 };
        let unknown = text(serial_error_reply(&timeout, ReplyShape::CurrentInteger));
        assert!(
            unknown.starts_with("TIMEOUT ") && unknown.contains("outcome is unknown"),
            "{unknown}"
        );
        let too_large = ClientError::ValueTooLarge { len_bytes: 11, max_bytes: 10 };
        assert_eq!(
            text(serial_error_reply(&too_large, ReplyShape::CurrentLength)),
            "ERR string exceeds maximum allowed size"
        );
        assert!(
            text(serial_error_reply(&too_large, ReplyShape::OkOrNil)).contains("value too large")
        );
        assert_eq!(
            text(serial_error_reply(&ClientError::NotAnInteger, ReplyShape::CurrentInteger)),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(
            text(serial_error_reply(&ClientError::IncrementOverflow, ReplyShape::CurrentInteger)),
            "ERR increment or decrement would overflow"
        );
        assert_eq!(
            text(serial_error_reply(&ClientError::NotAFloat, ReplyShape::Current)),
            "ERR value is not a valid float"
        );
        assert_eq!(
            text(serial_error_reply(&ClientError::FloatOverflow, ReplyShape::Current)),
            "ERR increment would produce NaN or Infinity"
        );
    }
}
