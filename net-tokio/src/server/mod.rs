//! The client server: RESP2/RESP3 connections, commands mapped to node requests.
//!
//! Each connection is a task that parses commands (pipelining: every complete command in the
//! buffer is executed in order, at most `pipeline_depth_max` before replies are flushed), runs
//! them against the node and writes replies. A malformed command gets a protocol error and the
//! connection is closed; an unknown or misused command gets an `ERR` reply and the connection
//! goes on. Oversized keys and values are refused by the node with a clear error.
//!
//! Redis semantics on a Dynamo store, as documented in README.md:
//! - `GET` returns the newest sibling (by HLC timestamp); `RK.GETALL` returns every sibling and
//!   the causal context.
//! - `SET` overwrites what the coordinator has seen (`ClientRequest::Set`). `DEL`, `EXPIRE`,
//!   `PEXPIRE` and `PERSIST` read first and then write with the read's context: they are not
//!   atomic.
//! - Serial commands run as one round of Paxos among the key's replicas (`ClientRequest::Cas`),
//!   so they are atomic and linearizable with each other: `SET` with `NX`, `XX`, `GET` or
//!   `KEEPTTL`, `SETNX`, `GETSET`, `GETDEL`, `INCR`, `DECR`, `INCRBY`, `DECRBY`, `INCRBYFLOAT`,
//!   `APPEND`, `SETRANGE`, and the extensions `RK.CAS key expected new` and `RK.SERIALGET key`.
//!   A plain write racing a serial one is not ordered against it (it may become a sibling).
//!   Their errors: `NOQUORUM` (no Paxos quorum: nothing was applied, retrying is safe),
//!   `UNAVAILABLE` (too few replicas up: nothing was attempted) and `TIMEOUT` (the outcome is
//!   unknown: the operation may or may not have been applied).
//!
//! Users and TLS (README.md, "Users" and "TLS"): a connection starts as the `default` user,
//! logged in only if that user needs no password; `AUTH [name] password` logs in as a user of
//! [`Users`]. A read-only user's commands outside [`read_only_may_run`] get Redis's `NOPERM`.
//! Each wrong password delays its `WRONGPASS` reply by [`AUTH_FAILURE_DELAY_FIRST`], doubled
//! per failure, and the [`AUTH_FAILURES_MAX`]-th closes the connection. The TLS client port
//! ([`serve_with_tls`]) gives each new connection [`TlsState::handshake_timeout`] to finish its
//! handshake, then serves it as the plain port does.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant as WallInstant;

use bytes::{Bytes, BytesMut};
use futures::stream::{FuturesOrdered, StreamExt};
use ringkv_core::Consistency;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::config::Access;
use crate::driver::NodeHandle;
use crate::keyspaces::NodeHandles;
use crate::metrics::Metrics;
use crate::resp::{parse_command, Reply, RespLimits};
use crate::tls::TlsState;
use crate::users::{LoggedIn, Users, DEFAULT_USER};

mod args;
mod compat;
mod glob;
mod keys;
mod ops;
mod serial;

use args::{parse_consistency, parse_i64, unsupported_reason, wrong_arity};
use serial::is_serial_command;

/// Settings of the client server.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Who may log in, and what each may run; [`Users::open`] admits everyone.
    pub users: Arc<Users>,
    /// The node's TLS material, which `RK.RELOADTLS` reloads; `None` without TLS.
    pub tls: Option<Arc<TlsState>>,
    /// Most client connections at once.
    pub connections_max: usize,
    /// Most pipelined commands executed before replies are flushed.
    pub pipeline_depth_max: usize,
    /// Default consistency for reads.
    pub read_consistency: Consistency,
    /// Default consistency for writes.
    pub write_consistency: Consistency,
    /// Parser limits.
    pub resp: RespLimits,
    /// Whether `FLUSHALL` and `FLUSHDB` may truncate the cluster.
    pub allow_flush: bool,
    /// Replicas per key, for `WAIT`.
    pub replicas_n: usize,
    /// The node's data directory, whose `snapshots/` `RK.SNAPSHOTINFO` and `RK.SNAPSHOTREAD`
    /// serve; `None` for a node without one.
    pub data_dir: Option<std::path::PathBuf>,
    /// Every keyspace of the node, for `SELECT db` and the commands that apply to all of them
    /// (`FLUSHALL`, `RK.DECOMMISSION`, `RK.REMOVE`); `None` serves only the node given to
    /// [`serve`], as db 0 with the levels and N above.
    pub keyspaces: Option<Arc<NodeHandles>>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            users: Arc::new(Users::open()),
            tls: None,
            connections_max: 10_000,
            pipeline_depth_max: 1_024,
            read_consistency: Consistency::Quorum,
            write_consistency: Consistency::Quorum,
            resp: RespLimits::default(),
            allow_flush: false,
            replicas_n: 3,
            data_dir: None,
            keyspaces: None,
        }
    }
}

/// Wrong passwords a connection may give before it is closed.
pub const AUTH_FAILURES_MAX: u32 = 5;

/// The delay before the first `WRONGPASS` reply of a connection; it doubles with each further
/// failure (100, 200, 400, 800 ms, then the fifth closes the connection after 1.6 s).
pub const AUTH_FAILURE_DELAY_FIRST: std::time::Duration = std::time::Duration::from_millis(100);

/// Accepts client connections until the task is aborted, which also closes every connection.
pub async fn serve(
    listener: TcpListener,
    node: NodeHandle,
    settings: Arc<ServerSettings>,
    metrics: Arc<Metrics>,
) {
    let slots = Arc::new(Semaphore::new(settings.connections_max));
    accept_clients(listener, node, settings, metrics, slots, None).await;
}

/// Accepts plain connections on `plain` and TLS connections on `tls_listener` until the task is
/// aborted; `connections_max` bounds both ports together. Each TLS connection's handshake must
/// finish within the TLS handshake timeout: a client that speaks plain RESP, or nothing, to the
/// TLS port is closed then, never left hanging. The acceptor is taken from `tls` for each
/// connection, so a reload applies to the next connection.
pub async fn serve_with_tls(
    plain: TcpListener,
    tls_listener: TcpListener,
    node: NodeHandle,
    settings: Arc<ServerSettings>,
    metrics: Arc<Metrics>,
    tls: Arc<TlsState>,
) {
    let slots = Arc::new(Semaphore::new(settings.connections_max));
    tokio::join!(
        accept_clients(plain, node.clone(), settings.clone(), metrics.clone(), slots.clone(), None),
        accept_clients(tls_listener, node, settings, metrics, slots, Some(tls)),
    );
}

async fn accept_clients(
    listener: TcpListener,
    node: NodeHandle,
    settings: Arc<ServerSettings>,
    metrics: Arc<Metrics>,
    slots: Arc<Semaphore>,
    tls: Option<Arc<TlsState>>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let Ok((mut stream, _)) = accepted else { continue };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics.connections_refused.inc();
            if tls.is_some() {
                // A plain-text error means nothing to a TLS client: just close.
                continue;
            }
            let mut out = Vec::new();
            Reply::err("max number of clients reached").encode(2, &mut out);
            let _ = stream.write_all(&out).await;
            continue;
        };
        metrics.connections_accepted.inc();
        metrics.client_connections_open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut connection = Connection::new(node.clone(), settings.clone(), metrics.clone());
        connection.note_addresses(&stream);
        let open = metrics.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            match tls {
                None => connection.run(stream).await,
                Some(tls) => match handshake(&tls, stream).await {
                    Ok(stream) => connection.run(stream).await,
                    Err(reason) => {
                        open.tls_handshakes_failed.inc();
                        tracing::debug!(client = %connection.addresses.0, %reason, "client TLS handshake failed");
                    }
                },
            }
            open.client_connections_open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            drop(permit);
        });
    }
}

/// A TLS client's handshake, within the handshake timeout; the error says why it failed.
async fn handshake(
    tls: &TlsState,
    stream: TcpStream,
) -> Result<tokio_rustls::server::TlsStream<TcpStream>, String> {
    let Some(acceptor) = tls.client_acceptor() else {
        return Err("the node's TLS material has no client acceptor".into());
    };
    match tokio::time::timeout(tls.handshake_timeout(), acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no handshake within {} ms", tls.handshake_timeout().as_millis())),
    }
}

struct Connection {
    /// Unique in this process, as `CLIENT ID` and `HELLO` report it.
    id: u64,
    ops: Ops,
    settings: Arc<ServerSettings>,
    metrics: Arc<Metrics>,
    protocol: u8,
    authenticated: bool,
    /// The user the connection is logged in as (`default` until an AUTH succeeds).
    user: String,
    /// Whether that user may run only reads ([`read_only_may_run`]).
    read_only: bool,
    /// Wrong passwords given so far on this connection.
    auth_failures: u32,
    name: Option<Bytes>,
    /// `CLIENT SETINFO LIB-NAME` and `LIB-VER`, shown by `CLIENT INFO`.
    lib_name: Option<Bytes>,
    lib_version: Option<Bytes>,
    /// The client's address and ours, for `CLIENT INFO`.
    addresses: (String, String),
    connected_at: WallInstant,
    /// The key of the connection's latest write, which `WAIT` waits for.
    last_written: Option<Bytes>,
    /// The selected database (`SELECT db`): its keyspace's node is `ops.node`.
    db: u32,
    /// Replicas per key in the selected keyspace, for `WAIT`.
    replicas_n: usize,
    /// The node of db 0, to return to with `SELECT 0` when the server has no keyspace list.
    default_node: NodeHandle,
}

/// The next connection's id.
static NEXT_CONNECTION_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// What a data command needs: cheap to clone, so pipelined commands run concurrently.
#[derive(Clone)]
struct Ops {
    node: NodeHandle,
    read_consistency: Consistency,
    write_consistency: Consistency,
}

/// A data command in flight.
type ReplyFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Reply> + Send>>;

/// What a command asks of the connection besides its reply.
enum Flow {
    Continue,
    Close,
}

impl Connection {
    fn new(node: NodeHandle, settings: Arc<ServerSettings>, metrics: Arc<Metrics>) -> Self {
        let initial = settings.users.initial();
        Connection {
            authenticated: initial.is_some(),
            user: DEFAULT_USER.into(),
            read_only: initial.is_some_and(|user| user.access == Access::ReadOnly),
            auth_failures: 0,
            ops: Ops {
                node: node.clone(),
                read_consistency: settings.read_consistency,
                write_consistency: settings.write_consistency,
            },
            db: 0,
            replicas_n: settings.replicas_n,
            default_node: node,
            settings,
            metrics,
            protocol: 2,
            name: None,
            lib_name: None,
            lib_version: None,
            addresses: (String::new(), String::new()),
            connected_at: WallInstant::now(),
            last_written: None,
            id: NEXT_CONNECTION_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Records the socket's addresses (for `CLIENT INFO`) and turns Nagle off, before any TLS.
    fn note_addresses(&mut self, stream: &TcpStream) {
        let _ = stream.set_nodelay(true);
        let address = |found: std::io::Result<std::net::SocketAddr>| {
            found.map(|address| address.to_string()).unwrap_or_default()
        };
        self.addresses = (address(stream.peer_addr()), address(stream.local_addr()));
    }

    async fn run<S: AsyncRead + AsyncWrite + Unpin>(mut self, mut stream: S) {
        let mut buffer = BytesMut::with_capacity(16 * 1024);
        let mut out = Vec::with_capacity(16 * 1024);
        let mut in_flight: FuturesOrdered<ReplyFuture> = FuturesOrdered::new();
        let mut in_flight_keys: BTreeSet<Bytes> = BTreeSet::new();
        loop {
            match stream.read_buf(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let mut executed = 0;
            loop {
                let args = match parse_command(&mut buffer, &self.settings.resp) {
                    Ok(Some(args)) => args,
                    Ok(None) => break,
                    Err(error) => {
                        self.metrics.protocol_errors.inc();
                        drain(&mut in_flight, &mut in_flight_keys, self.protocol, &mut out).await;
                        Reply::Error(format!("ERR {error}")).encode(self.protocol, &mut out);
                        if stream.write_all(&out).await.is_ok() {
                            close_after_error(stream).await;
                        }
                        return;
                    }
                };
                if args.is_empty() {
                    continue;
                }
                executed += 1;
                // A data command on keys no earlier in-flight command touches runs concurrently;
                // anything else waits for those before it, so each key sees commands in order.
                // The command's name, upper-cased once per request (it was three allocations).
                let command = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
                let keys = data_command_keys(&command, &args);
                match keys {
                    Some(keys)
                        if self.authenticated
                            && (!self.read_only || read_only_may_run(&command, &args))
                            && keys.iter().all(|key| !in_flight_keys.contains(key)) =>
                    {
                        if is_write_command(&command) {
                            self.last_written = keys.last().cloned();
                        }
                        in_flight_keys.extend(keys);
                        in_flight.push_back(self.ops.clone().dispatch_timed(
                            command,
                            args,
                            self.metrics.clone(),
                        ));
                    }
                    _ => {
                        drain(&mut in_flight, &mut in_flight_keys, self.protocol, &mut out).await;
                        let (reply, flow) = self.execute(args).await;
                        reply.encode(self.protocol, &mut out);
                        if matches!(flow, Flow::Close) {
                            let _ = stream.write_all(&out).await;
                            return;
                        }
                    }
                }
                if executed >= self.settings.pipeline_depth_max {
                    break;
                }
            }
            drain(&mut in_flight, &mut in_flight_keys, self.protocol, &mut out).await;
            if !out.is_empty() {
                if stream.write_all(&out).await.is_err() {
                    return;
                }
                out.clear();
            }
        }
    }

    async fn execute(&mut self, args: Vec<Bytes>) -> (Reply, Flow) {
        let command = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
        if !self.authenticated && !matches!(command.as_str(), "AUTH" | "HELLO" | "QUIT" | "PING") {
            return (Reply::Error("NOAUTH Authentication required.".into()), Flow::Continue);
        }
        if self.read_only && !read_only_may_run(&command, &args) {
            let full_name = command_full_name(&command, &args);
            let refusal = format!(
                "NOPERM User {} has no permissions to run the '{full_name}' command",
                self.user
            );
            return (Reply::Error(refusal), Flow::Continue);
        }
        let started = WallInstant::now();
        let reply = match command.as_str() {
            "QUIT" => return (Reply::ok(), Flow::Close),
            "PING" => match args.len() {
                1 => Reply::Simple("PONG".into()),
                2 => Reply::Bulk(args[1].clone()),
                _ => wrong_arity("ping"),
            },
            "ECHO" if args.len() == 2 => Reply::Bulk(args[1].clone()),
            "HELLO" => match self.hello(&args).await {
                (reply, Flow::Close) => return (reply, Flow::Close),
                (reply, Flow::Continue) => reply,
            },
            "AUTH" => match args.len() {
                2 | 3 => match self.auth(&args[1..]).await {
                    (reply, Flow::Close) => return (reply, Flow::Close),
                    (reply, Flow::Continue) => reply,
                },
                _ => wrong_arity("auth"),
            },
            "ACL" => self.acl(&args),
            "RK.RELOADTLS" if args.len() == 1 => self.reload_tls(),
            "SELECT" if args.len() == 2 => self.select(&args[1]),
            "CLIENT" => self.client(&args),
            "COMMAND" => compat::command(&args, crate::metrics::COMMAND_LABELS.len()),
            "CONFIG" => compat::config(&args),
            "OBJECT" => self.ops.object(&args).await,
            "INFO" => {
                let open =
                    self.metrics.client_connections_open.load(std::sync::atomic::Ordering::Relaxed);
                self.ops.info(open).await
            }
            _ if data_command_keys(&command, &args).is_some() || is_data_command(&command) => {
                return (self.ops.clone().dispatch(&command, &args).await, Flow::Continue);
            }
            "RK.CONSISTENCY" => self.set_consistency(&args),
            "RENAME" | "RENAMENX" if args.len() == 3 => {
                let reply = self.ops.rename(&args, command == "RENAMENX").await;
                self.wrote(&args[2]);
                reply
            }
            "COPY" if args.len() >= 3 => {
                let reply = self.ops.copy(&args).await;
                self.wrote(&args[2]);
                reply
            }
            "MSETNX" if args.len() >= 3 && !args.len().is_multiple_of(2) => {
                let reply = self.ops.msetnx(&args[1..]).await;
                self.wrote(&args[args.len() - 2]);
                reply
            }
            "DBSIZE" if args.len() == 1 => self.ops.dbsize().await,
            "RANDOMKEY" if args.len() == 1 => self.ops.random_key().await,
            "FLUSHALL" => self.flush_all(&args).await,
            "FLUSHDB" => self.ops.flush(&args, self.settings.allow_flush, &command).await,
            "WAIT" if args.len() == 3 => self.wait(&args).await,
            "SCAN" if args.len() >= 2 => self.ops.scan(&args).await,
            "RK.STATUS" => self.ops.status(self.keyspace_lines()).await,
            "RK.SNAPSHOT" if args.len() == 2 && self.keyspaces_count() > 1 => Reply::err(format!(
                "this node runs {} keyspaces and a snapshot covers one store: snapshots and \
                 backups are refused on nodes with several keyspaces (README.md, Keyspaces)",
                self.keyspaces_count()
            )),
            "RK.SNAPSHOT" if args.len() == 2 => {
                let name = String::from_utf8_lossy(&args[1]).into_owned();
                match self.ops.node.snapshot(name).await {
                    Some(Ok(manifest)) => Reply::Simple(format!(
                        "snapshot {} of node {}: {} files, {} bytes, up to write {}",
                        manifest.name,
                        manifest.node_id,
                        manifest.files.len(),
                        manifest.files.iter().map(|file| file.size_bytes).sum::<u64>(),
                        manifest.last_seq
                    )),
                    Some(Err(error)) => Reply::err(error),
                    None => Reply::err("node stopped"),
                }
            }
            "RK.SNAPSHOTINFO" | "RK.SNAPSHOTREAD" => self.snapshot_file(&command, &args).await,
            "RK.RING" => self.ops.ring().await,
            "RK.DECOMMISSION" if args.len() == 1 => {
                self.membership_everywhere(ringkv_core::Input::Decommission).await
            }
            "RK.REMOVE" if args.len() == 2 => {
                match std::str::from_utf8(&args[1]).ok().and_then(|id| id.parse::<u32>().ok()) {
                    Some(id) => {
                        let input =
                            ringkv_core::Input::RemoveNode { node: ringkv_core::NodeId(id) };
                        self.membership_everywhere(input).await
                    }
                    None => Reply::err("RK.REMOVE takes a node id"),
                }
            }
            "ECHO" | "SELECT" | "SCAN" | "RENAME" | "RENAMENX" | "COPY" | "MSETNX" | "DBSIZE"
            | "RANDOMKEY" | "WAIT" | "RK.SNAPSHOT" => wrong_arity(&command.to_ascii_lowercase()),
            _ => match unsupported_reason(&command) {
                Some(reason) => Reply::err(format!(
                    "'{}' is not supported by ringkv: {reason}",
                    command.to_ascii_lowercase()
                )),
                None => compat::unknown_command(&args),
            },
        };
        self.metrics.observe_request(
            &command,
            "-",
            !matches!(reply, Reply::Error(_)),
            started.elapsed().as_micros() as u64,
        );
        (reply, Flow::Continue)
    }

    async fn hello(&mut self, args: &[Bytes]) -> (Reply, Flow) {
        let mut index = 1;
        if let Some(version) = args.get(1) {
            match std::str::from_utf8(version).ok().and_then(|text| text.parse::<u8>().ok()) {
                Some(version @ 2..=3) => self.protocol = version,
                _ => {
                    let refusal = Reply::Error("NOPROTO unsupported protocol version".into());
                    return (refusal, Flow::Continue);
                }
            }
            index = 2;
        }
        while index < args.len() {
            let option = String::from_utf8_lossy(&args[index]).to_ascii_uppercase();
            match option.as_str() {
                "AUTH" if index + 2 < args.len() => {
                    let credentials = [args[index + 1].clone(), args[index + 2].clone()];
                    if let (Reply::Error(error), flow) = self.auth(&credentials).await {
                        return (Reply::Error(error), flow);
                    }
                    index += 3;
                }
                "SETNAME" if index + 1 < args.len() => {
                    self.name = Some(args[index + 1].clone());
                    index += 2;
                }
                _ => {
                    let refusal = Reply::err(format!("syntax error in HELLO option '{option}'"));
                    return (refusal, Flow::Continue);
                }
            }
        }
        if !self.authenticated {
            let refusal =
                Reply::Error("NOAUTH HELLO must be called with the client's password".into());
            return (refusal, Flow::Continue);
        }
        let reply = Reply::Map(vec![
            (Reply::text("server"), Reply::text("ringkv")),
            (Reply::text("version"), Reply::text(env!("CARGO_PKG_VERSION"))),
            (Reply::text("proto"), Reply::Integer(i64::from(self.protocol))),
            (Reply::text("id"), Reply::Integer(self.id as i64)),
            // Not Redis Cluster: any node serves any key, with no slots and no redirects, which
            // is what a client expects of a standalone server.
            (Reply::text("mode"), Reply::text("standalone")),
            (Reply::text("role"), Reply::text("master")),
            (Reply::text("modules"), Reply::Array(Vec::new())),
        ]);
        (reply, Flow::Continue)
    }

    /// `RK.SNAPSHOTINFO name` (the snapshot's description, RON) and `RK.SNAPSHOTREAD name file
    /// offset` (up to 1 MiB of one of its files), read off the disk on the blocking pool, for
    /// `ringkv admin backup`.
    async fn snapshot_file(&self, command: &str, args: &[Bytes]) -> Reply {
        let Some(data_dir) = self.settings.data_dir.clone() else {
            return Reply::err("this node has no data directory");
        };
        let words: Vec<String> =
            args[1..].iter().map(|arg| String::from_utf8_lossy(arg).into_owned()).collect();
        let read = match (command, words.as_slice()) {
            ("RK.SNAPSHOTINFO", [name]) => {
                let name = name.clone();
                tokio::task::spawn_blocking(move || {
                    crate::backup::snapshot_info(&data_dir, &name).map(Bytes::from)
                })
                .await
            }
            ("RK.SNAPSHOTREAD", [name, file, offset]) => {
                let Ok(offset) = offset.parse::<u64>() else {
                    return Reply::err("RK.SNAPSHOTREAD takes an offset in bytes");
                };
                let (name, file) = (name.clone(), file.clone());
                tokio::task::spawn_blocking(move || {
                    crate::backup::read_chunk(&data_dir, &name, &file, offset).map(Bytes::from)
                })
                .await
            }
            _ => return wrong_arity(&command.to_ascii_lowercase()),
        };
        match read {
            Ok(Ok(bytes)) => Reply::Bulk(bytes),
            Ok(Err(error)) => Reply::err(error),
            Err(error) => Reply::err(format!("snapshot read failed: {error}")),
        }
    }

    /// `AUTH password` (the `default` user) or `AUTH name password`, given as `credentials`
    /// (one or two words). A wrong password is answered late and, at the last allowed failure,
    /// closes the connection (see the module's documentation).
    async fn auth(&mut self, credentials: &[Bytes]) -> (Reply, Flow) {
        let (name, password) = match credentials {
            [password] => {
                if !self.settings.users.default_has_password() {
                    let refusal = Reply::err(
                        "AUTH <password> called without any password configured for the default \
                         user. Are you sure your configuration is correct?",
                    );
                    return (refusal, Flow::Continue);
                }
                (DEFAULT_USER.to_string(), password)
            }
            [name, password] => (String::from_utf8_lossy(name).into_owned(), password),
            _ => return (wrong_arity("auth"), Flow::Continue),
        };
        match self.settings.users.verify(&name, password).await {
            Some(LoggedIn { name, access }) => {
                self.authenticated = true;
                self.read_only = access == Access::ReadOnly;
                self.user = name;
                self.auth_failures = 0;
                (Reply::ok(), Flow::Continue)
            }
            None => {
                self.metrics.auth_failures.inc();
                self.auth_failures = (self.auth_failures + 1).min(AUTH_FAILURES_MAX);
                // 100 ms, doubled per failure: slow for a guesser, unnoticed by a person.
                let delay = AUTH_FAILURE_DELAY_FIRST * (1 << (self.auth_failures - 1));
                tokio::time::sleep(delay).await;
                let refusal = Reply::Error(
                    "WRONGPASS invalid username-password pair or user is disabled.".into(),
                );
                if self.auth_failures >= AUTH_FAILURES_MAX {
                    tracing::info!(
                        client = %self.addresses.0,
                        user = %name,
                        failures = self.auth_failures,
                        "closing a client connection after too many wrong passwords"
                    );
                    return (refusal, Flow::Close);
                }
                (refusal, Flow::Continue)
            }
        }
    }

    /// `ACL WHOAMI`, `ACL LIST` and `ACL USERS`; users are declared in the configuration, so
    /// the commands that change them are refused.
    fn acl(&self, args: &[Bytes]) -> Reply {
        let sub = args
            .get(1)
            .map(|sub| String::from_utf8_lossy(sub).to_ascii_uppercase())
            .unwrap_or_default();
        match (sub.as_str(), args.len()) {
            ("WHOAMI", 2) => Reply::Bulk(Bytes::from(self.user.clone())),
            ("LIST", 2) => {
                Reply::Array(self.settings.users.acl_list().into_iter().map(Reply::text).collect())
            }
            ("USERS", 2) => {
                Reply::Array(self.settings.users.names().into_iter().map(Reply::text).collect())
            }
            ("WHOAMI" | "LIST" | "USERS", _) => {
                wrong_arity(&format!("acl|{}", sub.to_ascii_lowercase()))
            }
            _ => Reply::err(format!(
                "unsupported ACL subcommand '{sub}': ringkv's users are declared in the node's \
                 configuration (README.md, Users)"
            )),
        }
    }

    /// `RK.RELOADTLS`: reads the TLS files again; replies with the new certificate's SHA-256
    /// fingerprint, or an error naming the file refused (the old material stays in use).
    fn reload_tls(&self) -> Reply {
        let Some(tls) = &self.settings.tls else {
            return Reply::err("TLS is not configured on this node");
        };
        match tls.reload() {
            Ok(fingerprint) => {
                tracing::info!(%fingerprint, "TLS files reloaded (RK.RELOADTLS)");
                Reply::Bulk(Bytes::from(fingerprint))
            }
            Err(error) => {
                tracing::warn!(%error, "TLS reload refused; the previous certificate stays in use");
                Reply::err(format!("TLS reload refused, the previous certificate stays: {error}"))
            }
        }
    }

    fn client(&mut self, args: &[Bytes]) -> Reply {
        let sub = args
            .get(1)
            .map(|sub| String::from_utf8_lossy(sub).to_ascii_uppercase())
            .unwrap_or_default();
        match (sub.as_str(), args.len()) {
            ("SETNAME", 3) => {
                self.name = Some(args[2].clone());
                Reply::ok()
            }
            ("GETNAME", 2) => self.name.clone().map_or(Reply::Null, Reply::Bulk),
            ("ID", 2) => Reply::Integer(self.id as i64),
            ("SETINFO", 4) => {
                match String::from_utf8_lossy(&args[2]).to_ascii_uppercase().as_str() {
                    "LIB-NAME" => self.lib_name = Some(args[3].clone()),
                    "LIB-VER" => self.lib_version = Some(args[3].clone()),
                    other => return Reply::err(format!("Unrecognized option '{other}'")),
                }
                Reply::ok()
            }
            ("INFO", 2) => Reply::Bulk(Bytes::from(self.client_info())),
            _ => Reply::err(format!("unsupported CLIENT subcommand '{sub}'")),
        }
    }

    /// One line in the format of Redis's `CLIENT INFO` (fields ringkv has no notion of, such
    /// as buffer sizes, are left out).
    fn client_info(&self) -> String {
        let text = |value: &Option<Bytes>| {
            value.as_deref().map(String::from_utf8_lossy).unwrap_or_default().into_owned()
        };
        format!(
            "id={} addr={} laddr={} name={} age={} db={} flags=N cmd=client|info user={} \
             resp={} lib-name={} lib-ver={}\n",
            self.id,
            self.addresses.0,
            self.addresses.1,
            text(&self.name),
            self.connected_at.elapsed().as_secs(),
            self.db,
            self.user,
            self.protocol,
            text(&self.lib_name),
            text(&self.lib_version),
        )
    }

    /// Notes that the connection wrote `key` (the key `WAIT` then waits for).
    fn wrote(&mut self, key: &Bytes) {
        self.last_written = Some(key.clone());
    }

    /// `WAIT numreplicas timeout`: how many replicas hold the connection's latest write. Its
    /// consistency level already guaranteed some (at most a quorum is claimed, since serial
    /// writes need no more); asking for more reads the key at ALL, whose blocking read repair
    /// leaves every replica holding it, within `timeout` ms (0: the request deadline).
    async fn wait(&mut self, args: &[Bytes]) -> Reply {
        let (Some(wanted), Some(timeout_ms)) = (parse_i64(&args[1]), parse_i64(&args[2])) else {
            return Reply::err("value is not an integer or out of range");
        };
        if timeout_ms < 0 {
            return Reply::err("timeout is negative");
        }
        let replicas_n = self.replicas_n;
        let Some(key) = self.last_written.clone() else {
            // Nothing written: every replica holds all of it.
            return Reply::Integer(replicas_n as i64);
        };
        let quorum = replicas_n / 2 + 1;
        let guaranteed = self.ops.write_consistency.required(replicas_n).unwrap_or(1).min(quorum);
        if wanted <= guaranteed as i64 {
            return Reply::Integer(guaranteed as i64);
        }
        let read = self.ops.read(key, Consistency::All);
        let held = if timeout_ms == 0 {
            read.await.is_ok()
        } else {
            let limit = std::time::Duration::from_millis(timeout_ms as u64);
            matches!(tokio::time::timeout(limit, read).await, Ok(Ok(_)))
        };
        Reply::Integer(if held { replicas_n } else { guaranteed } as i64)
    }

    /// One line per keyspace for `RK.STATUS`: `name db=N replicas=N`, the selected one marked.
    fn keyspace_lines(&self) -> Vec<String> {
        let line = |name: &str, db: u32, replicas_n: usize| {
            let selected = if db == self.db { " (selected)" } else { "" };
            format!("{name} db={db} replicas={replicas_n}{selected}")
        };
        match &self.settings.keyspaces {
            Some(keyspaces) => keyspaces
                .all()
                .map(|keyspace| line(&keyspace.name, keyspace.db, keyspace.replicas_n))
                .collect(),
            None => vec![line(crate::config::DEFAULT_KEYSPACE_NAME, 0, self.settings.replicas_n)],
        }
    }

    /// How many keyspaces the node serves.
    fn keyspaces_count(&self) -> usize {
        self.settings.keyspaces.as_ref().map_or(1, |keyspaces| keyspaces.len())
    }

    /// `SELECT db`: the connection's commands go to the keyspace declared with database number
    /// `db` from now on, at that keyspace's default levels (an `RK.CONSISTENCY` setting does not
    /// carry over: a level may be impossible in the other keyspace). An undeclared number gets
    /// Redis's own error and changes nothing.
    fn select(&mut self, db: &[u8]) -> Reply {
        let Some(db) = std::str::from_utf8(db).ok().and_then(|text| text.parse::<i64>().ok())
        else {
            return Reply::err("value is not an integer or out of range");
        };
        let selected = u32::try_from(db).ok().and_then(|db| match &self.settings.keyspaces {
            Some(keyspaces) => keyspaces.by_db(db).map(|keyspace| {
                (
                    keyspace.node.clone(),
                    keyspace.read_consistency,
                    keyspace.write_consistency,
                    keyspace.replicas_n,
                )
            }),
            None => (db == 0).then(|| {
                (
                    self.default_node.clone(),
                    self.settings.read_consistency,
                    self.settings.write_consistency,
                    self.settings.replicas_n,
                )
            }),
        });
        let Some((node, read_consistency, write_consistency, replicas_n)) = selected else {
            return Reply::err("DB index is out of range");
        };
        // Checked just above: `db` converted to u32.
        self.db = db as u32;
        self.ops = Ops { node, read_consistency, write_consistency };
        self.replicas_n = replicas_n;
        // WAIT waits for the latest write of the selected keyspace only.
        self.last_written = None;
        Reply::ok()
    }

    /// `FLUSHALL`: truncates every keyspace, as Redis's empties every database; `FLUSHDB`
    /// truncates only the selected one. Stops at the first keyspace that fails, naming it.
    async fn flush_all(&self, args: &[Bytes]) -> Reply {
        let Some(keyspaces) = &self.settings.keyspaces else {
            return self.ops.flush(args, self.settings.allow_flush, "FLUSHALL").await;
        };
        for keyspace in keyspaces.all() {
            let ops = Ops { node: keyspace.node.clone(), ..self.ops.clone() };
            if let Reply::Error(error) =
                ops.flush(args, self.settings.allow_flush, "FLUSHALL").await
            {
                if keyspaces.len() == 1 {
                    return Reply::Error(error);
                }
                return Reply::Error(format!("{error} (keyspace `{}`)", keyspace.name));
            }
        }
        Reply::ok()
    }

    /// Hands an operator's membership command to every keyspace's node: a node leaves or a dead
    /// one is removed from every keyspace's ring at once.
    async fn membership_everywhere(&self, input: ringkv_core::Input) -> Reply {
        let nodes: Vec<NodeHandle> = match &self.settings.keyspaces {
            Some(keyspaces) => keyspaces.all().map(|keyspace| keyspace.node.clone()).collect(),
            None => vec![self.default_node.clone()],
        };
        for node in nodes {
            if !node.membership(input.clone()).await {
                return Reply::err("node stopped");
            }
        }
        Reply::ok()
    }

    /// `RK.CONSISTENCY` shows the levels; `RK.CONSISTENCY level` sets both;
    /// `RK.CONSISTENCY READ|WRITE level` sets one.
    fn set_consistency(&mut self, args: &[Bytes]) -> Reply {
        let show = |connection: &Connection| {
            let connection = &connection.ops;
            Reply::Array(vec![
                Reply::text(format!("read {}", consistency_label(connection.read_consistency))),
                Reply::text(format!("write {}", consistency_label(connection.write_consistency))),
            ])
        };
        match args.len() {
            1 => show(self),
            2 => match parse_consistency(&args[1]) {
                Ok(level) => {
                    self.ops.read_consistency = level;
                    self.ops.write_consistency = level;
                    Reply::ok()
                }
                Err(reply) => reply,
            },
            3 => {
                let level = match parse_consistency(&args[2]) {
                    Ok(level) => level,
                    Err(reply) => return reply,
                };
                match String::from_utf8_lossy(&args[1]).to_ascii_uppercase().as_str() {
                    "READ" => self.ops.read_consistency = level,
                    "WRITE" => self.ops.write_consistency = level,
                    other => return Reply::err(format!("expected READ or WRITE, got '{other}'")),
                }
                Reply::ok()
            }
            _ => wrong_arity("rk.consistency"),
        }
    }
}

/// Whether a read-only user may run `command` (upper-cased): reads, connection commands and
/// node status, Redis's `@read` and `@connection` categories as ringkv has them. Everything
/// else, writes and the commands that change the node or the cluster (`FLUSHALL`,
/// `RK.DECOMMISSION`, `RK.RELOADTLS`, `CONFIG`, `ACL LIST`), is refused.
pub fn read_only_may_run(command: &str, args: &[Bytes]) -> bool {
    match command {
        "ACL" => args.get(1).is_some_and(|sub| sub.eq_ignore_ascii_case(b"WHOAMI")),
        "GET" | "MGET" | "EXISTS" | "TOUCH" | "TTL" | "PTTL" | "STRLEN" | "TYPE" | "RK.GETALL"
        | "RK.SERIALGET" | "EXPIRETIME" | "PEXPIRETIME" | "GETRANGE" | "SUBSTR" | "SCAN"
        | "DBSIZE" | "RANDOMKEY" | "OBJECT" | "INFO" | "RK.STATUS" | "RK.RING"
        | "RK.CONSISTENCY" | "WAIT" | "PING" | "ECHO" | "HELLO" | "AUTH" | "QUIT" | "SELECT"
        | "CLIENT" | "COMMAND" => true,
        _ => false,
    }
}

/// A command's name as Redis reports it in errors: lower case, with the subcommand of a
/// container command (`acl|list`, `config|set`).
fn command_full_name(command: &str, args: &[Bytes]) -> String {
    let name = command.to_ascii_lowercase();
    match (command, args.get(1)) {
        ("ACL" | "CONFIG" | "CLIENT" | "OBJECT" | "COMMAND", Some(sub)) => {
            format!("{name}|{}", String::from_utf8_lossy(sub).to_ascii_lowercase())
        }
        _ => name,
    }
}

/// Whether a data command (upper-cased) writes, so that `WAIT` waits for its key.
fn is_write_command(command: &str) -> bool {
    !matches!(
        command,
        "GET"
            | "MGET"
            | "EXISTS"
            | "TOUCH"
            | "TTL"
            | "PTTL"
            | "STRLEN"
            | "TYPE"
            | "RK.GETALL"
            | "RK.SERIALGET"
            | "EXPIRETIME"
            | "PEXPIRETIME"
            | "GETRANGE"
            | "SUBSTR"
    )
}

/// Whether `command` (upper-cased) is a data command, whatever its arity.
fn is_data_command(command: &str) -> bool {
    matches!(
        command,
        "GET"
            | "SET"
            | "SETEX"
            | "PSETEX"
            | "STRLEN"
            | "TYPE"
            | "TOUCH"
            | "DEL"
            | "UNLINK"
            | "EXISTS"
            | "MGET"
            | "MSET"
            | "EXPIRE"
            | "PEXPIRE"
            | "TTL"
            | "PTTL"
            | "PERSIST"
            | "RK.GETALL"
            | "RK.PUT"
            | "RK.DEL"
            | "EXPIREAT"
            | "PEXPIREAT"
            | "EXPIRETIME"
            | "PEXPIRETIME"
            | "GETEX"
            | "GETRANGE"
            | "SUBSTR"
    ) || is_serial_command(command)
}

/// The keys a well-formed data command touches, or `None` for any other command (which then
/// runs alone, in order).
fn data_command_keys(command: &str, args: &[Bytes]) -> Option<Vec<Bytes>> {
    if !is_data_command(command) || args.len() < 2 {
        return None;
    }
    Some(match command {
        "DEL" | "UNLINK" | "EXISTS" | "TOUCH" | "MGET" => args[1..].to_vec(),
        "MSET" => args[1..].iter().step_by(2).cloned().collect(),
        _ => vec![args[1].clone()],
    })
}

/// The metrics label of a consistency level (upper case, as clients write it).
fn consistency_label(consistency: Consistency) -> &'static str {
    match consistency {
        Consistency::One => "ONE",
        Consistency::Two => "TWO",
        Consistency::Three => "THREE",
        Consistency::Quorum => "QUORUM",
        Consistency::All => "ALL",
        Consistency::LocalOne => "LOCAL_ONE",
        Consistency::LocalQuorum => "LOCAL_QUORUM",
        Consistency::EachQuorum => "EACH_QUORUM",
        // A level added to core later is counted apart until it gets a label.
        _ => "OTHER",
    }
}

/// How long a connection closed for a protocol error keeps reading what the client still sends.
const ERROR_LINGER: std::time::Duration = std::time::Duration::from_secs(5);

/// Closes a connection after the error reply to a protocol error without resetting it. The
/// client may still be sending the rest of the command (an oversized value), and closing a socket
/// with unread input makes the kernel answer with a reset, which can discard the reply before the
/// client reads it ("connection reset by peer" instead of the reason). So the write half is shut
/// and the input read and dropped until the client closes, or for [`ERROR_LINGER`] at most.
async fn close_after_error<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut discard = vec![0u8; 64 * 1024];
    let _ = tokio::time::timeout(ERROR_LINGER, async {
        while matches!(stream.read(&mut discard).await, Ok(read) if read > 0) {}
    })
    .await;
}

/// Waits for every in-flight command and appends their replies in order.
async fn drain(
    in_flight: &mut FuturesOrdered<ReplyFuture>,
    keys: &mut BTreeSet<Bytes>,
    protocol: u8,
    out: &mut Vec<u8>,
) {
    while let Some(reply) = in_flight.next().await {
        reply.encode(protocol, out);
    }
    keys.clear();
}
