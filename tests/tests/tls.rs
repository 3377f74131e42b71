//! TLS on real sockets: the TLS client port through the redis crate and redis-cli, mutual TLS
//! between peers, a peer with a certificate of another CA, a plain-text client on the TLS port
//! and reloading the certificate. Every certificate is made here, at run time, by rcgen.

// Test helpers fail the test loudly on any setup error; that is what unwrap does here.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ringkv_net::admin::{self, AdminRequest, AdminTarget};
use ringkv_net::config::{NodeFileConfig, TlsFileConfig};
use ringkv_tests::{call, cluster_configs, connect, free_address, start_node};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A throw-away certificate authority.
struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A leaf certificate for 127.0.0.1 and localhost, and its key, both in PEM.
    fn issue(&self, name: &str) -> (String, String) {
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// Writes a leaf of `ca` and `ca`'s certificate into `directory` and returns their paths
/// (certificate, key, CA).
fn write_files(directory: &Path, ca: &Ca, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    std::fs::create_dir_all(directory).unwrap();
    let (cert, key) = ca.issue(name);
    let paths = (directory.join("cert.pem"), directory.join("key.pem"), directory.join("ca.pem"));
    std::fs::write(&paths.0, cert).unwrap();
    std::fs::write(&paths.1, key).unwrap();
    std::fs::write(&paths.2, ca.pem()).unwrap();
    paths
}

fn tls_section(
    files: &(PathBuf, PathBuf, PathBuf),
    client_addr: Option<SocketAddr>,
    peer_ca: Option<&Path>,
) -> TlsFileConfig {
    TlsFileConfig {
        cert_pem: files.0.clone(),
        key_pem: files.1.clone(),
        client_addr,
        client_ca_pem: None,
        peer_ca_pem: peer_ca.map(Path::to_path_buf),
        peer_mutual_tls: true,
        peer_server_name: None,
        handshake_timeout_ms: 1_000,
    }
}

/// One node holding every key itself (N = 1), with `tls`.
fn single_node(data: &Path, tls: TlsFileConfig) -> NodeFileConfig {
    let mut config = cluster_configs(1, data).remove(0);
    config.replicas_n = 1;
    config.tls = Some(tls);
    config
}

/// A redis client for the TLS port at `address`, trusting `ca_pem`.
fn tls_client(address: SocketAddr, ca_pem: &str) -> redis::Client {
    ringkv_net::tls::install_crypto_provider();
    let info = redis::ConnectionInfo {
        addr: redis::ConnectionAddr::TcpTls {
            host: address.ip().to_string(),
            port: address.port(),
            insecure: false,
            tls_params: None,
        },
        redis: redis::RedisConnectionInfo::default(),
    };
    let certificates =
        redis::TlsCertificates { client_tls: None, root_cert: Some(ca_pem.as_bytes().to_vec()) };
    redis::Client::build_with_tls(info, certificates).unwrap()
}

async fn tls_connect(
    address: SocketAddr,
    ca_pem: &str,
) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let client = tls_client(address, ca_pem);
    tokio::time::timeout(Duration::from_secs(5), client.get_multiplexed_async_connection())
        .await
        .unwrap_or_else(|_| panic!("the TLS connection to {address} hung"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_crate_and_redis_cli_speak_tls_and_a_plain_client_on_the_tls_port_is_closed() {
    let data = tempfile::tempdir().unwrap();
    let ca = Ca::new("client-port CA");
    let files = write_files(&data.path().join("tls"), &ca, "node 1");
    let config = single_node(data.path(), tls_section(&files, Some(free_address()), None));
    let node = start_node(&config).await;
    let tls_addr = node.tls_client_addr.unwrap();

    let mut secure = tls_connect(tls_addr, &ca.pem()).await.unwrap();
    let () = call(&mut secure, &["SET", "over-tls", "sealed"]).await.unwrap();
    let value: String = call(&mut secure, &["GET", "over-tls"]).await.unwrap();
    assert_eq!(value, "sealed");
    // The plain port still serves, as before TLS.
    let mut plain = connect(node.client_addr).await;
    let value: String = call(&mut plain, &["GET", "over-tls"]).await.unwrap();
    assert_eq!(value, "sealed");
    // A client trusting another CA refuses the node's certificate.
    let stranger = Ca::new("another CA");
    assert!(tls_connect(tls_addr, &stranger.pem()).await.is_err());

    // A plain-text client on the TLS port: its RESP is not a TLS record, so the handshake fails
    // and the connection is closed at once.
    let started = Instant::now();
    let mut raw = tokio::net::TcpStream::connect(tls_addr).await.unwrap();
    raw.write_all(b"*1\r\n$4\r\nPING\r\n").await.unwrap();
    let mut reply = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut reply)).await;
    assert!(read.is_ok(), "a plain-text client on the TLS port was left hanging");
    assert!(!String::from_utf8_lossy(&reply).contains("PONG"), "{reply:?}");
    assert!(started.elapsed() < Duration::from_millis(900), "took {:?}", started.elapsed());
    // A client that sends nothing is closed when the handshake timeout (1 s here) expires.
    let started = Instant::now();
    let mut silent = tokio::net::TcpStream::connect(tls_addr).await.unwrap();
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut reply)).await;
    let waited = started.elapsed();
    assert!(read.is_ok(), "a silent client on the TLS port was left hanging");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "closed after {waited:?}"
    );

    redis_cli_over_tls(tls_addr, &files.2);
    let failed = node.metrics.tls_handshakes_failed.get();
    assert!(failed >= 2, "{failed} failed handshakes counted");
    node.shutdown().await;
}

/// `redis-cli --tls --cacert` (Debian's redis-tools 7) against the TLS port.
fn redis_cli_over_tls(tls_addr: SocketAddr, ca_path: &Path) {
    let help = match std::process::Command::new("redis-cli").arg("--help").output() {
        Ok(output) => {
            String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr)
        }
        Err(error) => {
            println!("skipping the redis-cli part: redis-cli cannot run ({error})");
            return;
        }
    };
    if !help.contains("--tls") {
        println!("skipping the redis-cli part: this redis-cli was built without --tls");
        return;
    }
    let run = |words: &[&str]| {
        let output = std::process::Command::new("redis-cli")
            .args(["--tls", "--cacert"])
            .arg(ca_path)
            .args(["-h", "127.0.0.1", "-p", &tls_addr.port().to_string()])
            .args(words)
            .output()
            .unwrap();
        assert!(output.status.success(), "redis-cli {words:?}: {output:?}");
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    };
    assert_eq!(run(&["PING"]), "PONG");
    assert_eq!(run(&["SET", "from-cli", "over tls"]), "OK");
    assert_eq!(run(&["GET", "from-cli"]), "over tls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_tls_serves_the_new_certificate_to_new_connections_and_refuses_a_bad_file() {
    let data = tempfile::tempdir().unwrap();
    let first_ca = Ca::new("first CA");
    let files = write_files(&data.path().join("tls"), &first_ca, "node 1");
    let config = single_node(data.path(), tls_section(&files, Some(free_address()), None));
    let node = start_node(&config).await;
    let tls_addr = node.tls_client_addr.unwrap();
    let before = node.tls.as_ref().unwrap().fingerprint();
    let mut old_connection = tls_connect(tls_addr, &first_ca.pem()).await.unwrap();
    let () = call(&mut old_connection, &["SET", "k", "v"]).await.unwrap();

    // New files from another CA, then `ringkv admin reload-tls`, over the TLS port itself.
    let second_ca = Ca::new("second CA");
    write_files(&data.path().join("tls"), &second_ca, "node 1 renewed");
    let target = AdminTarget {
        addr: Some(tls_addr),
        tls_ca_pem: Some(first_ca.pem().into_bytes()),
        ..AdminTarget::default()
    };
    let reloaded = admin::run_with(&target, AdminRequest::ReloadTls).await.unwrap();
    let after = node.tls.as_ref().unwrap().fingerprint();
    assert_ne!(before, after);
    assert!(reloaded.contains(&after), "{reloaded}");
    let mut renewed = tls_connect(tls_addr, &second_ca.pem()).await.unwrap();
    let value: String = call(&mut renewed, &["GET", "k"]).await.unwrap();
    assert_eq!(value, "v");
    assert!(tls_connect(tls_addr, &first_ca.pem()).await.is_err(), "the old certificate is served");
    // A connection opened before the reload goes on.
    let value: String = call(&mut old_connection, &["GET", "k"]).await.unwrap();
    assert_eq!(value, "v");

    // A broken certificate file is refused with its field and path; the renewed one stays.
    std::fs::write(&files.0, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    let refused = admin::run(node.client_addr, None, AdminRequest::ReloadTls).await.unwrap_err();
    assert!(refused.contains("tls.cert_pem"), "{refused}");
    assert!(refused.contains(&files.0.display().to_string()), "{refused}");
    assert_eq!(node.tls.as_ref().unwrap().fingerprint(), after);
    let mut still = tls_connect(tls_addr, &second_ca.pem()).await.unwrap();
    let value: String = call(&mut still, &["GET", "k"]).await.unwrap();
    assert_eq!(value, "v");
    node.shutdown().await;
}

/// Warnings logged by every node of this test binary.
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_warnings() {
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(|| LogWriter)
        .try_init();
}

fn logged() -> String {
    String::from_utf8_lossy(&LOG.lock().unwrap()).into_owned()
}

/// Configurations of a cluster whose peer links are mutual TLS with `peer_ca`, each node with
/// the certificate of the CA `issuers[i]` names.
fn mutual_tls_cluster(data: &Path, issuers: &[&Ca], peer_ca: &Ca) -> Vec<NodeFileConfig> {
    let mut configs = cluster_configs(issuers.len() as u32, data);
    let peer_ca_path = data.join("peer-ca.pem");
    std::fs::write(&peer_ca_path, peer_ca.pem()).unwrap();
    for (config, issuer) in configs.iter_mut().zip(issuers) {
        let name = format!("node {}", config.node_id);
        let files = write_files(&data.join(format!("tls{}", config.node_id)), issuer, &name);
        config.tls = Some(tls_section(&files, None, Some(&peer_ca_path)));
    }
    configs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_over_mutual_tls_reach_quorum_and_every_replica() {
    let data = tempfile::tempdir().unwrap();
    let ca = Ca::new("peer CA");
    let configs = mutual_tls_cluster(data.path(), &[&ca, &ca, &ca], &ca);
    // Returns once a write at ALL succeeded: all six links are up, over TLS and the secret.
    let nodes = ringkv_tests::start_writable_cluster(&configs).await;
    for (index, node) in nodes.iter().enumerate() {
        let mut connection = connect(node.client_addr).await;
        let key = format!("key-{index}");
        let () = call(&mut connection, &["SET", &key, "replicated"]).await.unwrap();
    }
    let mut last = connect(nodes[2].client_addr).await;
    for index in 0..nodes.len() {
        let key = format!("key-{index}");
        let (_, values): (String, Vec<String>) =
            call(&mut last, &["RK.GETALL", &key, "ALL"]).await.unwrap();
        assert_eq!(values, vec!["replicated"], "{key}");
    }
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_a_certificate_of_another_ca_is_refused_and_logged() {
    capture_warnings();
    let data = tempfile::tempdir().unwrap();
    let ca = Ca::new("peer CA");
    let rogue_ca = Ca::new("rogue CA");
    let configs = mutual_tls_cluster(data.path(), &[&ca, &ca, &rogue_ca], &ca);
    let mut nodes = Vec::new();
    for config in &configs {
        nodes.push(start_node(config).await);
    }
    let rogue_addr = configs[2].peer_addr;

    // Nodes 1 and 2 make a quorum of three between them; node 3 is never reached, so ALL fails.
    let mut first = connect(nodes[0].client_addr).await;
    let mut written = false;
    for _ in 0..100 {
        if call::<()>(&mut first, &["SET", "good", "1"]).await.is_ok() {
            written = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(written, "nodes 1 and 2 never made a quorum");
    let at_all: redis::RedisResult<String> =
        call(&mut first, &["RK.PUT", "everywhere", "1", "-", "ALL"]).await;
    assert!(at_all.is_err(), "a write at ALL reached the rogue node: {at_all:?}");
    // The rogue node reaches no peer, so none of its writes reaches a quorum.
    let mut rogue = connect(nodes[2].client_addr).await;
    for _ in 0..3 {
        let refused: redis::RedisResult<()> = call(&mut rogue, &["SET", "rogue", "1"]).await;
        assert!(refused.is_err(), "the rogue node's write reached a quorum");
    }
    // Node 1 and 2 dialled the rogue node and refused its certificate, naming its address.
    let log = logged();
    let refusal = log
        .lines()
        .find(|line| {
            line.contains("peer TLS handshake refused") && line.contains(&rogue_addr.to_string())
        })
        .unwrap_or_else(|| panic!("no refusal of {rogue_addr} logged:\n{log}"));
    assert!(refusal.contains("WARN"), "{refusal}");
    assert!(refusal.contains("certificate"), "{refusal}");
    // And the rogue node's own dials were refused by their acceptors.
    assert!(log.contains("inbound peer TLS handshake refused"), "{log}");
    for node in nodes {
        node.shutdown().await;
    }
}

/// PING through a TLS connection to `address` trusting `ca_pem`, presenting `identity` (a
/// certificate and key in PEM) if given.
async fn ping_with_identity(
    address: SocketAddr,
    ca_pem: &str,
    identity: Option<(String, String)>,
) -> redis::RedisResult<String> {
    let info = redis::ConnectionInfo {
        addr: redis::ConnectionAddr::TcpTls {
            host: address.ip().to_string(),
            port: address.port(),
            insecure: false,
            tls_params: None,
        },
        redis: redis::RedisConnectionInfo::default(),
    };
    let certificates = redis::TlsCertificates {
        client_tls: identity.map(|(cert, key)| redis::ClientTlsConfig {
            client_cert: cert.into_bytes(),
            client_key: key.into_bytes(),
        }),
        root_cert: Some(ca_pem.as_bytes().to_vec()),
    };
    let client = redis::Client::build_with_tls(info, certificates)?;
    let ping = async {
        let mut connection = client.get_multiplexed_async_connection().await?;
        call::<String>(&mut connection, &["PING"]).await
    };
    tokio::time::timeout(Duration::from_secs(5), ping)
        .await
        .unwrap_or_else(|_| panic!("the TLS connection to {address} hung"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_ca_admits_only_clients_presenting_a_certificate_it_signed() {
    ringkv_net::tls::install_crypto_provider();
    let data = tempfile::tempdir().unwrap();
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let files = write_files(&data.path().join("tls"), &server_ca, "node 1");
    let client_ca_path = data.path().join("client-ca.pem");
    std::fs::write(&client_ca_path, client_ca.pem()).unwrap();
    let mut tls = tls_section(&files, Some(free_address()), None);
    tls.client_ca_pem = Some(client_ca_path);
    let node = start_node(&single_node(data.path(), tls)).await;
    let tls_addr = node.tls_client_addr.unwrap();

    let pong = ping_with_identity(tls_addr, &server_ca.pem(), Some(client_ca.issue("app"))).await;
    assert_eq!(pong.unwrap(), "PONG");
    let anonymous = ping_with_identity(tls_addr, &server_ca.pem(), None).await;
    assert!(anonymous.is_err(), "a client without a certificate got {anonymous:?}");
    let stranger = Ca::new("stranger CA").issue("intruder");
    let refused = ping_with_identity(tls_addr, &server_ca.pem(), Some(stranger)).await;
    assert!(refused.is_err(), "a client with another CA's certificate got {refused:?}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_peer_tls_the_cluster_secret_is_still_required() {
    let data = tempfile::tempdir().unwrap();
    let ca = Ca::new("peer CA");
    let mut configs = mutual_tls_cluster(data.path(), &[&ca, &ca, &ca], &ca);
    // Node 3's certificate is good, its secret is not: TLS succeeds, the HMAC handshake fails.
    configs[2].cluster_secret = "not-the-cluster-secret".into();
    let mut nodes = Vec::new();
    for config in &configs {
        nodes.push(start_node(config).await);
    }
    let mut first = connect(nodes[0].client_addr).await;
    let mut written = false;
    for _ in 0..100 {
        if call::<()>(&mut first, &["SET", "good", "1"]).await.is_ok() {
            written = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(written, "nodes 1 and 2 never made a quorum");
    let at_all: redis::RedisResult<String> =
        call(&mut first, &["RK.PUT", "everywhere", "1", "-", "ALL"]).await;
    assert!(at_all.is_err(), "a write at ALL reached the node without the secret: {at_all:?}");
    let mut outsider = connect(nodes[2].client_addr).await;
    let refused: redis::RedisResult<()> = call(&mut outsider, &["SET", "outsider", "1"]).await;
    assert!(refused.is_err(), "the node without the secret reached a quorum");
    // The links were refused by the secret, not by TLS: no handshake failed.
    assert_eq!(nodes[0].metrics.tls_handshakes_failed.get(), 0);
    for node in nodes {
        node.shutdown().await;
    }
}
