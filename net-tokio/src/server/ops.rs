//! The data commands: each maps to node requests on a cheap clone of the connection's [`Ops`].

use std::sync::Arc;
use std::time::Instant as WallInstant;

use bytes::Bytes;
use ringkv_core::message::ReadResult;
use ringkv_core::{ClientRequest, ClientResponse, Consistency};

use super::args::{
    hex_encode, parse_consistency, parse_context, parse_i64, positive_ttl, wrong_arity,
};
use super::compat::ExpiryChange;
use super::glob::{glob_matches, glob_tokens, GLOB_STEPS_MAX};

use super::serial::{
    error_reply, is_serial, is_serial_command, serial_command, serial_error_reply, set_plan,
    SerialCommand, SetPlan,
};
use super::{consistency_label, Ops, ReplyFuture};
use crate::driver::wall_clock;
use crate::metrics::Metrics;
use crate::resp::Reply;

impl Ops {
    /// Runs a data command and records its latency.
    pub(super) fn dispatch_timed(
        self,
        command: String,
        args: Vec<Bytes>,
        metrics: Arc<Metrics>,
    ) -> ReplyFuture {
        Box::pin(async move {
            let started = WallInstant::now();
            let reads = matches!(
                command.as_str(),
                "GET" | "MGET" | "EXISTS" | "TTL" | "PTTL" | "RK.GETALL"
            );
            let consistency = if reads { self.read_consistency } else { self.write_consistency };
            // Serial commands ignore the connection's levels: Paxos needs a quorum per phase.
            let label =
                if is_serial(&command, &args) { "SERIAL" } else { consistency_label(consistency) };
            let reply = self.dispatch(&command, &args).await;
            metrics.observe_request(
                &command,
                label,
                !matches!(reply, Reply::Error(_)),
                started.elapsed().as_micros() as u64,
            );
            reply
        })
    }

    /// Runs a data command (`command` is the upper-cased name).
    pub(super) async fn dispatch(self, command: &str, args: &[Bytes]) -> Reply {
        match command {
            "PING" if args.len() == 1 => Reply::Simple("PONG".into()),
            "PING" if args.len() == 2 => Reply::Bulk(args[1].clone()),
            "ECHO" if args.len() == 2 => Reply::Bulk(args[1].clone()),
            "GET" if args.len() == 2 => self.get(args[1].clone()).await,
            "SET" if args.len() >= 3 => self.set(args).await,
            "SETEX" | "PSETEX" if args.len() == 4 => self.set_expiring(args, command).await,
            _ if is_serial_command(command) => match serial_command(command, args) {
                Ok(serial) => self.serial(serial).await,
                Err(reply) => reply,
            },
            "STRLEN" | "TYPE" if args.len() == 2 => self.describe(args[1].clone(), command).await,
            "EXPIREAT" | "PEXPIREAT" if args.len() == 3 => {
                self.expire_at(args, command == "PEXPIREAT").await
            }
            "EXPIRETIME" | "PEXPIRETIME" if args.len() == 2 => {
                self.expire_time(args[1].clone(), command == "PEXPIRETIME").await
            }
            "GETEX" if args.len() >= 2 => self.getex(args).await,
            "GETRANGE" | "SUBSTR" if args.len() == 4 => self.getrange(args).await,
            "DEL" | "UNLINK" if args.len() >= 2 => self.delete(&args[1..]).await,
            "EXISTS" | "TOUCH" if args.len() >= 2 => self.exists(&args[1..]).await,
            "MGET" if args.len() >= 2 => self.mget(&args[1..]).await,
            "MSET" if args.len() >= 3 && !args.len().is_multiple_of(2) => {
                self.mset(&args[1..]).await
            }
            "EXPIRE" | "PEXPIRE" if args.len() == 3 => {
                self.expire(args, command == "PEXPIRE").await
            }
            "TTL" | "PTTL" if args.len() == 2 => self.ttl(args[1].clone(), command == "PTTL").await,
            "PERSIST" if args.len() == 2 => self.persist(args[1].clone()).await,
            "RK.GETALL" if args.len() == 2 || args.len() == 3 => self.get_all(args).await,
            "RK.PUT" if (4..=6).contains(&args.len()) => self.put_with_context(args).await,
            "RK.DEL" if args.len() == 3 || args.len() == 4 => self.delete_with_context(args).await,
            _ => wrong_arity(&command.to_ascii_lowercase()),
        }
    }

    /// `INFO`, with `connected_clients` (the node's open client connections) as monitoring
    /// tools read it from Redis.
    pub(super) async fn info(&self, connected_clients: u64) -> Reply {
        let Some(status) = self.node.status().await else { return Reply::err("node stopped") };
        let text = format!(
            "# Server\r\nredis_version:7.0.0\r\nredis_mode:standalone\r\nringkv_version:{}\r\nnode_id:{}\r\nepoch:{}\r\nready:{}\r\nrebuilding:{}\r\n# Clients\r\nconnected_clients:{}\r\n# Cluster\r\nmembers:{}\r\n# Stats\r\nread_repairs_sent:{}\r\npeer_messages_dropped:{}\r\ntombstones_purged:{}\r\nclient_errors:{}\r\n",
            env!("CARGO_PKG_VERSION"),
            status.id.0,
            status.epoch,
            u8::from(status.ready),
            u8::from(status.rebuilding),
            connected_clients,
            status.members.iter().map(|member| member.0.to_string()).collect::<Vec<_>>().join(","),
            status.counters.read_repairs_sent,
            status.counters.peer_messages_dropped,
            status.counters.tombstones_purged,
            status.counters.client_errors,
        );
        Reply::Bulk(Bytes::from(text))
    }

    /// `RK.STATUS`: the selected keyspace's node; `keyspaces` lists every keyspace of the
    /// process (`name db=N replicas=N`).
    pub(super) async fn status(&self, keyspaces: Vec<String>) -> Reply {
        let Some(status) = self.node.status().await else { return Reply::err("node stopped") };
        let mut datacenters: std::collections::BTreeMap<&str, Vec<String>> =
            std::collections::BTreeMap::new();
        for (node, location) in &status.locations {
            datacenters
                .entry(location.datacenter.as_str())
                .or_default()
                .push(format!("{}@{}", node.0, location.rack));
        }
        let location = status
            .locations
            .iter()
            .find(|(node, _)| *node == status.id)
            .map(|(_, location)| format!("{}/{}", location.datacenter, location.rack))
            .unwrap_or_default();
        Reply::Map(vec![
            (Reply::text("node"), Reply::Integer(i64::from(status.id.0))),
            (Reply::text("epoch"), Reply::Integer(i64::from(status.epoch))),
            (Reply::text("ready"), Reply::Integer(i64::from(status.ready))),
            (
                Reply::text("members"),
                Reply::Array(
                    status
                        .members
                        .iter()
                        .map(|member| Reply::Integer(i64::from(member.0)))
                        .collect(),
                ),
            ),
            (
                Reply::text("membership"),
                Reply::Array(
                    status
                        .membership
                        .iter()
                        .map(|(id, state)| Reply::text(format!("{}:{state}", id.0)))
                        .collect(),
                ),
            ),
            // Last, so that the positions of the fields before it do not move for clients
            // that read the map as a flat array.
            (Reply::text("rebuilding"), Reply::Integer(i64::from(status.rebuilding))),
            // Added after `rebuilding` for the same reason.
            (Reply::text("location"), Reply::text(location)),
            (
                Reply::text("datacenters"),
                Reply::Array(
                    datacenters
                        .into_iter()
                        .map(|(datacenter, nodes)| {
                            Reply::text(format!("{datacenter}:{}", nodes.join(",")))
                        })
                        .collect(),
                ),
            ),
            (
                Reply::text("keyspaces"),
                Reply::Array(keyspaces.into_iter().map(Reply::text).collect()),
            ),
        ])
    }

    pub(super) async fn ring(&self) -> Reply {
        let Some(status) = self.node.status().await else { return Reply::err("node stopped") };
        // Rows: node, primary share, datacenter, rack, replica share (the last three added
        // after the first two, which older tools read).
        let location = |node| {
            status.locations.iter().find(|(member, _)| *member == node).map(|(_, at)| at.clone())
        };
        let replica_share = |node| {
            status.replica_shares.iter().find(|(member, _)| *member == node).map_or(0.0, |s| s.1)
        };
        Reply::Array(
            status
                .shares
                .iter()
                .map(|(node, share)| {
                    let at = location(*node).unwrap_or_default();
                    Reply::Array(vec![
                        Reply::Integer(i64::from(node.0)),
                        Reply::text(format!("{:.4}", share)),
                        Reply::text(at.datacenter),
                        Reply::text(at.rack),
                        Reply::text(format!("{:.4}", replica_share(*node))),
                    ])
                })
                .collect(),
        )
    }

    /// `SCAN cursor [MATCH pattern] [COUNT n] [TYPE type]`: a run of arcs per call; MATCH
    /// filters the keys found (so a call may return none while the cursor moves on), as in Redis.
    pub(super) async fn scan(&self, args: &[Bytes]) -> Reply {
        let Some(cursor) =
            std::str::from_utf8(&args[1]).ok().and_then(|text| text.parse::<u64>().ok())
        else {
            return Reply::err("invalid cursor");
        };
        let (mut pattern, mut count, mut only_strings) = (None, 10usize, true);
        let mut index = 2;
        while index < args.len() {
            let option = String::from_utf8_lossy(&args[index]).to_ascii_uppercase();
            let Some(value) = args.get(index + 1) else { return Reply::err("syntax error") };
            match option.as_str() {
                "MATCH" => pattern = Some(value.clone()),
                "COUNT" => match std::str::from_utf8(value)
                    .ok()
                    .and_then(|text| text.parse::<usize>().ok())
                {
                    Some(parsed) if parsed > 0 => count = parsed,
                    _ => return Reply::err("value is not an integer or out of range"),
                },
                "TYPE" => only_strings = value.eq_ignore_ascii_case(b"string"),
                _ => return Reply::err("syntax error"),
            }
            index += 2;
        }
        match self.node.request(ClientRequest::Scan { cursor, count }).await {
            Ok(ClientResponse::Scanned { keys, cursor }) => {
                let tokens = pattern.as_deref().map(glob_tokens);
                let mut steps = GLOB_STEPS_MAX;
                let mut listed = Vec::new();
                for key in keys.into_iter().filter(|_| only_strings) {
                    let matched = match &tokens {
                        Some(tokens) => glob_matches(tokens, &key, &mut steps),
                        None => Some(true),
                    };
                    match matched {
                        Some(true) => listed.push(Reply::Bulk(key)),
                        Some(false) => {}
                        None => {
                            return Reply::err(
                                "MATCH pattern too costly for this page: use a smaller COUNT or \
                                 fewer '*'",
                            )
                        }
                    }
                }
                Reply::Array(vec![Reply::text(cursor.to_string()), Reply::Array(listed)])
            }
            Ok(other) => Reply::err(format!("unexpected response {other:?}")),
            Err(error) => error_reply(&error),
        }
    }

    pub(super) async fn read(
        &self,
        key: Bytes,
        consistency: Consistency,
    ) -> Result<ReadResult, Reply> {
        match self.node.request(ClientRequest::Get { key, consistency }).await {
            Ok(ClientResponse::Read(result)) => Ok(result),
            Ok(other) => Err(Reply::err(format!("unexpected response {other:?}"))),
            Err(error) => Err(error_reply(&error)),
        }
    }

    pub(super) async fn write(&self, request: ClientRequest) -> Result<(), Reply> {
        self.node.request(request).await.map(|_| ()).map_err(|error| error_reply(&error))
    }

    pub(super) async fn get(&self, key: Bytes) -> Reply {
        match self.read(key, self.read_consistency).await {
            Ok(result) => result.values.last().cloned().map_or(Reply::Null, Reply::Bulk),
            Err(reply) => reply,
        }
    }

    /// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]`. A plain SET (with at
    /// most an expiry) overwrites in one round trip; a condition, GET or KEEPTTL needs the
    /// current value, so that SET runs as a serial operation and is atomic.
    pub(super) async fn set(&self, args: &[Bytes]) -> Reply {
        match set_plan(args, wall_clock()) {
            Ok(SetPlan::Plain { ttl }) => {
                let request = ClientRequest::Set {
                    key: args[1].clone(),
                    value: args[2].clone(),
                    ttl,
                    consistency: self.write_consistency,
                };
                self.write(request).await.map_or_else(|reply| reply, |()| Reply::ok())
            }
            Ok(SetPlan::Serial(serial)) => self.serial(serial).await,
            Err(reply) => reply,
        }
    }

    /// Runs a serial command as one Paxos round and shapes its outcome as Redis would.
    pub(super) async fn serial(&self, serial: SerialCommand) -> Reply {
        let SerialCommand { key, op, shape } = serial;
        match self.node.request(ClientRequest::Cas { key, op }).await {
            Ok(ClientResponse::Cas(outcome)) => shape.reply(outcome),
            Ok(other) => Reply::err(format!("unexpected response {other:?}")),
            Err(error) => serial_error_reply(&error, shape),
        }
    }

    /// `SETEX key seconds value` and `PSETEX key milliseconds value`.
    pub(super) async fn set_expiring(&self, args: &[Bytes], command: &str) -> Reply {
        let Some(ttl) =
            parse_i64(&args[2]).and_then(|amount| positive_ttl(amount, command == "SETEX"))
        else {
            let name = command.to_ascii_lowercase();
            return Reply::err(format!("invalid expire time in '{name}' command"));
        };
        let request = ClientRequest::Set {
            key: args[1].clone(),
            value: args[3].clone(),
            ttl: Some(ttl),
            consistency: self.write_consistency,
        };
        self.write(request).await.map_or_else(|reply| reply, |()| Reply::ok())
    }

    /// `STRLEN key` (0 when absent) and `TYPE key` (`string` or `none`).
    pub(super) async fn describe(&self, key: Bytes, command: &str) -> Reply {
        let current = match self.read(key, self.read_consistency).await {
            Ok(current) => current,
            Err(reply) => return reply,
        };
        let value = current.values.last();
        match command {
            "STRLEN" => Reply::Integer(value.map_or(0, |value| value.len() as i64)),
            _ => Reply::Simple(if value.is_some() { "string" } else { "none" }.into()),
        }
    }

    pub(super) async fn delete(&self, keys: &[Bytes]) -> Reply {
        let mut deleted = 0;
        for key in keys {
            let current = match self.read(key.clone(), self.read_consistency).await {
                Ok(current) => current,
                Err(reply) => return reply,
            };
            if current.values.is_empty() {
                continue;
            }
            let request = ClientRequest::Delete {
                key: key.clone(),
                context: Some(current.context),
                consistency: self.write_consistency,
            };
            if let Err(reply) = self.write(request).await {
                return reply;
            }
            deleted += 1;
        }
        Reply::Integer(deleted)
    }

    pub(super) async fn exists(&self, keys: &[Bytes]) -> Reply {
        let mut found = 0;
        for key in keys {
            match self.read(key.clone(), self.read_consistency).await {
                Ok(current) if !current.values.is_empty() => found += 1,
                Ok(_) => {}
                Err(reply) => return reply,
            }
        }
        Reply::Integer(found)
    }

    pub(super) async fn mget(&self, keys: &[Bytes]) -> Reply {
        match self
            .node
            .request(ClientRequest::MGet {
                keys: keys.to_vec(),
                consistency: self.read_consistency,
            })
            .await
        {
            Ok(ClientResponse::ReadMany(results)) => Reply::Array(
                results
                    .into_iter()
                    .map(|result| result.values.last().cloned().map_or(Reply::Null, Reply::Bulk))
                    .collect(),
            ),
            Ok(other) => Reply::err(format!("unexpected response {other:?}")),
            Err(error) => error_reply(&error),
        }
    }

    pub(super) async fn mset(&self, pairs: &[Bytes]) -> Reply {
        let entries = pairs.chunks(2).map(|pair| (pair[0].clone(), pair[1].clone())).collect();
        self.write(ClientRequest::MSet { entries, consistency: self.write_consistency })
            .await
            .map_or_else(|reply| reply, |()| Reply::ok())
    }

    pub(super) async fn expire(&self, args: &[Bytes], millis: bool) -> Reply {
        let Some(amount) = parse_i64(&args[2]) else {
            return Reply::err("value is not an integer or out of range");
        };
        let ttl = positive_ttl(amount, !millis);
        if amount > 0 && ttl.is_none() {
            let name = if millis { "pexpire" } else { "expire" };
            return Reply::err(format!("invalid expire time in '{name}' command"));
        }
        // A time to live that is not positive deletes the key, as in Redis.
        let change = ttl.map_or(ExpiryChange::Delete, ExpiryChange::Expire);
        match self.change_expiry(&args[1], Some(change)).await {
            Ok(found) => Reply::Integer(i64::from(found.is_some())),
            Err(reply) => reply,
        }
    }

    pub(super) async fn ttl(&self, key: Bytes, millis: bool) -> Reply {
        let current = match self.read(key, self.read_consistency).await {
            Ok(current) => current,
            Err(reply) => return reply,
        };
        if current.values.is_empty() {
            return Reply::Integer(-2);
        }
        let Some(expire_at) = current.expire_at else { return Reply::Integer(-1) };
        let left_ms = expire_at.as_millis().saturating_sub(wall_clock().as_millis()) as i64;
        Reply::Integer(if millis { left_ms } else { (left_ms + 500) / 1_000 })
    }

    pub(super) async fn persist(&self, key: Bytes) -> Reply {
        let current = match self.read(key.clone(), self.read_consistency).await {
            Ok(current) => current,
            Err(reply) => return reply,
        };
        let (Some(value), Some(_)) = (current.values.last().cloned(), current.expire_at) else {
            return Reply::Integer(0);
        };
        let request = ClientRequest::Put {
            key,
            value,
            context: Some(current.context),
            ttl: None,
            consistency: self.write_consistency,
        };
        self.write(request).await.map_or_else(|reply| reply, |()| Reply::Integer(1))
    }

    pub(super) async fn get_all(&self, args: &[Bytes]) -> Reply {
        let consistency = match args.get(2).map(|level| parse_consistency(level)).transpose() {
            Ok(level) => level.unwrap_or(self.read_consistency),
            Err(reply) => return reply,
        };
        match self.read(args[1].clone(), consistency).await {
            Ok(result) => Reply::Array(vec![
                Reply::Bulk(Bytes::from(hex_encode(&result.context.to_bytes()))),
                Reply::Array(result.values.into_iter().map(Reply::Bulk).collect()),
            ]),
            Err(reply) => reply,
        }
    }

    /// `RK.PUT key value context [consistency] [PX ms]`.
    pub(super) async fn put_with_context(&self, args: &[Bytes]) -> Reply {
        let context = match parse_context(&args[3]) {
            Ok(context) => context,
            Err(reply) => return reply,
        };
        let mut consistency = self.write_consistency;
        let mut ttl = None;
        let mut rest = &args[4..];
        while let Some(first) = rest.first() {
            if first.eq_ignore_ascii_case(b"PX") && rest.len() >= 2 {
                let Some(parsed) = parse_i64(&rest[1]).and_then(|ms| positive_ttl(ms, false))
                else {
                    return Reply::err("invalid expire time in 'rk.put' command");
                };
                ttl = Some(parsed);
                rest = &rest[2..];
            } else {
                consistency = match parse_consistency(first) {
                    Ok(level) => level,
                    Err(reply) => return reply,
                };
                rest = &rest[1..];
            }
        }
        let request = ClientRequest::Put {
            key: args[1].clone(),
            value: args[2].clone(),
            context,
            ttl,
            consistency,
        };
        match self.node.request(request).await {
            Ok(ClientResponse::Written { context }) => {
                Reply::Bulk(Bytes::from(hex_encode(&context.to_bytes())))
            }
            Ok(other) => Reply::err(format!("unexpected response {other:?}")),
            Err(error) => error_reply(&error),
        }
    }

    /// `RK.DEL key context [consistency]`.
    pub(super) async fn delete_with_context(&self, args: &[Bytes]) -> Reply {
        let context = match parse_context(&args[2]) {
            Ok(context) => context,
            Err(reply) => return reply,
        };
        let consistency = match args.get(3).map(|level| parse_consistency(level)).transpose() {
            Ok(level) => level.unwrap_or(self.write_consistency),
            Err(reply) => return reply,
        };
        self.write(ClientRequest::Delete { key: args[1].clone(), context, consistency })
            .await
            .map_or_else(|reply| reply, |()| Reply::ok())
    }
}
