//! Users on real sockets: `AUTH name password` against argon2 hashes from the configuration,
//! read-only users refused writes with Redis's `NOPERM`, `ACL WHOAMI` / `ACL LIST`, the
//! `default` user's plain password, and wrong passwords slowed down and cut off.

// Test helpers fail the test loudly on any setup error; that is what unwrap does here.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ringkv_net::config::{Access, NodeFileConfig, UserFileConfig};
use ringkv_net::users::hash_password;
use ringkv_tests::{call, cluster_configs, error_line, start_node};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One node (N = 1) with the plain default password `default-pass`, a read-only `reader`
/// (`r-pass`) and a read-write `writer` (`w-pass`).
fn node_with_users(data: &std::path::Path) -> NodeFileConfig {
    let mut config = cluster_configs(1, data).remove(0);
    config.replicas_n = 1;
    config.password = Some("default-pass".into());
    config.users = vec![
        UserFileConfig {
            name: "reader".into(),
            password_hash: hash_password("r-pass").unwrap(),
            access: Access::ReadOnly,
        },
        UserFileConfig {
            name: "writer".into(),
            password_hash: hash_password("w-pass").unwrap(),
            access: Access::ReadWrite,
        },
    ];
    config.validate().unwrap();
    config
}

async fn login(
    address: SocketAddr,
    user: &str,
    password: &str,
) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(format!("redis://{user}:{password}@{address}/")).unwrap();
    client.get_multiplexed_async_connection().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_user_reads_but_gets_noperm_on_writes_and_acl_names_the_users() {
    let data = tempfile::tempdir().unwrap();
    let node = start_node(&node_with_users(data.path())).await;
    let address = node.client_addr;

    let mut writer = login(address, "writer", "w-pass").await.unwrap();
    let () = call(&mut writer, &["SET", "shared", "from-writer"]).await.unwrap();
    let mut reader = login(address, "reader", "r-pass").await.unwrap();
    let value: String = call(&mut reader, &["GET", "shared"]).await.unwrap();
    assert_eq!(value, "from-writer");
    let refused = call::<()>(&mut reader, &["SET", "shared", "from-reader"]).await;
    assert_eq!(
        error_line(refused),
        "NOPERM User reader has no permissions to run the 'set' command"
    );
    let refused = call::<()>(&mut reader, &["FLUSHALL"]).await;
    assert_eq!(
        error_line(refused),
        "NOPERM User reader has no permissions to run the 'flushall' command"
    );
    // Pipelined commands take the concurrent path; the refusal holds there too.
    let (first, second): (String, String) = redis::pipe()
        .cmd("GET")
        .arg("shared")
        .cmd("ECHO")
        .arg("alive")
        .query_async(&mut reader)
        .await
        .unwrap();
    assert_eq!((first.as_str(), second.as_str()), ("from-writer", "alive"));
    let piped: redis::RedisResult<((), ())> =
        redis::pipe().cmd("DEL").arg("shared").cmd("INCR").arg("n").query_async(&mut reader).await;
    assert!(error_line(piped).starts_with("NOPERM User reader"));
    let value: String = call(&mut writer, &["GET", "shared"]).await.unwrap();
    assert_eq!(value, "from-writer", "a refused write changed the value");

    let whoami: String = call(&mut reader, &["ACL", "WHOAMI"]).await.unwrap();
    assert_eq!(whoami, "reader");
    let refused = call::<Vec<String>>(&mut reader, &["ACL", "LIST"]).await;
    assert_eq!(
        error_line(refused),
        "NOPERM User reader has no permissions to run the 'acl|list' command"
    );
    let whoami: String = call(&mut writer, &["ACL", "WHOAMI"]).await.unwrap();
    assert_eq!(whoami, "writer");
    let list: Vec<String> = call(&mut writer, &["ACL", "LIST"]).await.unwrap();
    assert_eq!(
        list,
        vec![
            "user default on ~* &* +@all",
            "user reader on ~* &* -@all +@read +@connection",
            "user writer on ~* &* +@all",
        ]
    );
    assert!(list.iter().all(|line| !line.contains("argon2")), "{list:?}");

    // No AUTH: NOAUTH, as before users existed; `AUTH password` is the default user.
    let mut anonymous = ringkv_tests::connect(address).await;
    let refused = call::<Option<String>>(&mut anonymous, &["GET", "shared"]).await;
    assert_eq!(error_line(refused), "NOAUTH Authentication required.");
    let () = call(&mut anonymous, &["AUTH", "default-pass"]).await.unwrap();
    let whoami: String = call(&mut anonymous, &["ACL", "WHOAMI"]).await.unwrap();
    assert_eq!(whoami, "default");
    let () = call(&mut anonymous, &["SET", "by-default", "1"]).await.unwrap();
    // A second AUTH switches the connection's user.
    let () = call(&mut anonymous, &["AUTH", "reader", "r-pass"]).await.unwrap();
    let refused = call::<()>(&mut anonymous, &["SET", "by-default", "2"]).await;
    assert!(error_line(refused).starts_with("NOPERM User reader"));
    assert!(login(address, "reader", "w-pass").await.is_err());
    assert!(login(address, "nobody", "r-pass").await.is_err());
    node.shutdown().await;
}

/// Sends `AUTH reader <password>` on `stream` and returns the reply line and how long it took.
async fn raw_auth(stream: &mut tokio::net::TcpStream, password: &str) -> (String, Duration) {
    let command =
        format!("*3\r\n$4\r\nAUTH\r\n$6\r\nreader\r\n${}\r\n{password}\r\n", password.len());
    let started = Instant::now();
    stream.write_all(command.as_bytes()).await.unwrap();
    let mut reply = vec![0u8; 256];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut reply))
        .await
        .unwrap()
        .unwrap();
    (String::from_utf8_lossy(&reply[..read]).into_owned(), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_are_answered_later_each_time_and_the_fifth_closes_the_connection() {
    let data = tempfile::tempdir().unwrap();
    let node = start_node(&node_with_users(data.path())).await;
    let mut stream = tokio::net::TcpStream::connect(node.client_addr).await.unwrap();
    let mut delays = Vec::new();
    for _ in 0..ringkv_net::server::AUTH_FAILURES_MAX {
        let (reply, took) = raw_auth(&mut stream, "guess").await;
        assert!(reply.starts_with("-WRONGPASS"), "{reply}");
        delays.push(took);
    }
    for (failure, took) in delays.iter().enumerate() {
        let floor = ringkv_net::server::AUTH_FAILURE_DELAY_FIRST * (1 << failure);
        assert!(
            *took >= floor,
            "failure {} answered after {took:?}, before {floor:?}",
            failure + 1
        );
    }
    // The fifth failure closed the connection.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(0))), "the connection stayed open: {read:?} {rest:?}");
    assert_eq!(node.metrics.auth_failures.get(), 5);

    // A right password after wrong ones logs in, and the delay starts over.
    let mut stream = tokio::net::TcpStream::connect(node.client_addr).await.unwrap();
    let (reply, _) = raw_auth(&mut stream, "guess").await;
    assert!(reply.starts_with("-WRONGPASS"), "{reply}");
    let (reply, _) = raw_auth(&mut stream, "r-pass").await;
    assert_eq!(reply, "+OK\r\n");
    let (_, first_again) = raw_auth(&mut stream, "guess").await;
    // Both include one argon2 check; the first failure's delay is half the second's.
    assert!(first_again < delays[1], "the delay did not start over: {first_again:?}");
    node.shutdown().await;
}
