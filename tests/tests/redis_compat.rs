//! The Redis commands beyond the core set, on a real 3-node cluster over loopback: through the
//! redis crate, and through redis-cli as a user types them (when redis-cli is installed; CI
//! installs Debian's redis-tools). Replies and errors are Redis 7's.

// Test helpers fail the test loudly on any setup error; that is what unwrap does here.
#![allow(clippy::unwrap_used)]

use std::time::{SystemTime, UNIX_EPOCH};

use redis::AsyncCommands;
use ringkv_tests::{call, cluster_configs, connect, error_line, start_writable_cluster};

fn unix_seconds() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_expiry_getex_getrange_and_introspection_behave_as_in_redis() {
    let data = tempfile::tempdir().unwrap();
    let nodes = start_writable_cluster(&cluster_configs(3, data.path())).await;
    let mut first = connect(nodes[0].client_addr).await;
    let mut second = connect(nodes[1].client_addr).await;

    // EXPIREAT / EXPIRETIME / PEXPIRETIME.
    let _: () = first.set("at", "v").await.unwrap();
    assert_eq!(call::<i64>(&mut second, &["EXPIRETIME", "at"]).await.unwrap(), -1);
    assert_eq!(call::<i64>(&mut second, &["EXPIRETIME", "absent"]).await.unwrap(), -2);
    let at = unix_seconds() + 100;
    assert_eq!(call::<i64>(&mut first, &["EXPIREAT", "at", &at.to_string()]).await.unwrap(), 1);
    let seen = call::<i64>(&mut second, &["EXPIRETIME", "at"]).await.unwrap();
    assert!((at - 1..=at + 1).contains(&seen), "EXPIRETIME {seen}, set {at}");
    let seen_ms = call::<i64>(&mut second, &["PEXPIRETIME", "at"]).await.unwrap();
    assert!((seen_ms - at * 1_000).abs() <= 1_000, "PEXPIRETIME {seen_ms}");
    let later = (at + 1_000).to_string();
    assert_eq!(call::<i64>(&mut first, &["EXPIREAT", "absent", &later]).await.unwrap(), 0);
    assert_eq!(
        error_line(call::<i64>(&mut first, &["EXPIREAT", "at", "soon"]).await),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        error_line(call::<i64>(&mut first, &["PEXPIREAT", "at", "9223372036854775807"]).await),
        "ERR invalid expire time in 'pexpireat' command"
    );
    // A time in the past deletes the key, as Redis does.
    assert_eq!(call::<i64>(&mut first, &["PEXPIREAT", "at", "1"]).await.unwrap(), 1);
    assert_eq!(second.get::<_, Option<String>>("at").await.unwrap(), None);

    // GETEX.
    let _: () = first.set("getex", "value").await.unwrap();
    assert_eq!(
        call::<Option<String>>(&mut second, &["GETEX", "getex", "EX", "100"]).await.unwrap(),
        Some("value".into())
    );
    let ttl: i64 = first.ttl("getex").await.unwrap();
    assert!((99..=100).contains(&ttl), "TTL after GETEX EX 100: {ttl}");
    assert_eq!(
        call::<Option<String>>(&mut second, &["GETEX", "getex", "PERSIST"]).await.unwrap(),
        Some("value".into())
    );
    assert_eq!(first.ttl::<_, i64>("getex").await.unwrap(), -1);
    assert_eq!(call::<Option<String>>(&mut first, &["GETEX", "nothing"]).await.unwrap(), None);
    assert_eq!(
        error_line(call::<Option<String>>(&mut first, &["GETEX", "getex", "EX", "0"]).await),
        "ERR invalid expire time in 'getex' command"
    );
    assert_eq!(
        error_line(call::<Option<String>>(&mut first, &["GETEX", "getex", "SOON", "1"]).await),
        "ERR syntax error"
    );

    // GETRANGE / SUBSTR, with Redis's documented examples.
    let _: () = first.set("range", "This is a string").await.unwrap();
    for (start, end, expected) in [
        ("0", "3", "This"),
        ("-3", "-1", "ing"),
        ("0", "-1", "This is a string"),
        ("10", "100", "string"),
        ("5", "3", ""),
    ] {
        let got: String = call(&mut second, &["GETRANGE", "range", start, end]).await.unwrap();
        assert_eq!(got, expected, "GETRANGE range {start} {end}");
    }
    assert_eq!(call::<String>(&mut second, &["SUBSTR", "range", "0", "3"]).await.unwrap(), "This");
    assert_eq!(call::<String>(&mut second, &["GETRANGE", "none", "0", "-1"]).await.unwrap(), "");

    // OBJECT ENCODING, CONFIG GET, COMMAND COUNT.
    let _: () = first.set("number", "12345").await.unwrap();
    assert_eq!(
        call::<String>(&mut second, &["OBJECT", "ENCODING", "number"]).await.unwrap(),
        "int"
    );
    assert_eq!(
        call::<String>(&mut second, &["OBJECT", "ENCODING", "range"]).await.unwrap(),
        "embstr"
    );
    assert_eq!(
        call::<Option<String>>(&mut second, &["OBJECT", "ENCODING", "none"]).await.unwrap(),
        None
    );
    let config: Vec<String> = call(&mut first, &["CONFIG", "GET", "databases"]).await.unwrap();
    assert_eq!(config, vec!["databases".to_string(), "1".to_string()]);
    let count: i64 = call(&mut first, &["COMMAND", "COUNT"]).await.unwrap();
    assert!(count > 40, "COMMAND COUNT {count}");

    // An unknown command, worded as Redis words it.
    assert_eq!(
        error_line(call::<String>(&mut first, &["NOSUCH", "a", "b"]).await),
        "ERR unknown command 'NOSUCH', with args beginning with: 'a' 'b' "
    );
    for node in nodes {
        node.shutdown().await;
    }
}

/// The same commands through redis-cli, as a user types them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_gets_redis_replies() {
    if std::process::Command::new("redis-cli").arg("--version").output().is_err() {
        eprintln!("SKIPPED: redis-cli is not installed (Debian: redis-tools)");
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let nodes = start_writable_cluster(&cluster_configs(3, data.path())).await;
    let port = nodes[0].client_addr.port().to_string();
    let cli = |args: &[&str]| {
        let output = std::process::Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).trim_end().to_string()
    };
    let cli = tokio::task::block_in_place(|| {
        vec![
            cli(&["SET", "cli", "hello world"]),
            cli(&["GETRANGE", "cli", "0", "4"]),
            cli(&["GETEX", "cli", "PX", "50000"]),
            cli(&["OBJECT", "ENCODING", "cli"]),
            cli(&["EXPIRETIME", "nothing"]),
            cli(&["CONFIG", "GET", "save"]),
            cli(&["NOSUCH", "x"]),
            cli(&["RENAME", "cli", "cli2"]),
            cli(&["COPY", "cli2", "cli3"]),
            cli(&["GET", "cli3"]),
            cli(&["FLUSHALL"]),
            cli(&["WAIT", "3", "1000"]),
        ]
    });
    assert_eq!(cli[0], "OK");
    assert_eq!(cli[1], "hello");
    assert_eq!(cli[2], "hello world");
    assert_eq!(cli[3], "embstr");
    // Not a terminal: redis-cli prints raw replies, a line each (the empty value trimmed).
    assert_eq!(cli[4], "-2");
    assert_eq!(cli[5], "save");
    assert_eq!(cli[6], "ERR unknown command 'NOSUCH', with args beginning with: 'x'");
    assert_eq!(cli[7], "OK");
    assert_eq!(cli[8], "1");
    assert_eq!(cli[9], "hello world");
    assert!(cli[10].starts_with("ERR flushall is disabled"), "{}", cli[10]);
    // Each redis-cli run is a new connection, with no write of its own to wait for.
    assert_eq!(cli[11], "3");
    for node in nodes {
        node.shutdown().await;
    }
}
