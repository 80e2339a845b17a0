//! A throw-away stack in a temporary directory, with a watchdog that tears it down when the
//! test process exits, however it exits.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;

use saga_stack::{Stack, StackConfig, SuiteOptions};

use crate::TestkitError;

/// A stack of our own (free ports, temporary directory).
#[derive(Debug)]
pub struct PrivateStack {
    stack: Stack,
    dir: PathBuf,
    /// The watchdog waits for EOF on its stdin, which comes when this process exits and the
    /// kernel closes our end of the pipe, or when [`PrivateStack::shutdown`] closes it.
    watchdog: Mutex<Option<(Child, ChildStdin)>>,
}

impl PrivateStack {
    /// The full suite stack (`Stack::new`), as `cargo xtask up` would start it.
    pub async fn start() -> Result<Self, TestkitError> {
        Self::start_with(Stack::new).await
    }

    /// The whole suite as `cargo xtask up` runs it (services as processes, the lag exporter,
    /// Prometheus), on free ports. Every binary of [`saga_stack::suite_binaries`] must be
    /// built in the target directory (`cargo build -p ...`): a missing one is an error here,
    /// not a silently skipped component.
    pub async fn start_suite(opts: &SuiteOptions) -> Result<Self, TestkitError> {
        let probe = Stack::suite(StackConfig::defaults(), opts);
        let cfg = probe.config();
        let missing: Vec<String> = saga_stack::suite_binaries()
            .into_iter()
            .filter(|bin| !cfg.workspace_bin(bin).exists())
            .map(str::to_owned)
            .collect();
        if !missing.is_empty() {
            return Err(TestkitError::NotBuilt(missing.join(", ")));
        }
        Self::start_with(|cfg| Stack::suite(cfg, opts)).await
    }

    /// A stack assembled by `build` from a private config, e.g. only the broker.
    pub async fn start_with(
        build: impl FnOnce(StackConfig) -> Stack,
    ) -> Result<Self, TestkitError> {
        let dir = tempfile::Builder::new()
            .prefix("saga-test-stack-")
            .tempdir()?
            .keep();
        let stack = build(StackConfig::private(&dir)?);
        // The watchdog comes first so that even a failed `up` leaves nothing behind.
        let watchdog = spawn_watchdog(&dir)?;
        let this = PrivateStack {
            stack,
            dir,
            watchdog: Mutex::new(Some(watchdog)),
        };
        this.stack.up().await?;
        Ok(this)
    }

    pub fn stack(&self) -> &Stack {
        &self.stack
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops the stack now; the watchdog then removes its directory in the background
    /// (deleting a cluster is slow on filesystems that discard freed blocks).
    pub async fn shutdown(self) -> Result<(), TestkitError> {
        self.stack.down().await?;
        if let Ok(mut watchdog) = self.watchdog.lock() {
            // Closing its stdin starts the clean-up; nothing is left for it to stop.
            watchdog.take();
        }
        Ok(())
    }
}

/// A `sh` process in its own process group that, once its stdin closes, stops every process
/// named by a pid file of the stack and deletes the directory. PostgreSQL gets SIGQUIT
/// (immediate shutdown): a throw-away cluster needs no shutdown checkpoint, which takes
/// seconds on a disk with slow fsync. Each component leads its own process group, so the
/// SIGKILL fallback (after 30 s) takes the server's children too; deleting the directory
/// while an orphaned PostgreSQL backend still writes into it makes it panic.
fn spawn_watchdog(dir: &Path) -> Result<(Child, ChildStdin), TestkitError> {
    const SCRIPT: &str = r#"
read _ignored
dir="$1"
pids=""
for f in "$dir"/run/*.pid; do
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  case "$f" in */postgres.pid) sig=QUIT ;; *) sig=TERM ;; esac
  kill -s "$sig" "$pid" 2>/dev/null && pids="$pids $pid"
done
i=0
while [ $i -lt 300 ]; do
  alive=""
  for pid in $pids; do kill -0 "$pid" 2>/dev/null && alive="$alive $pid"; done
  [ -z "$alive" ] && break
  sleep 0.1
  i=$((i+1))
done
for pid in $pids; do kill -s KILL -- "-$pid" 2>/dev/null; done
rm -rf "$dir"
"#;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("saga-test-stack-watchdog")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Ctrl-C on the test run must reach the test process, not the clean-up.
        .process_group(0)
        .spawn()?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| std::io::Error::other("watchdog stdin"))?;
    // Nothing is ever written but a flush proves the pipe is open.
    stdin.flush()?;
    Ok((child, stdin))
}
