//! Test hosts in Linux network namespaces, for the nemesis test: one namespace per node, each
//! with a veth pair into a bridge in the root namespace (where the test's clients run), and
//! faults on peer traffic applied with iptables (and tc netem, where the kernel has it) inside
//! the namespaces. Needs root, `ip` (iproute2) and `iptables`; [`Hosts::create`] says why when
//! it cannot run.

use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Output};

/// The peer port every node listens on inside its namespace; faults match it, so client
/// traffic (to [`CLIENT_PORT`]) is never touched.
pub const PEER_PORT: u16 = 7000;
/// The client port every node listens on inside its namespace.
pub const CLIENT_PORT: u16 = 6379;

/// A set of namespaces joined by a bridge; removed on drop.
#[derive(Debug)]
pub struct Hosts {
    prefix: String,
    subnet: u8,
    count: usize,
    /// Whether `tc qdisc ... netem` works here (the sch_netem module).
    pub has_netem: bool,
}

fn run(program: &str, args: &[&str]) -> Result<Output, String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|error| format!("{program} {}: {error}", args.join(" ")))?;
    if !output.status.success() {
        return Err(format!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(output)
}

impl Hosts {
    /// Creates `count` hosts (1-based), or says why it cannot (not root, no `ip` or
    /// `iptables`, namespaces not permitted).
    pub fn create(count: usize) -> Result<Hosts, String> {
        let uid = run("id", &["-u"])?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return Err("the nemesis test needs root (network namespaces and iptables)".into());
        }
        run("iptables", &["--version"]).map_err(|error| format!("no iptables: {error}"))?;
        // Unique per process, so runs side by side do not collide; names stay under the
        // kernel's 15-byte interface name limit.
        let pid = std::process::id();
        let hosts = Hosts {
            prefix: format!("rk{}", pid % 100_000),
            subnet: (pid % 200) as u8 + 20,
            count,
            has_netem: false,
        };
        let bridge = hosts.bridge();
        run("ip", &["link", "add", &bridge, "type", "bridge"])
            .map_err(|error| format!("network namespaces are not permitted here: {error}"))?;
        let mut hosts = hosts;
        hosts.setup()?;
        hosts.has_netem = hosts
            .in_host(1, "tc", &["qdisc", "add", "dev", "eth0", "root", "netem", "delay", "1ms"])
            .is_ok();
        if hosts.has_netem {
            hosts.in_host(1, "tc", &["qdisc", "del", "dev", "eth0", "root"])?;
        }
        Ok(hosts)
    }

    fn bridge(&self) -> String {
        format!("{}br", self.prefix)
    }

    fn namespace(&self, host: usize) -> String {
        format!("{}n{host}", self.prefix)
    }

    fn setup(&self) -> Result<(), String> {
        let bridge = self.bridge();
        let gateway = format!("10.199.{}.254/24", self.subnet);
        run("ip", &["addr", "add", &gateway, "dev", &bridge])?;
        run("ip", &["link", "set", &bridge, "up"])?;
        for host in 1..=self.count {
            let namespace = self.namespace(host);
            let outside = format!("{}v{host}", self.prefix);
            run("ip", &["netns", "add", &namespace])?;
            run(
                "ip",
                &[
                    "link", "add", &outside, "type", "veth", "peer", "name", "eth0", "netns",
                    &namespace,
                ],
            )?;
            run("ip", &["link", "set", &outside, "master", &bridge])?;
            run("ip", &["link", "set", &outside, "up"])?;
            let address = format!("{}/24", self.address(host));
            self.in_host(host, "ip", &["addr", "add", &address, "dev", "eth0"])?;
            self.in_host(host, "ip", &["link", "set", "eth0", "up"])?;
            self.in_host(host, "ip", &["link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// Host `host`'s address on the bridge.
    pub fn address(&self, host: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 199, self.subnet, host as u8))
    }

    /// Runs `program` inside host `host`'s namespace.
    pub fn in_host(&self, host: usize, program: &str, args: &[&str]) -> Result<Output, String> {
        let namespace = self.namespace(host);
        let mut full = vec!["netns", "exec", namespace.as_str(), program];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// A command that runs `program` inside host `host`'s namespace, for long-lived processes.
    pub fn command(&self, host: usize, program: &std::path::Path) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.namespace(host)]).arg(program);
        command
    }

    /// Host `host` stops receiving peer traffic from `from` (both of its connections to it).
    pub fn drop_from(&self, host: usize, from: usize) -> Result<(), String> {
        let source = self.address(from).to_string();
        let port = PEER_PORT.to_string();
        for side in ["--dport", "--sport"] {
            self.in_host(
                host,
                "iptables",
                &["-A", "INPUT", "-s", &source, "-p", "tcp", side, &port, "-j", "DROP"],
            )?;
        }
        Ok(())
    }

    /// Cuts peer traffic between every host of `left` and every host of `right`.
    pub fn partition(&self, left: &[usize], right: &[usize]) -> Result<(), String> {
        for &a in left {
            for &b in right {
                self.drop_from(a, b)?;
                self.drop_from(b, a)?;
            }
        }
        Ok(())
    }

    /// Every host drops a random `share` of the peer packets it receives.
    pub fn random_loss(&self, share: f64) -> Result<(), String> {
        let port = PEER_PORT.to_string();
        let probability = share.to_string();
        for host in 1..=self.count {
            for side in ["--dport", "--sport"] {
                self.in_host(
                    host,
                    "iptables",
                    &[
                        "-A",
                        "INPUT",
                        "-p",
                        "tcp",
                        side,
                        &port,
                        "-m",
                        "statistic",
                        "--mode",
                        "random",
                        "--probability",
                        &probability,
                        "-j",
                        "DROP",
                    ],
                )?;
            }
        }
        Ok(())
    }

    /// Delays every packet each host sends by `delay_ms` with `jitter_ms` of jitter (netem;
    /// client traffic too, as netem shapes the whole interface).
    pub fn delay(&self, delay_ms: u32, jitter_ms: u32) -> Result<(), String> {
        let (delay, jitter) = (format!("{delay_ms}ms"), format!("{jitter_ms}ms"));
        for host in 1..=self.count {
            self.in_host(
                host,
                "tc",
                &["qdisc", "add", "dev", "eth0", "root", "netem", "delay", &delay, &jitter],
            )?;
        }
        Ok(())
    }

    /// Removes every fault.
    pub fn heal(&self) -> Result<(), String> {
        for host in 1..=self.count {
            self.in_host(host, "iptables", &["-F", "INPUT"])?;
            if self.has_netem {
                // Fails when no qdisc was added: nothing to remove.
                let _ = self.in_host(host, "tc", &["qdisc", "del", "dev", "eth0", "root"]);
            }
        }
        Ok(())
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for host in 1..=self.count {
            let _ = run("ip", &["netns", "del", &self.namespace(host)]);
        }
        let _ = run("ip", &["link", "del", &self.bridge()]);
    }
}
