//! Real `ringkv node` processes on loopback: kill -9 during a write load, SIGTERM for a clean
//! stop, and restarts from disk.

// Test helpers fail the test loudly on any setup error; that is what unwrap does here.
#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use redis::AsyncCommands;

fn free_address() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

struct Cluster {
    client: Vec<SocketAddr>,
    configs: Vec<std::path::PathBuf>,
    children: Vec<Option<Child>>,
    members: String,
}

impl Cluster {
    fn new(root: &Path, nodes: u32) -> Cluster {
        let peers: Vec<SocketAddr> = (0..nodes).map(|_| free_address()).collect();
        let client: Vec<SocketAddr> = (0..nodes).map(|_| free_address()).collect();
        let members = peers
            .iter()
            .enumerate()
            .map(|(i, peer)| format!("(id: {}, peer_addr: \"{peer}\")", i + 1))
            .collect::<Vec<_>>()
            .join(", ");
        let mut configs = Vec::new();
        for index in 0..nodes as usize {
            let path = root.join(format!("node{}.ron", index + 1));
            let text = format!(
                "(node_id: {}, cluster: \"proc\", cluster_secret: \"process-test-secret-0123\", client_addr: \"{}\", peer_addr: \"{}\", members: [{members}], data_dir: \"{}\", log_level: \"warn\")",
                index + 1,
                client[index],
                peers[index],
                root.join(format!("data{}", index + 1)).display()
            );
            std::fs::write(&path, text).unwrap();
            configs.push(path);
        }
        let mut cluster = Cluster { client, configs, children: Vec::new(), members };
        for index in 0..nodes as usize {
            let child = cluster.spawn(index);
            cluster.children.push(Some(child));
        }
        cluster
    }

    /// Adds a node that joins the running cluster; returns its index.
    fn add_joiner(&mut self, root: &Path) -> usize {
        let index = self.configs.len();
        let client = free_address();
        let path = root.join(format!("node{}.ron", index + 1));
        let text = format!(
            "(node_id: {}, cluster: \"proc\", cluster_secret: \"process-test-secret-0123\", client_addr: \"{client}\", peer_addr: \"{}\", members: [{}], data_dir: \"{}\", log_level: \"warn\", join: true)",
            index + 1,
            free_address(),
            self.members,
            root.join(format!("data{}", index + 1)).display()
        );
        std::fs::write(&path, text).unwrap();
        self.configs.push(path);
        self.client.push(client);
        let child = self.spawn(index);
        self.children.push(Some(child));
        index
    }

    fn spawn(&self, index: usize) -> Child {
        Command::new(env!("CARGO_BIN_EXE_ringkv"))
            .args(["node", "--config"])
            .arg(&self.configs[index])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn kill_9(&mut self, index: usize) {
        let mut child = self.children[index].take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn terminate(&mut self, index: usize) {
        let mut child = self.children[index].take().unwrap();
        let status =
            Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let exit = child.wait().unwrap();
        assert!(exit.success(), "SIGTERM should stop the node cleanly, got {exit}");
    }

    fn restart(&mut self, index: usize) {
        self.children[index] = Some(self.spawn(index));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn connect(address: SocketAddr) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(format!("redis://{address}/")).unwrap();
    for _ in 0..100 {
        if let Ok(connection) = client.get_multiplexed_async_connection().await {
            return connection;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cannot connect to {address}");
}

async fn wait_until_writable_at_all(connection: &mut redis::aio::MultiplexedConnection) {
    for _ in 0..200 {
        let result: redis::RedisResult<String> = redis::cmd("RK.PUT")
            .arg("__ready")
            .arg("1")
            .arg("-")
            .arg("ALL")
            .query_async(connection)
            .await;
        if result.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cluster never became writable at ALL");
}

async fn epoch(connection: &mut redis::aio::MultiplexedConnection) -> i64 {
    let status: Vec<redis::Value> = redis::cmd("RK.STATUS").query_async(connection).await.unwrap();
    match &status[3] {
        redis::Value::Int(epoch) => *epoch,
        other => panic!("unexpected epoch {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_quorum_writes_loses_no_acknowledged_write() {
    let root = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::new(root.path(), 3);
    let mut writer = connect(cluster.client[0]).await;
    wait_until_writable_at_all(&mut writer).await;
    let mut acknowledged = Vec::new();
    for index in 0..300 {
        if index == 100 {
            cluster.kill_9(2);
        }
        if index == 200 {
            cluster.restart(2);
        }
        let result: redis::RedisResult<()> =
            writer.set(format!("key{index}"), format!("value{index}")).await;
        if result.is_ok() {
            acknowledged.push(index);
        }
    }
    assert!(
        acknowledged.len() >= 290,
        "{} of 300 QUORUM writes succeeded with one node killed",
        acknowledged.len()
    );
    let mut reader = connect(cluster.client[2]).await;
    wait_until_writable_at_all(&mut reader).await;
    for index in acknowledged {
        let value: Option<String> = reader.get(format!("key{index}")).await.unwrap();
        assert_eq!(value, Some(format!("value{index}")), "acknowledged write {index} lost");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_node_cleanly_and_its_restart_keeps_data_and_epoch() {
    let root = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::new(root.path(), 3);
    let mut connection = connect(cluster.client[1]).await;
    wait_until_writable_at_all(&mut connection).await;
    let before = epoch(&mut connection).await;
    for index in 0..50 {
        let () = connection.set(format!("k{index}"), index).await.unwrap();
    }
    drop(connection);
    cluster.terminate(1);
    cluster.restart(1);
    let mut connection = connect(cluster.client[1]).await;
    wait_until_writable_at_all(&mut connection).await;
    assert_eq!(epoch(&mut connection).await, before, "a clean shutdown must keep the epoch");
    // At ONE the restarted node answers from its own disk.
    let () = redis::cmd("RK.CONSISTENCY").arg("ONE").query_async(&mut connection).await.unwrap();
    let value: Option<i64> = connection.get("k42").await.unwrap();
    assert_eq!(value, Some(42), "the node's own copy survived the restart");
}

async fn membership(connection: &mut redis::aio::MultiplexedConnection) -> Vec<String> {
    let status: Vec<redis::Value> = redis::cmd("RK.STATUS").query_async(connection).await.unwrap();
    let Some(redis::Value::Array(entries)) = status.get(9) else { return Vec::new() };
    entries
        .iter()
        .filter_map(|entry| match entry {
            redis::Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).to_string()),
            _ => None,
        })
        .collect()
}

async fn wait_for_status(connection: &mut redis::aio::MultiplexedConnection, wanted: &str) {
    for _ in 0..600 {
        if membership(connection).await.iter().any(|entry| entry == wanted) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never saw {wanted}: {:?}", membership(connection).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_a_running_cluster_and_a_founder_decommissions_without_losing_data() {
    let root = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::new(root.path(), 3);
    let mut writer = connect(cluster.client[0]).await;
    wait_until_writable_at_all(&mut writer).await;
    for index in 0..100 {
        let () = writer.set(format!("key{index}"), index).await.unwrap();
    }
    let joiner = cluster.add_joiner(root.path());
    let mut newcomer = connect(cluster.client[joiner]).await;
    wait_for_status(&mut newcomer, "4:normal").await;
    wait_for_status(&mut writer, "4:normal").await;
    for index in 0..100 {
        let value: Option<i64> = newcomer.get(format!("key{index}")).await.unwrap();
        assert_eq!(value, Some(index), "key{index} through the new node");
    }
    let () = redis::cmd("RK.DECOMMISSION").query_async(&mut writer).await.unwrap();
    let mut observer = connect(cluster.client[1]).await;
    wait_for_status(&mut observer, "1:left").await;
    for index in 0..100 {
        let value: Option<i64> = observer.get(format!("key{index}")).await.unwrap();
        assert_eq!(value, Some(index), "key{index} after n1 left");
    }
}
