//! Commands over several keys or the whole keyspace: `RENAME`, `RENAMENX`, `COPY`, `MSETNX`,
//! `RANDOMKEY`, `DBSIZE`, `FLUSHALL`/`FLUSHDB`.
//!
//! None of the multi-key commands is atomic across its keys, since serial operations cover one
//! key each; README.md ("Redis compatibility") states what each one guarantees instead. The
//! steps are ordered so that a failure half-way never loses a value: a copy is written before
//! its source is removed, and a rolled-back `MSETNX` only removes a value still equal to the
//! one it wrote.

use bytes::Bytes;
use ringkv_core::cas::{CasCondition, CasOp, CasTtl};
use ringkv_core::message::{ClientRequest, ClientResponse};
use ringkv_core::{Duration, ReadResult};

use super::args::parse_i64;
use super::serial::error_reply;
use super::Ops;
use crate::driver::wall_clock;
use crate::resp::Reply;

/// Keys counted before `DBSIZE` stops scanning and extrapolates from the key density.
const DBSIZE_SAMPLE_KEYS: usize = 2_000;
/// Keys asked for per `SCAN` step by `DBSIZE` and `RANDOMKEY`.
const SCAN_PAGE_KEYS: usize = 500;
/// Scan steps `RANDOMKEY` takes before it answers that it found no key.
const RANDOMKEY_STEPS_MAX: usize = 64;

impl Ops {
    /// The live value of `key` (the last sibling, as `GET` reads it) and the time to live it
    /// has left, with the read's context.
    async fn value_with_ttl(
        &self,
        key: &Bytes,
    ) -> Result<Option<(Bytes, Option<Duration>, ReadResult)>, Reply> {
        let current = self.read(key.clone(), self.read_consistency).await?;
        let Some(value) = current.values.last().cloned() else { return Ok(None) };
        let ttl = current.expire_at.map(|expire_at| {
            // At least 1 ms: the value was live when read, and a zero TTL means none.
            Duration::from_millis(
                expire_at.as_millis().saturating_sub(wall_clock().as_millis()).max(1),
            )
        });
        Ok(Some((value, ttl, current)))
    }

    /// Writes `value` to `key`: an overwrite (`replace`), or a serial write only if the key is
    /// absent. Returns whether it was written.
    async fn write_copy(
        &self,
        key: &Bytes,
        value: Bytes,
        ttl: Option<Duration>,
        replace: bool,
    ) -> Result<bool, Reply> {
        if replace {
            let request = ClientRequest::Set {
                key: key.clone(),
                value,
                ttl,
                consistency: self.write_consistency,
            };
            return self.write(request).await.map(|()| true);
        }
        let ttl = ttl.map_or(CasTtl::Clear, CasTtl::Set);
        let op = CasOp::Set { value, condition: CasCondition::Absent, ttl };
        match self.node.request(ClientRequest::Cas { key: key.clone(), op }).await {
            Ok(ClientResponse::Cas(reply)) => Ok(reply.applied),
            Ok(other) => Err(Reply::err(format!("unexpected response {other:?}"))),
            Err(error) => Err(error_reply(&error)),
        }
    }

    /// `RENAME src dst` (`nx`: `RENAMENX`, only when `dst` is absent). The value and its time
    /// to live are written to `dst` first, then `src` is deleted with the context read, so a
    /// write to `src` made meanwhile survives there.
    pub(super) async fn rename(&self, args: &[Bytes], nx: bool) -> Reply {
        let (source, target) = (&args[1], &args[2]);
        let (value, ttl, read) = match self.value_with_ttl(source).await {
            Ok(Some(found)) => found,
            Ok(None) => return Reply::err("no such key"),
            Err(reply) => return reply,
        };
        if source == target {
            // Redis: renaming a key to itself succeeds, and RENAMENX finds the target present.
            return if nx { Reply::Integer(0) } else { Reply::ok() };
        }
        match self.write_copy(target, value, ttl, !nx).await {
            Ok(true) => {}
            Ok(false) => return Reply::Integer(0),
            Err(reply) => return reply,
        }
        let delete = ClientRequest::Delete {
            key: source.clone(),
            context: Some(read.context),
            consistency: self.write_consistency,
        };
        match self.write(delete).await {
            Ok(()) if nx => Reply::Integer(1),
            Ok(()) => Reply::ok(),
            Err(reply) => reply,
        }
    }

    /// `COPY src dst [DB 0] [REPLACE]`: 1 when copied, 0 when `src` is absent or `dst` exists
    /// (without REPLACE). The copy keeps the time to live.
    pub(super) async fn copy(&self, args: &[Bytes]) -> Reply {
        let mut replace = false;
        let mut index = 3;
        while index < args.len() {
            let option = String::from_utf8_lossy(&args[index]).to_ascii_uppercase();
            match option.as_str() {
                "REPLACE" => replace = true,
                "DB" => {
                    let Some(db) = args.get(index + 1) else { return Reply::err("syntax error") };
                    match parse_i64(db) {
                        Some(0) => {}
                        Some(_) => return Reply::err("DB index is out of range"),
                        None => return Reply::err("value is not an integer or out of range"),
                    }
                    index += 1;
                }
                _ => return Reply::err("syntax error"),
            }
            index += 1;
        }
        let (source, target) = (&args[1], &args[2]);
        if source == target {
            return Reply::err("source and destination objects are the same");
        }
        let (value, ttl, _) = match self.value_with_ttl(source).await {
            Ok(Some(found)) => found,
            Ok(None) => return Reply::Integer(0),
            Err(reply) => return reply,
        };
        match self.write_copy(target, value, ttl, replace).await {
            Ok(copied) => Reply::Integer(i64::from(copied)),
            Err(reply) => reply,
        }
    }

    /// `MSETNX k v [k v ...]`: 1 when every key was absent and is now set, else 0 with none
    /// of them changed by this command. Each key is set by a serial write that holds only if
    /// the key is absent; when one finds its key present, the keys set before it are removed
    /// again by serial deletes that hold only while they still hold the value written.
    pub(super) async fn msetnx(&self, pairs: &[Bytes]) -> Reply {
        // A key named twice takes its last value, as in Redis.
        let mut entries: Vec<(Bytes, Bytes)> = Vec::with_capacity(pairs.len() / 2);
        for pair in pairs.chunks(2) {
            match entries.iter_mut().find(|(key, _)| *key == pair[0]) {
                Some(entry) => entry.1 = pair[1].clone(),
                None => entries.push((pair[0].clone(), pair[1].clone())),
            }
        }
        let mut written: Vec<&(Bytes, Bytes)> = Vec::new();
        let mut outcome = Ok(true);
        for entry in &entries {
            match self.write_copy(&entry.0, entry.1.clone(), None, false).await {
                Ok(true) => written.push(entry),
                failed => {
                    outcome = failed;
                    break;
                }
            }
        }
        if matches!(outcome, Ok(true)) {
            return Reply::Integer(1);
        }
        for (key, value) in written {
            let op = CasOp::Delete { condition: CasCondition::Matches(Some(value.clone())) };
            if let Err(error) = self.node.request(ClientRequest::Cas { key: key.clone(), op }).await
            {
                return Reply::err(format!(
                    "MSETNX failed and could not undo its write of a key: {error}"
                ));
            }
        }
        match outcome {
            Err(reply) => reply,
            Ok(_) => Reply::Integer(0),
        }
    }

    /// One `SCAN` step from `cursor`: the keys found and the next cursor (0: ring done).
    async fn scan_step(&self, cursor: u64) -> Result<(Vec<Bytes>, u64), Reply> {
        match self.node.request(ClientRequest::Scan { cursor, count: SCAN_PAGE_KEYS }).await {
            Ok(ClientResponse::Scanned { keys, cursor }) => Ok((keys, cursor)),
            Ok(other) => Err(Reply::err(format!("unexpected response {other:?}"))),
            Err(error) => Err(error_reply(&error)),
        }
    }

    /// `DBSIZE`: an estimate. Keys are placed by a uniform hash of the key, so the count in a
    /// scanned stretch of the ring, divided by the stretch's share of the ring, estimates the
    /// whole. Scanning stops after [`DBSIZE_SAMPLE_KEYS`] keys; below that the whole ring is
    /// scanned and the count is exact (as of the replicas each step read).
    pub(super) async fn dbsize(&self) -> Reply {
        let (mut counted, mut cursor) = (0usize, 0u64);
        loop {
            let (keys, next) = match self.scan_step(cursor).await {
                Ok(step) => step,
                Err(reply) => return reply,
            };
            counted += keys.len();
            if next == 0 {
                return Reply::Integer(counted as i64);
            }
            if counted >= DBSIZE_SAMPLE_KEYS {
                // Tokens 0..=next are covered: a share of (next + 1) / 2^64 of the ring.
                let share = (next as f64 + 1.0) / 18_446_744_073_709_551_616.0;
                return Reply::Integer((counted as f64 / share).round() as i64);
            }
            cursor = next;
        }
    }

    /// `RANDOMKEY`: the first key at or after a random point of the ring, wrapping around;
    /// nil when the scan finds none within [`RANDOMKEY_STEPS_MAX`] steps.
    pub(super) async fn random_key(&self) -> Reply {
        // The real driver, not the simulator: the operating system's randomness picks the point.
        let start = getrandom::u64().unwrap_or_else(|_| wall_clock().as_millis());
        let mut cursor = start;
        let mut wrapped = false;
        for _ in 0..RANDOMKEY_STEPS_MAX {
            let (keys, next) = match self.scan_step(cursor).await {
                Ok(step) => step,
                Err(reply) => return reply,
            };
            if let Some(key) = keys.into_iter().next() {
                return Reply::Bulk(key);
            }
            if next == 0 {
                if wrapped {
                    return Reply::Null;
                }
                wrapped = true;
            } else if wrapped && next >= start {
                return Reply::Null;
            }
            cursor = next;
        }
        Reply::Null
    }

    /// `FLUSHALL` / `FLUSHDB [ASYNC|SYNC]`: truncates the whole cluster (every node must be
    /// up), when the node's configuration allows it.
    pub(super) async fn flush(&self, args: &[Bytes], allowed: bool, command: &str) -> Reply {
        if args.len() > 2
            || args.get(1).is_some_and(|mode| {
                !mode.eq_ignore_ascii_case(b"ASYNC") && !mode.eq_ignore_ascii_case(b"SYNC")
            })
        {
            return Reply::err("syntax error");
        }
        if !allowed {
            return Reply::err(format!(
                "{} is disabled: set allow_flush: true in the node configuration (ringkv dev \
                 turns it on); it removes every key of the cluster",
                command.to_ascii_lowercase()
            ));
        }
        match self.node.request(ClientRequest::Flush).await {
            Ok(ClientResponse::Flushed) => Reply::ok(),
            Ok(other) => Reply::err(format!("unexpected response {other:?}")),
            Err(error) => error_reply(&error),
        }
    }
}
