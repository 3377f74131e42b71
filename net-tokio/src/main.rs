//! The `ringkv` binary: run a node, a local development cluster, or admin commands.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use ringkv_core::Consistency;
use ringkv_net::admin::{AdminRequest, AdminTarget};
use ringkv_net::config::{
    ConflictMode, Durability, KeyspaceFileConfig, MemberAddress, NodeFileConfig,
};
use ringkv_net::NodeThread;

// The request path allocates small, short-lived buffers on every worker thread (frames, replies,
// versioned objects); glibc's malloc spent about 10% of the CPU of a 3-node dev cluster under
// redis-benchmark in its arenas (_int_malloc, malloc_consolidate, free), mimalloc's
// thread-local free lists much less.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "ringkv",
    version,
    about = "A Dynamo-style distributed key-value store that speaks the Redis protocol"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs one node from a RON configuration file.
    Node {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Runs a local cluster in this process (each node on a thread of its own) and prints its
    /// client ports.
    Dev {
        /// Number of nodes.
        #[arg(long, default_value_t = 3)]
        nodes: u32,
        /// First client port; node i listens on base + i - 1, its peer port 1000 higher.
        #[arg(long, default_value_t = 7379)]
        base_port: u16,
        /// Replicas per key.
        #[arg(long, default_value_t = 3)]
        replicas: usize,
        /// Where the nodes keep their data (one folder per node inside).
        #[arg(long, default_value = "ringkv-dev-data")]
        data_dir: PathBuf,
        /// Acknowledge writes before their fsync and sync every this many milliseconds
        /// (`durability: Interval(MS)`, like Cassandra's periodic commit log or Redis's
        /// `appendfsync everysec`); without it every write waits for its fsync.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        sync_interval_ms: Option<u64>,
        /// Threads of each node's runtime (`worker_threads` in a node's configuration).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
        worker_threads: u16,
        /// Datacenters (`dc1`, `dc2`, ...), each of --nodes-per-dc nodes on two racks (`rack1`,
        /// `rack2`, alternating); the default keyspace then keeps `min(3, nodes per dc)`
        /// replicas in every datacenter and reads and writes at LOCAL_QUORUM. Replaces
        /// --nodes and --replicas.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=16))]
        dcs: Option<u32>,
        /// Nodes per datacenter, with --dcs.
        #[arg(long, default_value_t = 3, requires = "dcs", value_parser = clap::value_parser!(u32).range(1..=64))]
        nodes_per_dc: u32,
    },
    /// Restores a node's store from a backup (`ringkv admin backup`), or loads a backup into a
    /// running cluster of any size.
    Restore {
        /// The backup directory (holding one `node-<id>/` per node).
        #[arg(long)]
        from: PathBuf,
        /// Restore this node: its configuration names its id and (empty) data directory.
        #[arg(long, conflicts_with = "into", required_unless_present = "into")]
        config: Option<PathBuf>,
        /// The whole cluster is restored from this backup (every node at once): no limit on the
        /// snapshot's age. Without it the node rejoins a cluster that kept running, and the
        /// snapshot must be younger than half the tombstone grace.
        #[arg(long, requires = "config")]
        new_cluster: bool,
        /// Instead, write every key of the backup into the running cluster at this client
        /// address (any number of nodes): each key's current value and expiry, with plain SETs.
        #[arg(long)]
        into: Option<SocketAddr>,
        /// The client password of the cluster at --into, if it has one.
        #[arg(long, env = "RINGKV_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
    /// Reads a password from standard input (one line) and prints its argon2id hash, the
    /// `password_hash` of a user in a node's `users`.
    HashPassword,
    /// Asks a running node about the cluster.
    Admin {
        /// A node's client address; `snapshot` and `backup` take several (repeat --addr).
        #[arg(long, default_value = "127.0.0.1:7379")]
        addr: Vec<SocketAddr>,
        /// The node's client password, if it has one (`password` in its configuration, or the
        /// password of --user).
        #[arg(long, env = "RINGKV_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// A user of the node's `users` to log in as (default: the `default` user).
        #[arg(long)]
        user: Option<String>,
        /// Connect with TLS (to the node's `tls.client_addr`), trusting this CA's PEM file.
        #[arg(long)]
        tls_ca: Option<PathBuf>,
        /// The name the node's certificate carries, under --tls-ca (default: --addr's IP).
        #[arg(long)]
        tls_server_name: Option<String>,
        /// What to do.
        #[command(subcommand)]
        action: AdminAction,
    },
}

#[derive(Subcommand)]
enum AdminAction {
    /// The node's id, epoch, readiness and the members it knows.
    Status,
    /// Each member's share of the ring as primary replica.
    Ring,
    /// How to add a node: start it with `join: true` in its configuration.
    Join,
    /// Makes the node at --addr leave: it streams its ranges to their next owners, then leaves.
    Decommission,
    /// Tells the node at --addr that a dead node is removed; its ranges are rebuilt.
    Remove {
        /// The dead node's id.
        #[arg(long)]
        node: u32,
    },
    /// Makes every node at --addr take a point-in-time snapshot of its store, kept under its
    /// data directory in `snapshots/NAME/` (hard links: cheap until the tables change).
    Snapshot {
        /// The snapshot's name (letters, digits, '.', '_', '-').
        name: String,
    },
    /// Copies snapshot NAME of every node at --addr into DIR/node-<id>/, with checksums.
    Backup {
        /// The snapshot's name.
        name: String,
        /// Where the backup goes.
        #[arg(long)]
        to: PathBuf,
    },
    /// Makes the node at --addr read its TLS files again (as SIGHUP does); new connections use
    /// the new certificate, and a file that cannot be used is refused, keeping the old one.
    ReloadTls,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Node { config } => run_node(config),
        Command::Dev {
            nodes,
            base_port,
            replicas,
            data_dir,
            sync_interval_ms,
            worker_threads,
            dcs,
            nodes_per_dc,
        } => {
            let durability = match sync_interval_ms {
                Some(interval_ms) => Durability::Interval(interval_ms),
                None => Durability::Fsync,
            };
            let topology = match dcs {
                Some(dcs) => DevTopology::Datacenters { dcs, nodes_per_dc },
                None => DevTopology::Flat { nodes, replicas },
            };
            run_dev(topology, base_port, data_dir, durability, usize::from(worker_threads))
        }
        Command::Admin { addr, password, user, tls_ca, tls_server_name, action } => {
            let target = match tls_ca.map(|path| {
                std::fs::read(&path)
                    .map_err(|error| format!("cannot read --tls-ca {}: {error}", path.display()))
            }) {
                Some(Err(error)) => Err(error),
                Some(Ok(pem)) => Ok(Some(pem)),
                None => Ok(None),
            }
            .map(|tls_ca_pem| AdminTarget {
                addr: addr.first().copied(),
                user,
                password,
                tls_ca_pem,
                tls_server_name,
            });
            target.and_then(|target| {
                on_small_runtime(run_admin(target, addr, action)).and_then(|result| result)
            })
        }
        Command::Restore { from, config, new_cluster, into, password } => {
            run_restore(from, config, new_cluster, into, password)
        }
        Command::HashPassword => hash_password(),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ringkv: {message}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Runs `future` on a current-thread runtime (admin commands, waiting for a signal).
fn on_small_runtime<T>(future: impl std::future::Future<Output = T>) -> Result<T, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the runtime: {error}"))?;
    Ok(runtime.block_on(future))
}

fn init_logs(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

fn run_node(path: PathBuf) -> Result<(), String> {
    let config = NodeFileConfig::load(&path).map_err(|error| error.to_string())?;
    init_logs(&config.log_level);
    let node = NodeThread::start(config).map_err(|error| error.to_string())?;
    tracing::info!(
        id = %node.id,
        client = %node.client_addr,
        tls_client = ?node.tls_client_addr,
        peer = %node.peer_addr,
        "node started"
    );
    let waited = match node.tls.clone() {
        // Only a node with TLS handles SIGHUP; without, the signal keeps its default (exit).
        Some(tls) => on_small_runtime(reload_tls_on_hangup_until_stopped(tls)),
        None => on_small_runtime(wait_for_signal()),
    };
    tracing::info!("shutting down");
    node.shutdown();
    waited
}

/// The shape of a dev cluster.
#[derive(Debug, Clone, Copy)]
enum DevTopology {
    /// `nodes` nodes in `dc1`, `rack1`, N = `replicas`.
    Flat { nodes: u32, replicas: usize },
    /// `dcs` datacenters of `nodes_per_dc` nodes each (see `Command::Dev`).
    Datacenters { dcs: u32, nodes_per_dc: u32 },
}

impl DevTopology {
    fn nodes(self) -> u32 {
        match self {
            DevTopology::Flat { nodes, .. } => nodes,
            DevTopology::Datacenters { dcs, nodes_per_dc } => dcs * nodes_per_dc,
        }
    }

    /// The datacenter and rack of node `id` (1-based): nodes fill `dc1` first, then `dc2`, and
    /// alternate between two racks within each.
    fn location(self, id: u32) -> (String, String) {
        match self {
            DevTopology::Flat { .. } => ("dc1".into(), "rack1".into()),
            DevTopology::Datacenters { nodes_per_dc, .. } => {
                let index = id - 1;
                let rack = index % nodes_per_dc % 2 + 1;
                (format!("dc{}", index / nodes_per_dc + 1), format!("rack{rack}"))
            }
        }
    }

    /// The default keyspace, when the topology needs one of its own.
    fn keyspaces(self) -> Vec<KeyspaceFileConfig> {
        let DevTopology::Datacenters { dcs, nodes_per_dc } = self else { return Vec::new() };
        let per_dc: usize = nodes_per_dc.min(3) as usize;
        vec![KeyspaceFileConfig {
            name: "main".into(),
            db: 0,
            replicas_n: 0,
            replicas_per_dc: (1..=dcs).map(|dc| (format!("dc{dc}"), per_dc)).collect(),
            conflict_mode: ConflictMode::Dvv,
            sloppy_quorum: false,
            hint_window_s: 3 * 3600,
            tombstone_grace_s: 10 * 24 * 3600,
            read_consistency: Consistency::LocalQuorum,
            write_consistency: Consistency::LocalQuorum,
        }]
    }

    fn describe(self) -> String {
        match self {
            DevTopology::Flat { nodes, replicas } => format!("{nodes} nodes, N={replicas}"),
            DevTopology::Datacenters { dcs, nodes_per_dc } => format!(
                "{dcs} datacenters of {nodes_per_dc} nodes on two racks each, {} replicas per \
                 datacenter, LOCAL_QUORUM",
                nodes_per_dc.min(3)
            ),
        }
    }
}

fn run_dev(
    topology: DevTopology,
    base_port: u16,
    data_dir: PathBuf,
    durability: Durability,
    worker_threads: usize,
) -> Result<(), String> {
    init_logs("warn");
    let nodes = topology.nodes();
    let replicas = match topology {
        DevTopology::Flat { replicas, .. } => replicas,
        DevTopology::Datacenters { .. } => 1,
    };
    if nodes == 0 || replicas == 0 || replicas > nodes as usize {
        return Err(format!("--replicas {replicas} needs 1..={nodes} nodes"));
    }
    let address = |port: u32| -> Result<SocketAddr, String> {
        let port = u16::try_from(port).map_err(|_| format!("port {port} is out of range"))?;
        Ok(SocketAddr::from(([127, 0, 0, 1], port)))
    };
    let members = (1..=nodes)
        .map(|id| {
            let (datacenter, rack) = topology.location(id);
            let peer_addr = address(u32::from(base_port) + 1000 + id - 1)?;
            Ok(MemberAddress { datacenter, rack, ..MemberAddress::new(id, peer_addr) })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mut running = Vec::new();
    for id in 1..=nodes {
        let config = NodeFileConfig {
            node_id: id,
            cluster: "dev".into(),
            cluster_secret: "ringkv-dev-cluster-secret".into(),
            client_addr: address(u32::from(base_port) + id - 1)?,
            peer_addr: members[(id - 1) as usize].peer_addr,
            metrics_addr: Some(address(u32::from(base_port) + 2000 + id - 1)?),
            members: members.clone(),
            data_dir: data_dir.join(format!("node{id}")),
            replicas_n: if topology.keyspaces().is_empty() { replicas } else { 3 },
            durability,
            worker_threads,
            // Test harnesses start with FLUSHALL, as they do against redis-server.
            allow_flush: true,
            keyspaces: topology.keyspaces(),
            ..NodeFileConfig::parse(&dev_template(&members, replicas))
                .map_err(|error| error.to_string())?
        };
        config.validate().map_err(|error| error.to_string())?;
        let node = NodeThread::start(config).map_err(|error| error.to_string())?;
        let (datacenter, rack) = topology.location(id);
        println!(
            "node {id} ({datacenter}/{rack}): redis-cli -p {}  (metrics http://{}/metrics)",
            node.client_addr.port(),
            node.metrics_addr.map(|a| a.to_string()).unwrap_or_default()
        );
        running.push(node);
    }
    println!("ringkv dev cluster of {}, {durability:?}; Ctrl-C to stop", topology.describe());
    let waited = on_small_runtime(wait_for_signal());
    for node in running {
        node.shutdown();
    }
    waited
}

/// A valid configuration whose per-node fields `run_dev` replaces.
// The template carries the replica count: a parsed configuration is validated, and the default
// N=3 is refused for a cluster of fewer nodes (`ringkv dev --nodes 1 --replicas 1` failed).
fn dev_template(members: &[MemberAddress], replicas: usize) -> String {
    let first = &members[0];
    format!(
        "(node_id: {}, cluster: \"dev\", cluster_secret: \"ringkv-dev-cluster-secret\", client_addr: \"127.0.0.1:0\", peer_addr: \"{}\", members: [{}], data_dir: \"unused\", replicas_n: {replicas})",
        first.id,
        first.peer_addr,
        members.iter().map(|member| format!("(id: {}, peer_addr: \"{}\")", member.id, member.peer_addr)).collect::<Vec<_>>().join(", ")
    )
}

fn run_restore(
    from: PathBuf,
    config: Option<PathBuf>,
    new_cluster: bool,
    into: Option<SocketAddr>,
    password: Option<String>,
) -> Result<(), String> {
    let now = ringkv_net::driver::wall_clock();
    let text = match (config, into) {
        (Some(config), _) => {
            let config = NodeFileConfig::load(&config).map_err(|error| error.to_string())?;
            let target = if new_cluster {
                ringkv_net::backup::RestoreInto::NewCluster
            } else {
                let tombstone_grace = ringkv_core::KeyspaceConfig::default().tombstone_grace;
                ringkv_net::backup::RestoreInto::LiveCluster { tombstone_grace }
            };
            ringkv_net::backup::restore_node(&from, config.node_id, &config.data_dir, target, now)?
        }
        (None, Some(into)) => {
            let target = AdminTarget { addr: Some(into), password, ..AdminTarget::default() };
            on_small_runtime(ringkv_net::backup::load_into(&from, &target, now))??
        }
        (None, None) => {
            return Err("restore needs --config (one node) or --into (a cluster)".into())
        }
    };
    println!("{text}");
    Ok(())
}

/// `ringkv hash-password`: one line of standard input (without its line end) to a PHC string.
fn hash_password() -> Result<(), String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|error| format!("cannot read the password from standard input: {error}"))?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    println!("{}", ringkv_net::users::hash_password(password)?);
    Ok(())
}

async fn run_admin(
    target: AdminTarget,
    addrs: Vec<SocketAddr>,
    action: AdminAction,
) -> Result<(), String> {
    let request = match action {
        AdminAction::Snapshot { name } => {
            println!("{}", ringkv_net::backup::snapshot(&addrs, &target, &name).await?);
            return Ok(());
        }
        AdminAction::Backup { name, to } => {
            println!("{}", ringkv_net::backup::backup(&addrs, &target, &name, &to).await?);
            return Ok(());
        }
        AdminAction::Status => AdminRequest::Status,
        AdminAction::Ring => AdminRequest::Ring,
        AdminAction::Decommission => AdminRequest::Decommission,
        AdminAction::Remove { node } => AdminRequest::Remove { node },
        AdminAction::ReloadTls => AdminRequest::ReloadTls,
        AdminAction::Join => {
            return Err(
                "a node joins by starting it with `join: true` and `members` naming \
                        running nodes in its configuration (see README.md); it streams its \
                        ranges, then turns normal. `ringkv admin status` on it shows its progress."
                    .into(),
            )
        }
    };
    println!("{}", ringkv_net::admin::run_with(&target, request).await?);
    Ok(())
}

/// Reloads the TLS files at every SIGHUP until Ctrl-C or SIGTERM; a refused reload is logged
/// and the certificate in use stays.
async fn reload_tls_on_hangup_until_stopped(tls: std::sync::Arc<ringkv_net::tls::TlsState>) {
    let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(error) => {
            tracing::warn!(%error, "cannot handle SIGHUP; use `ringkv admin reload-tls`");
            return wait_for_signal().await;
        }
    };
    let stopped = wait_for_signal();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            () = &mut stopped => return,
            Some(()) = hangups.recv() => match tls.reload() {
                Ok(fingerprint) => tracing::info!(%fingerprint, "TLS files reloaded (SIGHUP)"),
                Err(error) => tracing::warn!(
                    %error,
                    "TLS reload refused (SIGHUP); the previous certificate stays in use"
                ),
            },
        }
    }
}

async fn wait_for_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
