//! Detached processes with pid files: spawn, recognise, stop.

use std::fs::{self, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::component::ProcessSpec;
use crate::error::StackError;

/// What a pid file says about a component's process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessState {
    /// No pid file.
    NotRunning,
    /// The pid file names a live process of the expected program.
    Running(u32),
    /// The pid file names a dead process, or a live process of another program (reused pid).
    Stale(u32),
}

pub(crate) fn read_pid(pid_file: &Path) -> Option<u32> {
    fs::read_to_string(pid_file).ok()?.trim().parse().ok()
}

pub(crate) fn state(pid_file: &Path, comm: &str) -> ProcessState {
    let Some(pid) = read_pid(pid_file) else {
        return ProcessState::NotRunning;
    };
    if is_alive(pid) && process_comm(pid).as_deref() == Some(comm) {
        ProcessState::Running(pid)
    } else {
        ProcessState::Stale(pid)
    }
}

fn process_comm(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_owned())
}

/// Whether `pid` is a live (non-zombie) process. Reaps it when it is our own exited child,
/// which is the case when the test harness started the stack in-process.
pub fn is_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    let nix_pid = Pid::from_raw(raw);
    match waitpid(nix_pid, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(..)) | Ok(WaitStatus::Signaled(..)) => return false,
        Ok(_) | Err(_) => {}
    }
    if matches!(kill(nix_pid, None), Err(Errno::ESRCH)) {
        return false;
    }
    // A zombie someone else has not reaped yet is as good as dead.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Starts `spec` in its own process group (so it outlives `cargo xtask up` and does not get
/// the terminal's Ctrl-C), with stdout and stderr appended to `log_file`.
pub(crate) fn spawn_detached(
    spec: &ProcessSpec,
    log_file: &Path,
    pid_file: &Path,
) -> Result<u32, StackError> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_file)
        .map_err(StackError::io(format!("open log {}", log_file.display())))?;
    let log_err = log
        .try_clone()
        .map_err(StackError::io("duplicate log handle"))?;
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0);
    for key in &spec.env_remove {
        cmd.env_remove(key);
    }
    cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    if let Some((uid, gid)) = spec.user {
        cmd.uid(uid).gid(gid);
    }
    let child = cmd
        .spawn()
        .map_err(StackError::io(format!("start {}", spec.program.display())))?;
    let pid = child.id();
    // The child is deliberately not waited on: it must outlive this process. `is_alive`
    // reaps it if it exits while we are still around.
    drop(child);
    fs::write(pid_file, format!("{pid}\n"))
        .map_err(StackError::io(format!("write {}", pid_file.display())))?;
    Ok(pid)
}

/// Sends `signal`, waits up to `timeout` for the process to exit, then SIGKILLs it.
pub(crate) async fn stop_pid(pid: u32, signal: Signal, timeout: Duration) {
    let Ok(raw) = i32::try_from(pid) else { return };
    let _ = kill(Pid::from_raw(raw), signal);
    if wait_exit(pid, timeout).await {
        return;
    }
    tracing::warn!(pid, "did not stop within {timeout:?}; sending SIGKILL");
    // The process leads its own group (see `spawn_detached`): kill its children with it, so
    // no orphaned worker keeps writing into the data directory.
    let _ = kill(Pid::from_raw(-raw), Signal::SIGKILL);
    let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
    wait_exit(pid, Duration::from_secs(5)).await;
}

pub(crate) async fn wait_exit(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !is_alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    !is_alive(pid)
}

/// Whether something already listens on `host:port`.
pub(crate) fn port_taken(host: &str, port: u16) -> bool {
    std::net::TcpListener::bind((host, port)).is_err()
}

/// The last `lines` lines of a log, for error messages.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let Ok(text) = fs::read_to_string(path) else {
        return String::new();
    };
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub(crate) fn ensure_dir(dir: &Path) -> Result<(), StackError> {
    fs::create_dir_all(dir).map_err(StackError::io(format!("create {}", dir.display())))
}
