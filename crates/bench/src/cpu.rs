//! CPU used per process of the stack, from `/proc`, over a measured window.
//!
//! The stack's processes are found by the pid files `saga-stack` writes under
//! `<SAGA_STACK_DIR>/run/` (PostgreSQL also counts its backends: children of the postmaster).
//! Without a stack directory, processes are matched by name, which on a shared machine may
//! include other people's; the report says which it did. The machine's total busy time is
//! reported beside it, because other work on the same two cores changes every figure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Which processes make up one named group (e.g. "postgres" = postmaster + backends).
#[derive(Debug, Clone)]
enum Selector {
    /// A pid and, optionally, all its children.
    Pid { pid: u32, children: bool },
    /// Every process whose `comm` is this.
    Comm(String),
    /// PostgreSQL backends connected to one database: their process title (the
    /// `cmdline` PostgreSQL rewrites) names it, as `postgres: <user> <database> ...`.
    PgDatabase(String),
    /// This process.
    Myself,
}

/// A set of named process groups to account CPU for.
#[derive(Debug, Clone)]
pub struct Watch {
    groups: Vec<(String, Selector)>,
    /// How the groups were found, for the report.
    pub source: String,
    ticks_per_sec: f64,
}

/// A reading of cumulative CPU ticks.
#[derive(Debug, Clone)]
pub struct Reading {
    at: Instant,
    per_group: BTreeMap<String, u64>,
    machine_busy: u64,
    machine_total: u64,
}

/// CPU over a window: per group, in percent of one core; the machine in percent of all.
#[derive(Debug, Clone)]
pub struct Usage {
    pub per_group: Vec<(String, f64)>,
    /// Busy share of the whole machine (all cores), percent.
    pub machine_busy_pct: f64,
    pub cores: usize,
}

impl Usage {
    /// `name 123%` pairs, compact for tables.
    pub fn compact(&self) -> String {
        self.per_group
            .iter()
            .map(|(name, pct)| format!("{name} {pct:.0}%"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn of(&self, name: &str) -> f64 {
        self.per_group
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0.0, |(_, p)| *p)
    }
}

impl Watch {
    /// The stack's processes (from `SAGA_STACK_DIR` pid files when set, else by name) plus
    /// this benchmark process, plus any `extra` (name, comm) pairs matched by name.
    pub fn stack(extra_comms: &[(&str, &str)]) -> Watch {
        let mut groups = Vec::new();
        let source;
        match std::env::var_os("SAGA_STACK_DIR").map(PathBuf::from) {
            Some(dir) if dir.join("run").is_dir() => {
                source = format!("pid files in {}", dir.join("run").display());
                for (name, children) in [
                    ("postgres", true),
                    ("broker", false),
                    ("schema-registry", false),
                ] {
                    if let Some(pid) = read_pid(&dir.join("run").join(format!("{name}.pid"))) {
                        let label = if name == "broker" { "tansu" } else { name };
                        groups.push((label.to_owned(), Selector::Pid { pid, children }));
                    }
                }
            }
            _ => {
                source = "process names (may include other stacks on this machine)".to_owned();
                groups.push(("postgres".into(), Selector::Comm("postgres".into())));
                groups.push(("tansu".into(), Selector::Comm("tansu".into())));
                groups.push((
                    "schema-registry".into(),
                    Selector::Comm("schema-registry".into()),
                ));
            }
        }
        for (name, comm) in extra_comms {
            groups.push(((*name).to_owned(), Selector::Comm((*comm).to_owned())));
        }
        groups.push(("bench".into(), Selector::Myself));
        Watch {
            groups,
            source,
            ticks_per_sec: clock_ticks(),
        }
    }

    /// Also account the PostgreSQL backends of each `(label, database)` separately (they
    /// stay inside the `postgres` total too).
    pub fn postgres_databases(mut self, databases: &[(String, String)]) -> Watch {
        for (label, db) in databases {
            self.groups
                .push((label.clone(), Selector::PgDatabase(db.clone())));
        }
        self
    }

    pub fn read(&self) -> Reading {
        let procs = all_processes();
        let mut per_group = BTreeMap::new();
        for (name, selector) in &self.groups {
            let ticks: u64 = match selector {
                Selector::Myself => {
                    let me = std::process::id();
                    procs.iter().filter(|p| p.pid == me).map(|p| p.ticks).sum()
                }
                Selector::Pid { pid, children } => procs
                    .iter()
                    .filter(|p| p.pid == *pid || (*children && p.ppid == *pid))
                    .map(|p| p.ticks)
                    .sum(),
                Selector::Comm(comm) => procs
                    .iter()
                    .filter(|p| &p.comm == comm)
                    .map(|p| p.ticks)
                    .sum(),
                Selector::PgDatabase(db) => procs
                    .iter()
                    .filter(|p| p.comm == "postgres" && is_backend_of(p.pid, db))
                    .map(|p| p.ticks)
                    .sum(),
            };
            per_group.insert(name.clone(), ticks);
        }
        let (machine_busy, machine_total) = machine_ticks();
        Reading {
            at: Instant::now(),
            per_group,
            machine_busy,
            machine_total,
        }
    }

    /// CPU between two readings. Processes that exited in between are not counted (their
    /// ticks vanish with them), so a group can only be under-, never over-reported.
    pub fn usage(&self, from: &Reading, to: &Reading) -> Usage {
        let secs = (to.at - from.at).as_secs_f64().max(1e-6);
        let per_group = self
            .groups
            .iter()
            .map(|(name, _)| {
                let a = from.per_group.get(name).copied().unwrap_or(0);
                let b = to.per_group.get(name).copied().unwrap_or(0);
                let pct = b.saturating_sub(a) as f64 / self.ticks_per_sec / secs * 100.0;
                (name.clone(), pct)
            })
            .collect();
        let busy = to.machine_busy.saturating_sub(from.machine_busy) as f64;
        let total = to.machine_total.saturating_sub(from.machine_total).max(1) as f64;
        Usage {
            per_group,
            machine_busy_pct: busy / total * 100.0,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

struct Proc {
    pid: u32,
    ppid: u32,
    comm: String,
    ticks: u64,
}

fn is_backend_of(pid: u32, database: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            let title = String::from_utf8_lossy(&c);
            title.starts_with("postgres: ") && title.split_whitespace().nth(2) == Some(database)
        })
        .unwrap_or(false)
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Every process with its parent, name and utime + stime (children not included).
fn all_processes() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        parse_stat(
            pid,
            &std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?,
        )
    })
    .collect()
}

/// `/proc/<pid>/stat`: `pid (comm) state ppid ... utime(14) stime(15) ...`; comm may
/// contain spaces and parentheses, so fields are counted from the last `)`.
fn parse_stat(pid: u32, stat: &str) -> Option<Proc> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_owned();
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // fields[0] is field 3 (state).
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Proc {
        pid,
        ppid,
        comm,
        ticks: utime + stime,
    })
}

/// (busy, total) jiffies of all CPUs from the first line of `/proc/stat`.
fn machine_ticks() -> (u64, u64) {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return (0, 0);
    };
    let Some(line) = stat.lines().next() else {
        return (0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    // idle + iowait are not busy.
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

/// `USER_HZ`; `getconf` avoids unsafe `sysconf` and is present on every Linux.
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_and_parens_in_comm() {
        let line = "42 (a (b) c) S 7 42 42 0 -1 4194304 100 0 0 0 250 30 0 0 20 0 1 0 5 0 0";
        let p = parse_stat(42, line).unwrap();
        assert_eq!(p.comm, "a (b) c");
        assert_eq!(p.ppid, 7);
        assert_eq!(p.ticks, 280);
    }

    #[test]
    fn own_process_is_found() {
        let me = std::process::id();
        assert!(all_processes().iter().any(|p| p.pid == me));
    }
}
