//! `ringkv admin`: asks a running node over its client port (RESP, through the `redis` client)
//! and turns the reply into text for an operator.

use std::net::SocketAddr;
use std::time::Duration;

use redis::Value;

/// What `ringkv admin` asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminRequest {
    /// The node's id, epoch, readiness and the members it knows.
    Status,
    /// Each member's share of the ring as primary replica.
    Ring,
    /// The node leaves: it streams its ranges to their next owners.
    Decommission,
    /// A dead node is declared removed.
    Remove {
        /// The dead node's id.
        node: u32,
    },
    /// The node reads its TLS files again (`RK.RELOADTLS`).
    ReloadTls,
}

/// Which node `ringkv admin` asks, and how it logs in.
#[derive(Debug, Clone, Default)]
pub struct AdminTarget {
    /// The node's client address (its plain or its TLS port).
    pub addr: Option<SocketAddr>,
    /// The user to log in as; `None` is `default`.
    pub user: Option<String>,
    /// The user's password, if it needs one.
    pub password: Option<String>,
    /// PEM of the CA that signed the node's certificate: connect with TLS, verifying against it.
    pub tls_ca_pem: Option<Vec<u8>>,
    /// The name the node's certificate must carry under TLS; `None` uses the address's IP.
    pub tls_server_name: Option<String>,
}

/// How long a node has to answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends `request` to the node whose client port is `addr` (authenticating with `password` if
/// given) and returns what to print, or an error that says what went wrong.
pub async fn run(
    addr: SocketAddr,
    password: Option<String>,
    request: AdminRequest,
) -> Result<String, String> {
    run_with(&AdminTarget { addr: Some(addr), password, ..AdminTarget::default() }, request).await
}

/// Sends `request` to `target` (see [`AdminTarget`]) and returns what to print.
pub async fn run_with(target: &AdminTarget, request: AdminRequest) -> Result<String, String> {
    let mut connection = connect(target).await?;
    let addr = target.addr.ok_or_else(|| "no node address given".to_string())?;
    let exchange = async {
        let command = match request {
            AdminRequest::Status => redis::cmd("RK.STATUS"),
            AdminRequest::Ring => redis::cmd("RK.RING"),
            AdminRequest::Decommission => redis::cmd("RK.DECOMMISSION"),
            AdminRequest::Remove { node } => {
                let mut command = redis::cmd("RK.REMOVE");
                command.arg(node);
                command
            }
            AdminRequest::ReloadTls => redis::cmd("RK.RELOADTLS"),
        };
        command.query_async::<Value>(&mut connection).await
    };
    let reply = tokio::time::timeout(REPLY_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("{addr} did not answer within {} s", REPLY_TIMEOUT.as_secs()))?
        .map_err(|error| explain(addr, &error))?;
    match request {
        AdminRequest::Status => status_text(&reply),
        AdminRequest::Ring => ring_text(&reply),
        AdminRequest::Decommission => Ok(format!(
            "node at {addr} is leaving: it streams its ranges to their next owners, then leaves \
             the ring (`ringkv admin --addr {addr} status` shows it as leaving, then left)"
        )),
        AdminRequest::Remove { node } => Ok(format!(
            "node {node} is removed: its ranges are rebuilt on their new owners by anti-entropy"
        )),
        AdminRequest::ReloadTls => Ok(format!(
            "node at {addr} reloaded its TLS files; new connections get the certificate with \
             SHA-256 fingerprint {}",
            text_of(&reply).unwrap_or_else(|| format!("{reply:?}"))
        )),
    }
}

/// A connection to `target` for an operator's tool (plain or TLS, logged in as its user), or an
/// error an operator can act on.
pub async fn connect(target: &AdminTarget) -> Result<redis::aio::MultiplexedConnection, String> {
    let addr = target.addr.ok_or_else(|| "no node address given".to_string())?;
    let redis_info = redis::RedisConnectionInfo {
        username: target.user.clone(),
        password: target.password.clone(),
        ..Default::default()
    };
    let client = match &target.tls_ca_pem {
        None => {
            let info = redis::ConnectionInfo {
                addr: redis::ConnectionAddr::Tcp(addr.ip().to_string(), addr.port()),
                redis: redis_info,
            };
            redis::Client::open(info)
        }
        Some(ca_pem) => {
            crate::tls::install_crypto_provider();
            let host = target.tls_server_name.clone().unwrap_or_else(|| addr.ip().to_string());
            let info = redis::ConnectionInfo {
                addr: redis::ConnectionAddr::TcpTls {
                    host,
                    port: addr.port(),
                    insecure: false,
                    tls_params: None,
                },
                redis: redis_info,
            };
            let certificates =
                redis::TlsCertificates { client_tls: None, root_cert: Some(ca_pem.clone()) };
            redis::Client::build_with_tls(info, certificates)
        }
    }
    .map_err(|error| error.to_string())?;
    tokio::time::timeout(REPLY_TIMEOUT, client.get_multiplexed_async_connection())
        .await
        .map_err(|_| format!("{addr} did not answer within {} s", REPLY_TIMEOUT.as_secs()))?
        .map_err(|error| explain(addr, &error))
}

/// An operator's reading of a client error.
fn explain(addr: SocketAddr, error: &redis::RedisError) -> String {
    let text = error.to_string();
    if text.contains("NOAUTH")
        || text.contains("WRONGPASS")
        || error.kind() == redis::ErrorKind::AuthenticationFailed
    {
        format!("{addr} refused: {text} (give the node's password with --password, and --user for a named user)")
    } else if error.is_connection_refusal() {
        format!("cannot connect to {addr}: no node listens there ({text})")
    } else {
        format!("{addr}: {text}")
    }
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(text) => Some(text.clone()),
        Value::Int(number) => Some(number.to_string()),
        _ => None,
    }
}

/// The fields of a map reply, which RESP2 sends as a flat list of names and values.
fn fields(reply: &Value) -> Result<Vec<(String, &Value)>, String> {
    let pairs: Vec<(&Value, &Value)> = match reply {
        Value::Map(pairs) => pairs.iter().map(|(name, value)| (name, value)).collect(),
        Value::Array(items) if items.len() % 2 == 0 => {
            items.chunks(2).map(|pair| (&pair[0], &pair[1])).collect()
        }
        other => return Err(format!("unexpected status reply {other:?}")),
    };
    pairs
        .into_iter()
        .map(|(name, value)| {
            text_of(name).map(|name| (name, value)).ok_or_else(|| format!("bad field {name:?}"))
        })
        .collect()
}

fn list_of(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) | Value::Set(items) => items.iter().filter_map(text_of).collect(),
        _ => Vec::new(),
    }
}

/// `RK.STATUS` as lines of text.
fn status_text(reply: &Value) -> Result<String, String> {
    let fields = fields(reply)?;
    let field = |name: &str| fields.iter().find(|(field, _)| field == name).map(|(_, v)| *v);
    let scalar = |name: &str| field(name).and_then(text_of).unwrap_or_else(|| "?".into());
    let flag = |name: &str, yes: &str, no: &str| match scalar(name).as_str() {
        "1" => yes.to_string(),
        "0" => no.to_string(),
        other => format!("{name} {other}"),
    };
    let members = field("members").map(list_of).unwrap_or_default();
    let membership: Vec<String> = field("membership")
        .map(list_of)
        .unwrap_or_default()
        .into_iter()
        .map(|entry| entry.replacen(':', " ", 1))
        .collect();
    let mut text = format!(
        "node {} (epoch {}): {}, {}\nring members: {}\nmembership (gossip): {}",
        scalar("node"),
        scalar("epoch"),
        flag("ready", "ready", "not ready (starting)"),
        flag("rebuilding", "rebuilding (answers no reads until refilled)", "not rebuilding"),
        if members.is_empty() { "none".into() } else { members.join(", ") },
        if membership.is_empty() { "none".into() } else { membership.join(", ") },
    );
    // Nodes of before datacenters send none of these; their status reads as it did.
    if let Some(location) = field("location").and_then(text_of) {
        text.push_str(&format!("\nlocation: {location}"));
    }
    let datacenters = field("datacenters").map(list_of).unwrap_or_default();
    for entry in datacenters {
        let (datacenter, nodes) = entry.split_once(':').unwrap_or((entry.as_str(), ""));
        let nodes: Vec<&str> = nodes.split(',').filter(|node| !node.is_empty()).collect();
        text.push_str(&format!(
            "\ndatacenter {datacenter}: {} nodes ({})",
            nodes.len(),
            nodes.iter().map(|node| node.replacen('@', " on ", 1)).collect::<Vec<_>>().join(", ")
        ));
    }
    let keyspaces = field("keyspaces").map(list_of).unwrap_or_default();
    if !keyspaces.is_empty() {
        text.push_str(&format!("\nkeyspaces: {}", keyspaces.join("; ")));
    }
    Ok(text)
}

/// `RK.RING` as a table of shares per node, with each node's datacenter and rack, then the
/// totals per datacenter. A row of an older node (node and primary share only) shows no
/// location.
fn ring_text(reply: &Value) -> Result<String, String> {
    let Value::Array(rows) = reply else { return Err(format!("unexpected ring reply {reply:?}")) };
    let percent = |share: &str| share.parse::<f64>().map(|share| share * 100.0).unwrap_or(f64::NAN);
    let mut text = String::from("node  datacenter  rack        primary share  replica share");
    let mut totals: std::collections::BTreeMap<String, (usize, f64, f64)> =
        std::collections::BTreeMap::new();
    for row in rows {
        let cells = list_of(row);
        let (node, primary, datacenter, rack, replica) = match cells.as_slice() {
            [node, primary] => (node, primary, "?", "?", None),
            [node, primary, datacenter, rack, replica] => {
                (node, primary, datacenter.as_str(), rack.as_str(), Some(replica))
            }
            _ => return Err(format!("unexpected ring row {row:?}")),
        };
        let replica_text =
            replica.map_or_else(|| "?".to_string(), |share| format!("{:.1}%", percent(share)));
        text.push_str(&format!(
            "\n{node:<5} {datacenter:<11} {rack:<11} {:>12.1}% {replica_text:>14}",
            percent(primary)
        ));
        let total = totals.entry(datacenter.to_string()).or_default();
        total.0 += 1;
        total.1 += percent(primary);
        total.2 += replica.map_or(0.0, |share| percent(share));
    }
    if totals.len() > 1 || totals.keys().any(|datacenter| datacenter != "?") {
        for (datacenter, (nodes, primary, replica)) in totals {
            text.push_str(&format!(
                "\ndatacenter {datacenter}: {nodes} nodes, primary {primary:.1}%, replicas \
                 {replica:.1}% (100% per replica kept there)"
            ));
        }
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn a_status_reply_reads_as_text() {
        let reply = Value::Array(vec![
            bulk("node"),
            Value::Int(2),
            bulk("epoch"),
            Value::Int(77),
            bulk("ready"),
            Value::Int(1),
            bulk("members"),
            Value::Array(vec![Value::Int(1), Value::Int(2), Value::Int(3)]),
            bulk("membership"),
            Value::Array(vec![bulk("1:normal"), bulk("2:normal"), bulk("3:leaving")]),
            bulk("rebuilding"),
            Value::Int(0),
        ]);
        assert_eq!(
            status_text(&reply).unwrap(),
            "node 2 (epoch 77): ready, not rebuilding\nring members: 1, 2, 3\n\
             membership (gossip): 1 normal, 2 normal, 3 leaving"
        );
        let Value::Array(mut fields) = reply else { panic!("the reply above is an array") };
        fields.extend([
            bulk("location"),
            bulk("dc1/r2"),
            bulk("datacenters"),
            Value::Array(vec![bulk("dc1:1@r1,2@r2"), bulk("dc2:3@r1")]),
            bulk("keyspaces"),
            Value::Array(vec![bulk("default db=0 replicas=3 (selected)")]),
        ]);
        let text = status_text(&Value::Array(fields)).unwrap();
        assert!(
            text.ends_with(
                "\nlocation: dc1/r2\ndatacenter dc1: 2 nodes (1 on r1, 2 on r2)\n\
                 datacenter dc2: 1 nodes (3 on r1)\nkeyspaces: default db=0 replicas=3 (selected)"
            ),
            "{text}"
        );
        assert!(status_text(&Value::Int(3)).is_err());
    }

    #[test]
    fn a_ring_reply_reads_as_a_table_of_percentages() {
        let reply = Value::Array(vec![
            Value::Array(vec![Value::Int(1), bulk("0.3831")]),
            Value::Array(vec![Value::Int(2), bulk("0.6169")]),
        ]);
        assert_eq!(
            ring_text(&reply).unwrap(),
            "node  datacenter  rack        primary share  replica share\n\
             1     ?           ?                   38.3%              ?\n\
             2     ?           ?                   61.7%              ?"
        );
        let located = Value::Array(vec![
            Value::Array(vec![Value::Int(1), bulk("0.5"), bulk("east"), bulk("r1"), bulk("1.0")]),
            Value::Array(vec![Value::Int(2), bulk("0.5"), bulk("west"), bulk("r1"), bulk("1.0")]),
        ]);
        let text = ring_text(&located).unwrap();
        assert!(
            text.contains("\n1     east        r1                  50.0%         100.0%"),
            "{text}"
        );
        assert!(
            text.contains("datacenter west: 1 nodes, primary 50.0%, replicas 100.0%"),
            "{text}"
        );
        assert!(ring_text(&Value::Array(vec![Value::Int(1)])).is_err());
    }
}
