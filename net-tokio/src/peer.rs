//! The peer transport: TCP connections between nodes carrying checksummed frames.
//!
//! Each node dials every other member (outbound, one connection per peer, used only to send) and
//! accepts their dials (inbound, used only to receive). Outbound messages wait in a bounded queue
//! per peer; when it is full a message is dropped and counted, since the coordinator's deadlines
//! and repair make up for lost messages. A lost connection is redialled with exponential backoff,
//! and the node is told the peer is down until it reconnects.
//!
//! A partition that drops packets (rather than refusing connections) must not leave a link
//! that looks open but delivers nothing: the kernel would keep retransmitting into it with a
//! doubling timeout, and after the heal the queued frames arrive seconds late (seen as ~5 s of
//! TIMEOUTs after an 8 s partition of a real 5-node cluster). So every peer socket has a TCP
//! user timeout (unacknowledged data for [`PeerSettings::user_timeout`] aborts it) and
//! keepalive probes at the same pace (an idle receiving side notices too), dials give up after
//! [`PeerSettings::connect_timeout`], and the redial backoff stays short, so a healed link is
//! back within a few hundred milliseconds.
//!
//! A frame that is too large, of another version, corrupt or undecodable closes that connection
//! and is counted; the node goes on.
//!
//! Keyspaces: the links are shared by every keyspace's node of the process ([`PeerDialer`]);
//! messages of keyspaces other than the default carry the keyspace's name
//! ([`Wire::KeyspaceMessage`]), an inbound message goes to the node its tag names, and a
//! message for a keyspace this node lacks is dropped and counted without closing the link.
//!
//! With TLS ([`PeerSettings::tls`]) each link is a TLS connection first: the dialler checks the
//! acceptor's certificate against the peer CA, and under mutual TLS the acceptor checks the
//! dialler's. The cluster-secret handshake then runs inside TLS as a second factor, so a stolen
//! certificate alone does not make a peer. A refused handshake is logged as a warning naming the
//! address and the reason (once per run of equal failures on the dialling side, once per
//! [`REFUSAL_WARNING_INTERVAL`] and remote IP on the accepting side, so a misconfigured peer
//! redialling every 200 ms does not flood the log).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ringkv_core::{NodeId, PeerMessage};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::driver::{Delivery, PeerSink};
use crate::frame::{self, FrameError, Wire};
use crate::keyspaces::NodeHandles;
use crate::metrics::Metrics;
use crate::tls::TlsState;

/// Settings shared by every peer connection of a node.
#[derive(Debug, Clone)]
pub struct PeerSettings {
    /// This node.
    pub me: NodeId,
    /// The cluster's name; peers of another cluster are refused.
    pub cluster: String,
    /// The shared cluster secret.
    pub secret: Vec<u8>,
    /// Largest frame accepted, in bytes.
    pub frame_bytes_max: usize,
    /// Messages queued per peer before new ones are dropped.
    pub queue_len_max: usize,
    /// Longest wait between reconnection attempts.
    pub backoff_max: Duration,
    /// How long a dial waits for the connection (one SYN, on a cluster network).
    pub connect_timeout: Duration,
    /// How long sent data may stay unacknowledged, or an idle connection unanswered to
    /// keepalive probes, before the connection counts as lost.
    pub user_timeout: Duration,
    /// TLS for every link, when the node's `tls` section names a peer CA.
    pub tls: Option<Arc<TlsState>>,
}

/// How often the accepting side warns about refused handshakes from one IP address.
pub const REFUSAL_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Remote IPs remembered for [`REFUSAL_WARNING_INTERVAL`]; past this the memory starts over.
const REFUSAL_WARNINGS_TRACKED_MAX: usize = 1_024;

/// Applies the socket options every peer connection needs (see the module's documentation).
fn configure(stream: &TcpStream, settings: &PeerSettings) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let socket = socket2::SockRef::from(stream);
    socket.set_tcp_user_timeout(Some(settings.user_timeout))?;
    // Keepalive is set in whole seconds (TCP_KEEPIDLE and TCP_KEEPINTVL; 0 is refused); the
    // user timeout also bounds how long unanswered probes may go on.
    let probe_every = (settings.user_timeout / 3).max(Duration::from_secs(1));
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(probe_every)
        .with_interval(probe_every)
        .with_retries(3);
    socket.set_tcp_keepalive(&keepalive)
}

/// The sending side shared by every keyspace of a node: one bounded queue and one dialling task
/// per peer. Each keyspace's node sends through a [`PeerQueues`] of its own, which tags its
/// messages and keeps its own copy of the queues, so sending takes no lock; only dialling a
/// peer that gossip revealed does.
#[derive(Debug)]
pub struct PeerDialer {
    queues: std::sync::Mutex<BTreeMap<NodeId, mpsc::Sender<Wire>>>,
    settings: Arc<PeerSettings>,
    nodes: Arc<OnceLock<Arc<NodeHandles>>>,
    metrics: Arc<Metrics>,
}

impl PeerDialer {
    /// A dialer with no peers yet; `nodes` is filled in once the node tasks exist.
    pub fn new(
        settings: Arc<PeerSettings>,
        nodes: Arc<OnceLock<Arc<NodeHandles>>>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(PeerDialer {
            queues: std::sync::Mutex::new(BTreeMap::new()),
            settings,
            nodes,
            metrics,
        })
    }

    /// Starts the connection to `peer` at `address` unless it has one; returns its queue.
    pub fn dial_address(&self, peer: NodeId, address: SocketAddr) -> Option<mpsc::Sender<Wire>> {
        if peer == self.settings.me {
            return None;
        }
        // A poisoned lock means a panic while inserting a sender; the map itself is sound.
        let mut queues = self.queues.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(queue) = queues.get(&peer) {
            return Some(queue.clone());
        }
        let (sender, receiver) = mpsc::channel(self.settings.queue_len_max);
        queues.insert(peer, sender.clone());
        tokio::spawn(dial(
            peer,
            address,
            self.settings.clone(),
            self.nodes.clone(),
            receiver,
            self.metrics.clone(),
        ));
        Some(sender)
    }

    /// The sink through which `keyspace`'s node sends (`None`: the default keyspace, whose
    /// messages are untagged).
    pub fn queues_for(self: &Arc<Self>, keyspace: Option<String>) -> PeerQueues {
        let local = self.queues.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        PeerQueues { keyspace, local, dialer: self.clone() }
    }
}

/// One keyspace's side of the peer queues ([`PeerDialer`]).
#[derive(Debug)]
pub struct PeerQueues {
    keyspace: Option<String>,
    local: BTreeMap<NodeId, mpsc::Sender<Wire>>,
    dialer: Arc<PeerDialer>,
}

impl PeerSink for PeerQueues {
    fn send(&mut self, to: NodeId, message: PeerMessage) {
        let wire = match &self.keyspace {
            None => Wire::Message(message),
            Some(keyspace) => Wire::KeyspaceMessage { keyspace: keyspace.clone(), message },
        };
        let delivered = self.local.get(&to).is_some_and(|queue| queue.try_send(wire).is_ok());
        if !delivered {
            self.dialer.metrics.peer_messages_dropped.inc();
        }
    }

    fn knows(&self, to: NodeId) -> bool {
        self.local.contains_key(&to)
    }

    fn connect(&mut self, to: NodeId, address: &str) {
        match address.parse::<SocketAddr>() {
            Ok(address) => {
                // Another keyspace may have dialled it already: then this takes its queue.
                if let Some(queue) = self.dialer.dial_address(to, address) {
                    self.local.insert(to, queue);
                }
            }
            Err(_) => tracing::debug!(%to, address, "no dialable address for the peer"),
        }
    }
}

/// Keeps a connection to `peer` at `address` open and sends it everything queued.
pub async fn dial(
    peer: NodeId,
    address: SocketAddr,
    settings: Arc<PeerSettings>,
    nodes: Arc<OnceLock<Arc<NodeHandles>>>,
    mut outbox: mpsc::Receiver<Wire>,
    metrics: Arc<Metrics>,
) {
    // The node tasks are created right after the first dial tasks; wait for their handles.
    let nodes = loop {
        if let Some(nodes) = nodes.get() {
            break nodes.clone();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    // The link carries every keyspace's messages, so every keyspace's node hears of it.
    let report = |up: bool| {
        let nodes = nodes.clone();
        async move {
            for keyspace in nodes.all() {
                keyspace.node.peer_status(peer, up).await;
            }
        }
    };
    let mut backoff = Duration::from_millis(50);
    let mut reported_down = false;
    let mut last_refusal: Option<String> = None;
    loop {
        // The node dropped its queues: it stopped, and so does this connection.
        if outbox.is_closed() {
            return;
        }
        match connect(peer, address, &settings).await {
            Ok(stream) => {
                backoff = Duration::from_millis(50);
                last_refusal = None;
                report(true).await;
                metrics.peers_up.fetch_add(1, Ordering::Relaxed);
                reported_down = false;
                let closed = match stream {
                    PeerStream::Plain(stream) => {
                        let (reader, writer) = stream.into_split();
                        pump(reader, writer, &mut outbox, settings.frame_bytes_max).await
                    }
                    PeerStream::Tls(stream) => {
                        let (reader, writer) = tokio::io::split(*stream);
                        pump(reader, writer, &mut outbox, settings.frame_bytes_max).await
                    }
                };
                metrics.peers_up.fetch_sub(1, Ordering::Relaxed);
                tracing::info!(%peer, reason = %closed, "peer connection closed");
                if closed.to_string() == "outbox closed" {
                    return;
                }
            }
            Err(DialError::Refused(reason)) => {
                metrics.tls_handshakes_failed.inc();
                if last_refusal.as_ref() != Some(&reason) {
                    tracing::warn!(%peer, %address, %reason, "peer TLS handshake refused");
                    last_refusal = Some(reason);
                }
            }
            Err(DialError::Frame(error)) => tracing::debug!(%peer, %error, "dial failed"),
        }
        if !reported_down {
            report(false).await;
            reported_down = true;
        }
        // Messages queued while the peer is away are stale by the time it returns; the
        // coordinator has timed them out.
        while outbox.try_recv().is_ok() {}
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(settings.backoff_max);
    }
}

/// An outbound link after its handshakes.
enum PeerStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// Why a dial failed.
enum DialError {
    /// The TLS handshake failed: a certificate was refused, or the peer does not speak TLS.
    Refused(String),
    /// Anything else (no answer, wrong cluster secret, a closed connection).
    Frame(FrameError),
}

impl From<FrameError> for DialError {
    fn from(error: FrameError) -> Self {
        DialError::Frame(error)
    }
}

async fn connect(
    peer: NodeId,
    address: SocketAddr,
    settings: &PeerSettings,
) -> Result<PeerStream, DialError> {
    let mut stream = tokio::time::timeout(settings.connect_timeout, TcpStream::connect(address))
        .await
        .map_err(|_| FrameError::Handshake("connect timed out".into()))?
        .map_err(FrameError::from)?;
    configure(&stream, settings).map_err(FrameError::from)?;
    let Some(tls) = &settings.tls else {
        prove(peer, &mut stream, settings).await?;
        return Ok(PeerStream::Plain(stream));
    };
    let connector = tls.peer_connector().ok_or_else(|| {
        DialError::Refused("the node's TLS material has no peer connector".into())
    })?;
    let name = tls.peer_server_name(address);
    let mut stream = tokio::time::timeout(tls.handshake_timeout(), connector.connect(name, stream))
        .await
        .map_err(|_| DialError::Refused("TLS handshake timed out".into()))?
        .map_err(|error| DialError::Refused(error.to_string()))?;
    // Under TLS 1.3 the acceptor checks the dialler's certificate after the dialler considers
    // the handshake done, so its refusal arrives as the first read of the secret handshake.
    prove(peer, &mut stream, settings).await.map_err(|error| match error {
        FrameError::Io(error) => DialError::Refused(error.to_string()),
        other => DialError::Frame(other),
    })?;
    Ok(PeerStream::Tls(Box::new(stream)))
}

/// The dialling side of the cluster-secret handshake: hello, the acceptor's challenge and
/// proof, our proof.
async fn prove<S: AsyncRead + AsyncWrite + Unpin>(
    peer: NodeId,
    stream: &mut S,
    settings: &PeerSettings,
) -> Result<(), FrameError> {
    let nonce = frame::nonce();
    frame::write(
        stream,
        &Wire::Hello { cluster: settings.cluster.clone(), node: settings.me, nonce },
    )
    .await?;
    let reply =
        tokio::time::timeout(Duration::from_secs(2), frame::read(stream, settings.frame_bytes_max))
            .await
            .map_err(|_| FrameError::Handshake("no challenge".into()))??;
    let Wire::Challenge { node, nonce: their_nonce, proof } = reply else {
        return Err(FrameError::Handshake("expected a challenge".into()));
    };
    if node != peer {
        return Err(FrameError::Handshake(format!("dialled {peer} but {node} answered")));
    }
    if !frame::verify(&settings.secret, b"a", &settings.cluster, &nonce, &their_nonce, &proof) {
        return Err(FrameError::Handshake("the peer does not know the cluster secret".into()));
    }
    let proof = frame::proof(&settings.secret, b"c", &settings.cluster, &their_nonce, &nonce);
    frame::write(stream, &Wire::Proof { proof }).await?;
    Ok(())
}

/// Sends queued messages until the connection or the queue closes; returns why it stopped.
async fn pump<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    mut reader: R,
    mut writer: W,
    outbox: &mut mpsc::Receiver<Wire>,
    frame_bytes_max: usize,
) -> FrameError {
    let mut out = Vec::with_capacity(WRITE_BATCH_BYTES);
    let mut probe = [0u8; 1];
    loop {
        tokio::select! {
            message = outbox.recv() => {
                let Some(message) = message else { return FrameError::Handshake("outbox closed".into()) };
                if let Err(error) = append_frame(&mut out, message, frame_bytes_max) {
                    return error;
                }
                // Everything else already queued goes out in the same write (up to a batch), so
                // a burst costs one system call.
                while out.len() < WRITE_BATCH_BYTES {
                    let Ok(message) = outbox.try_recv() else { break };
                    if let Err(error) = append_frame(&mut out, message, frame_bytes_max) {
                        return error;
                    }
                }
                if let Err(error) = writer.write_all(&out).await {
                    return error.into();
                }
                out.clear();
                // One huge message must not pin its buffer for the connection's life.
                out.shrink_to(WRITE_BATCH_BYTES);
            }
            // The acceptor never writes after the handshake: a readable socket means it closed.
            read = reader.read(&mut probe) => {
                return match read {
                    Ok(_) => FrameError::Handshake("peer closed the connection".into()),
                    Err(error) => error.into(),
                };
            }
        }
    }
}

/// Bytes of frames gathered into one write.
const WRITE_BATCH_BYTES: usize = 64 * 1024;

/// Appends `message` as a frame, refusing one longer than `frame_bytes_max`.
fn append_frame(out: &mut Vec<u8>, wire: Wire, frame_bytes_max: usize) -> Result<(), FrameError> {
    let frame_bytes = frame::encode_into(&wire, out)?;
    if frame_bytes > frame_bytes_max {
        return Err(FrameError::TooLarge { length_bytes: frame_bytes, max_bytes: frame_bytes_max });
    }
    Ok(())
}

/// Accepts peer connections and feeds their messages to the node. Any node that proves it knows
/// the cluster secret is accepted (a joining node is in nobody's configuration). The connection
/// tasks belong to this task: aborting it (a node stopping) closes every inbound connection, so
/// peers notice.
pub async fn accept(
    listener: TcpListener,
    settings: Arc<PeerSettings>,
    nodes: Arc<NodeHandles>,
    metrics: Arc<Metrics>,
) {
    let mut connections = tokio::task::JoinSet::new();
    let refusals = Arc::new(std::sync::Mutex::new(RefusalWarnings::default()));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let Ok((stream, address)) = accepted else { continue };
        let settings = settings.clone();
        let node = nodes.clone();
        let metrics = metrics.clone();
        let refusals = refusals.clone();
        connections.spawn(async move {
            if let Err(error) = configure(&stream, &settings) {
                tracing::debug!(%address, %error, "cannot configure an inbound peer socket");
                return;
            }
            let received = match settings.tls.as_ref().and_then(|tls| tls.peer_acceptor()) {
                None => receive(stream, &settings, &node, &metrics).await,
                Some(acceptor) => {
                    let timeout = settings
                        .tls
                        .as_ref()
                        .map_or(Duration::from_secs(3), |tls| tls.handshake_timeout());
                    let reason = match tokio::time::timeout(timeout, acceptor.accept(stream)).await
                    {
                        Ok(Ok(stream)) => {
                            let received = receive(stream, &settings, &node, &metrics).await;
                            log_closed(address, received, &metrics);
                            return;
                        }
                        Ok(Err(error)) => error.to_string(),
                        Err(_) => "TLS handshake timed out".to_string(),
                    };
                    metrics.tls_handshakes_failed.inc();
                    let warn = refusals
                        .lock()
                        .map_or(true, |mut refusals| refusals.should_warn(address.ip()));
                    if warn {
                        tracing::warn!(%address, %reason, "inbound peer TLS handshake refused");
                    } else {
                        tracing::debug!(%address, %reason, "inbound peer TLS handshake refused");
                    }
                    return;
                }
            };
            log_closed(address, received, &metrics);
        });
    }
}

/// Logs and counts why an inbound link closed.
fn log_closed(address: SocketAddr, received: Result<(), FrameError>, metrics: &Metrics) {
    if let Err(error) = received {
        if !matches!(error, FrameError::Io(_)) {
            metrics.peer_frames_refused.inc();
        }
        tracing::info!(%address, %error, "inbound peer connection closed");
    }
}

/// When each remote IP was last warned about, so refusals are logged at a bounded rate.
#[derive(Default)]
struct RefusalWarnings {
    last_warned: BTreeMap<IpAddr, std::time::Instant>,
}

impl RefusalWarnings {
    fn should_warn(&mut self, ip: IpAddr) -> bool {
        let now = std::time::Instant::now();
        if let Some(last) = self.last_warned.get(&ip) {
            if now.duration_since(*last) < REFUSAL_WARNING_INTERVAL {
                return false;
            }
        }
        if self.last_warned.len() >= REFUSAL_WARNINGS_TRACKED_MAX {
            self.last_warned.clear();
        }
        self.last_warned.insert(ip, now);
        true
    }
}

async fn receive<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    settings: &PeerSettings,
    nodes: &NodeHandles,
    metrics: &Metrics,
) -> Result<(), FrameError> {
    // Handshake frames are small: a stranger gets no more than a few bytes of buffer.
    let hello = tokio::time::timeout(Duration::from_secs(2), frame::read(&mut stream, 4096))
        .await
        .map_err(|_| FrameError::Handshake("no hello".into()))??;
    let Wire::Hello { cluster, node: from, nonce: their_nonce } = hello else {
        return Err(FrameError::Handshake("expected hello".into()));
    };
    if cluster != settings.cluster {
        return Err(FrameError::Handshake(format!("peer belongs to cluster `{cluster}`")));
    }
    if from == settings.me {
        return Err(FrameError::Handshake(format!("{from} is this node's own id")));
    }
    let nonce = frame::nonce();
    let proof = frame::proof(&settings.secret, b"a", &settings.cluster, &their_nonce, &nonce);
    frame::write(&mut stream, &Wire::Challenge { node: settings.me, nonce, proof }).await?;
    let answer = tokio::time::timeout(Duration::from_secs(2), frame::read(&mut stream, 4096))
        .await
        .map_err(|_| FrameError::Handshake("no proof".into()))??;
    let Wire::Proof { proof } = answer else {
        return Err(FrameError::Handshake("expected proof".into()));
    };
    if !frame::verify(&settings.secret, b"c", &settings.cluster, &nonce, &their_nonce, &proof) {
        return Err(FrameError::Handshake(format!("{from} does not know the cluster secret")));
    }
    let mut reader = tokio::io::BufReader::new(stream);
    let mut body = Vec::new();
    let mut warned_unknown_keyspace = false;
    loop {
        let (keyspace, message) =
            match frame::read_with(&mut reader, settings.frame_bytes_max, &mut body).await? {
                Wire::Message(message) => (None, message),
                Wire::KeyspaceMessage { keyspace, message } => (Some(keyspace), message),
                other => {
                    return Err(FrameError::Handshake(format!(
                        "unexpected {other:?} after the handshake"
                    )))
                }
            };
        let Some(node) = nodes.for_tag(keyspace.as_deref()) else {
            // A peer with a keyspace this node lacks (configurations that disagree): its
            // messages are dropped and counted, and the link stays up for the others.
            metrics.peer_messages_unknown_keyspace.inc();
            if !warned_unknown_keyspace {
                warned_unknown_keyspace = true;
                tracing::warn!(
                    %from,
                    keyspace = keyspace.as_deref().unwrap_or_default(),
                    "peer message for a keyspace this node does not have: dropped (do the \
                     nodes' `keyspaces` lists agree?)"
                );
            }
            continue;
        };
        match node.peer_message(from, message) {
            Delivery::Queued => {}
            Delivery::Full => tracing::warn!(%from, "node queue full: peer message dropped"),
            Delivery::Stopped => return Err(FrameError::Handshake("the node stopped".into())),
        }
    }
}
