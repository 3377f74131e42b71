//! The `ringkv` binary as an operator runs it: `ringkv hash-password` and a node reloading its
//! TLS files on SIGHUP.

// Test helpers fail the test loudly on any setup error; that is what unwrap does here.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ringkv_net::config::{Access, UserFileConfig};
use ringkv_net::users::Users;

const RINGKV: &str = env!("CARGO_BIN_EXE_ringkv");

fn hash_with_the_binary(input: &str) -> std::process::Output {
    let mut child = Command::new(RINGKV)
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn hash_password_prints_an_argon2id_hash_of_the_line_read_from_stdin() {
    let output = hash_with_the_binary("s3cret pass\n");
    assert!(output.status.success(), "{output:?}");
    let hash = String::from_utf8(output.stdout).unwrap().trim().to_string();
    assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
    let user = UserFileConfig { name: "app".into(), password_hash: hash, access: Access::ReadOnly };
    let users = Users::new(None, &[user]);
    assert!(users.verify("app", b"s3cret pass").await.is_some());
    assert!(users.verify("app", b"s3cret pass\n").await.is_none(), "the line end was kept");

    let empty = hash_with_the_binary("\n");
    assert_eq!(empty.status.code(), Some(2), "{empty:?}");
    assert!(String::from_utf8_lossy(&empty.stderr).contains("empty"), "{empty:?}");
}

/// A throw-away CA and a leaf for 127.0.0.1 written to `directory`; returns the CA's PEM.
fn write_certificates(directory: &Path, ca_name: &str) -> String {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, ca_name);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = params.self_signed(&ca_key).unwrap();
    let leaf_params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    std::fs::write(directory.join("cert.pem"), leaf.pem()).unwrap();
    std::fs::write(directory.join("key.pem"), leaf_key.serialize_pem()).unwrap();
    ca.pem()
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// Whether a TLS client trusting `ca_pem` gets PONG from `address`.
async fn tls_ping(address: SocketAddr, ca_pem: &str) -> bool {
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
    let client = redis::Client::build_with_tls(info, certificates).unwrap();
    let ping = async {
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut connection).await
    };
    matches!(tokio::time::timeout(Duration::from_secs(3), ping).await, Ok(Ok(pong)) if pong == "PONG")
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never: {what}");
}

/// Sends SIGHUP to `child` through the shell's built-in `kill` (std can only send SIGKILL, and a
/// minimal machine may lack the `kill` program).
fn hang_up(child: &std::process::Child) {
    let command = format!("kill -HUP {}", child.id());
    let status = Command::new("sh").arg("-c").arg(command).status().unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_tls_files_and_a_bad_file_keeps_the_old_certificate() {
    let directory = tempfile::tempdir().unwrap();
    let first_ca = write_certificates(directory.path(), "first CA");
    let (client_addr, peer_addr, tls_addr) = (free_port(), free_port(), free_port());
    let config = format!(
        r#"(node_id: 1, cluster: "sighup", cluster_secret: "sighup-cluster-secret",
            client_addr: "{client_addr}", peer_addr: "{peer_addr}",
            members: [(id: 1, peer_addr: "{peer_addr}")], replicas_n: 1,
            data_dir: "{data}", durability: Interval(20),
            tls: Some((cert_pem: "{dir}/cert.pem", key_pem: "{dir}/key.pem",
                       client_addr: Some("{tls_addr}"))))"#,
        data = directory.path().join("data").display(),
        dir = directory.path().display(),
    );
    let config_path = directory.path().join("node.ron");
    std::fs::write(&config_path, config).unwrap();
    let log_path = directory.path().join("node.log");
    let mut child = Command::new(RINGKV)
        .arg("node")
        .arg("--config")
        .arg(&config_path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();

    eventually("the node serves TLS", async || tls_ping(tls_addr, &first_ca).await).await;
    let second_ca = write_certificates(directory.path(), "second CA");
    hang_up(&child);
    eventually("the node serves the new certificate", async || {
        tls_ping(tls_addr, &second_ca).await
    })
    .await;
    assert!(!tls_ping(tls_addr, &first_ca).await, "the old certificate is still served");

    std::fs::write(directory.path().join("key.pem"), "garbage").unwrap();
    hang_up(&child);
    eventually("the refusal is logged", async || {
        std::fs::read_to_string(&log_path).unwrap().contains("TLS reload refused")
    })
    .await;
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("tls.key_pem"), "{log}");
    assert!(tls_ping(tls_addr, &second_ca).await, "the reloaded certificate was dropped");
    child.kill().unwrap();
    child.wait().unwrap();
}
