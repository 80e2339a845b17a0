//! Network namespaces for the `cut-broker` fault: a participant runs in a namespace of its own,
//! joined to the host by a veth pair, so its packets to and from the broker alone can be
//! dropped (nftables rules inside its namespace) while its database, the registry and its
//! HTTP API stay reachable.
//!
//! A TCP proxy cannot do this: a Kafka client bootstraps through the proxy but then connects
//! to the address the broker advertises, the same for every client. Here the whole private
//! stack listens on, and the broker advertises, the host end of the first veth pair
//! (`10.77.<n>.1`): a local address of the host, so the services in the root namespace reach
//! it as they would reach loopback, and a namespaced service reaches it through its veth.
//!
//! Needs root, iproute2 (`ip`) and nftables (`nft`, installed from Debian when missing).
//! Namespaces are named `saga-soak-<pid>-<service>`; [`Network`] deletes its own on drop, and
//! [`Network::setup`] first deletes those of soak processes that no longer run (a run killed
//! with SIGKILL cannot clean up after itself).

use std::collections::HashMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{Service, ServiceNetns};

use super::plan::service_name;

const PREFIX: &str = "saga-soak-";
/// The nftables table of a cut, inside the service's namespace.
const CUT_TABLE: &str = "saga_soak_cut";

/// The namespaces of one soak run. Dropping it deletes them (and with them the veth pairs).
pub struct Network {
    /// The address the private stack listens on and the broker advertises.
    pub host: Ipv4Addr,
    ip: PathBuf,
    nft: PathBuf,
    namespaces: HashMap<Service, Namespace>,
}

struct Namespace {
    name: String,
    host_if: String,
    address: Ipv4Addr,
}

/// Packets a cut dropped, counted by its nftables rules.
#[derive(Debug, Default, Clone, Copy)]
pub struct Dropped {
    pub to_broker: u64,
    pub from_broker: u64,
}

fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn run(program: &Path, args: &[&str]) -> Result<String, String> {
    run_with_input(program, args, None)
}

fn run_with_input(program: &Path, args: &[&str], input: Option<&str>) -> Result<String, String> {
    let shown = format!("{} {}", program.display(), args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("`{shown}`: {e}"))?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| format!("`{shown}`: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("`{shown}`: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{shown}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Deletes the namespaces (and host-side veths) of soak processes that are gone.
fn remove_stale(ip: &Path) {
    let Ok(list) = run(ip, &["netns", "list"]) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !saga_stack::is_alive(pid) {
            tracing::info!(namespace = name, "deleting a stale soak namespace");
            let _ = run(ip, &["netns", "del", name]);
        }
    }
    let Ok(links) = run(ip, &["-o", "link", "show", "type", "veth"]) else {
        return;
    };
    for link in links.lines() {
        // `12: sk4242h0@if11: <...`
        let Some(name) = link.split(": ").nth(1).and_then(|n| n.split('@').next()) else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix("sk")
            .and_then(|rest| rest.split('h').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !saga_stack::is_alive(pid) {
            let _ = run(ip, &["link", "del", name]);
        }
    }
}

/// `10.77.<n>.0/24` subnets no host interface uses yet, `count` of them.
fn free_subnets(ip: &Path, count: usize) -> Result<Vec<u8>, String> {
    let used = run(ip, &["-o", "-4", "addr", "show"])?;
    // Start where this process' id points, so two soaks at once seldom race for one.
    let start = std::process::id() % 250;
    let subnets: Vec<u8> = (0..250u32)
        .map(|i| (1 + (start + i) % 250) as u8)
        .filter(|n| !used.contains(&format!(" 10.77.{n}.")))
        .take(count)
        .collect();
    if subnets.len() < count {
        return Err("no free 10.77.<n>.0/24 subnet".into());
    }
    Ok(subnets)
}

impl Network {
    /// One namespace per service of `services`; `Err` says why namespaces cannot be used here
    /// (not root, no iproute2 or nftables, a kernel without them), having removed whatever it
    /// had set up.
    pub fn setup(services: &[Service]) -> Result<Network, String> {
        if !nix::unistd::Uid::effective().is_root() {
            return Err("not running as root".into());
        }
        let ip = find("ip").ok_or("iproute2 (`ip`) is not installed")?;
        let nft = match find("nft") {
            Some(nft) => nft,
            None => {
                saga_stack::apt::install("soak", &["nftables"])
                    .map_err(|e| format!("nftables is not installed and could not be: {e}"))?;
                find("nft").ok_or("nftables installed, yet no `nft`")?
            }
        };
        remove_stale(&ip);
        let subnets = free_subnets(&ip, services.len())?;
        let pid = std::process::id();
        let mut net = Network {
            host: Ipv4Addr::new(10, 77, subnets[0], 1),
            ip,
            nft,
            namespaces: HashMap::new(),
        };
        for (k, (service, subnet)) in services.iter().zip(subnets).enumerate() {
            let ns = Namespace {
                name: format!("{PREFIX}{pid}-{}", service_name(*service)),
                host_if: format!("sk{pid}h{k}"),
                address: Ipv4Addr::new(10, 77, subnet, 2),
            };
            let ns_if = format!("sk{pid}n{k}");
            let host_addr = format!("10.77.{subnet}.1/24");
            let ns_addr = format!("{}/24", ns.address);
            let gateway = format!("10.77.{subnet}.1");
            let name = ns.name.clone();
            let host_if = ns.host_if.clone();
            net.namespaces.insert(*service, ns);
            let steps: [&[&str]; 8] = [
                &["netns", "add", &name],
                &[
                    "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if, "netns", &name,
                ],
                &["addr", "add", &host_addr, "dev", &host_if],
                &["link", "set", &host_if, "up"],
                &["-n", &name, "addr", "add", &ns_addr, "dev", &ns_if],
                &["-n", &name, "link", "set", &ns_if, "up"],
                &["-n", &name, "link", "set", "lo", "up"],
                &["-n", &name, "route", "add", "default", "via", &gateway],
            ];
            for args in steps {
                run(&net.ip, args)?;
            }
        }
        // Prove that nftables works inside a namespace before the soak relies on it.
        if let Some(service) = services.first() {
            net.cut(*service, 1)
                .and_then(|()| net.restore(*service).map(|_| ()))
                .map_err(|e| format!("nftables in a namespace: {e}"))?;
        }
        Ok(net)
    }

    /// Where `service` runs, for [`crate::SuiteOptions::netns`].
    pub fn placements(&self) -> HashMap<Service, ServiceNetns> {
        self.namespaces
            .iter()
            .map(|(service, ns)| {
                (
                    *service,
                    ServiceNetns {
                        name: ns.name.clone(),
                        address: ns.address,
                        ip: self.ip.clone(),
                    },
                )
            })
            .collect()
    }

    fn namespace(&self, service: Service) -> Result<&Namespace, String> {
        self.namespaces
            .get(&service)
            .ok_or_else(|| format!("{} runs in no namespace", service_name(service)))
    }

    /// Drops every packet between `service` and the broker's `port` (both ways, silently: the
    /// client sees no reset, only silence). Everything else keeps flowing.
    pub fn cut(&self, service: Service, port: u16) -> Result<(), String> {
        let ns = self.namespace(service)?;
        let rules = format!(
            "table inet {CUT_TABLE} {{\n\
             chain out {{ type filter hook output priority 0; tcp dport {port} counter drop; }}\n\
             chain in {{ type filter hook input priority 0; tcp sport {port} counter drop; }}\n\
             }}\n"
        );
        let nft = self.nft.to_string_lossy();
        run_with_input(
            &self.ip,
            &["netns", "exec", &ns.name, &nft, "-f", "-"],
            Some(&rules),
        )
        .map(|_| ())
    }

    /// Lifts the cut of `service`; says how many packets it dropped.
    pub fn restore(&self, service: Service) -> Result<Dropped, String> {
        let ns = self.namespace(service)?;
        let nft = self.nft.to_string_lossy();
        let listing = run(
            &self.ip,
            &[
                "netns", "exec", &ns.name, &nft, "list", "table", "inet", CUT_TABLE,
            ],
        )
        .unwrap_or_default();
        run(
            &self.ip,
            &[
                "netns", "exec", &ns.name, &nft, "delete", "table", "inet", CUT_TABLE,
            ],
        )?;
        Ok(dropped(&listing))
    }
}

/// The counters of a cut's rules in `nft list table` output
/// (`tcp dport 38673 counter packets 12 bytes 720 drop`).
fn dropped(listing: &str) -> Dropped {
    let mut dropped = Dropped::default();
    for line in listing.lines() {
        let packets = line
            .split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1)
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        if line.contains("dport") {
            dropped.to_broker += packets;
        } else if line.contains("sport") {
            dropped.from_broker += packets;
        }
    }
    dropped
}

impl Drop for Network {
    fn drop(&mut self) {
        for ns in self.namespaces.values() {
            let _ = run(&self.ip, &["netns", "del", &ns.name]);
            // Deleting the namespace removes the pair, but lazily; the host end may linger.
            let _ = run(&self.ip, &["link", "del", &ns.host_if]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_counts_the_packets_its_rules_dropped() {
        let listing = "table inet saga_soak_cut {
	chain out {
		type filter hook output priority filter; policy accept;
		tcp dport 38673 counter packets 21 bytes 1400 drop
	}

	chain in {
		type filter hook input priority filter; policy accept;
		tcp sport 38673 counter packets 6 bytes 360 drop
	}
}
";
        let d = dropped(listing);
        assert_eq!((d.to_broker, d.from_broker), (21, 6));
    }
}
