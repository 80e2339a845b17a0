//! What every service's `App` shares: which of its parts run, where the schema registry is,
//! and [`Tasks`], which runs the parts (HTTP server, consumers, outbox relay) as one unit: they
//! stop together on the shutdown token, and the first one to fail stops the others.

use std::future::Future;
use std::time::Duration;

use serde::Deserialize;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Which long-lived parts of a service run. All on by default; tests switch the relay off to
/// drain the outbox themselves, or the consumer off to call the handler directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Components {
    pub http: bool,
    pub consumer: bool,
    pub relay: bool,
}

impl Default for Components {
    fn default() -> Self {
        Self {
            http: true,
            consumer: true,
            relay: true,
        }
    }
}

/// `registry.url`: the Confluent-compatible schema registry; `registry.username` and
/// `registry.password`: the basic-auth credential its writes need (the services register
/// their schemas at start). A credential in the URL's user info works too.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    pub url: String,
    #[serde(default = "default_registry_username")]
    pub username: String,
    #[serde(default)]
    pub password: Option<crate::config::Secret>,
}

fn default_registry_username() -> String {
    "registry".to_owned()
}

impl RegistryConfig {
    /// The registry at `url`, without a credential (unless `url` carries one).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            username: default_registry_username(),
            password: None,
        }
    }
}

impl std::fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryConfig")
            .field("url", &crate::config::redact_url(&self.url))
            .field("username", &self.username)
            .field("password", &self.password)
            .finish()
    }
}

/// How long the parts get to finish after shutdown before they are aborted.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("{name} failed: {source}")]
    Failed {
        name: &'static str,
        #[source]
        source: BoxError,
    },
    /// A part returned although nobody asked it to stop; the service is no longer whole.
    #[error("{0} stopped before shutdown was requested")]
    StoppedEarly(&'static str),
    #[error("a task panicked: {0}")]
    Panicked(String),
    #[error("{0} part(s) did not stop within {1:?} of shutdown and were aborted")]
    DrainTimeout(usize, Duration),
}

/// A group of named parts sharing one cancellation token (a child of the service's).
pub struct Tasks {
    token: CancellationToken,
    set: JoinSet<Result<(), TaskError>>,
    grace: Duration,
}

impl Tasks {
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            // A child: a failing part stops its siblings without cancelling the caller's token.
            token: shutdown.child_token(),
            set: JoinSet::new(),
            grace: DEFAULT_GRACE,
        }
    }

    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The token to hand to each part.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    pub fn spawn<F, E>(&mut self, name: &'static str, part: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError>,
    {
        let token = self.token.clone();
        self.set.spawn(async move {
            let result = part.await;
            match result {
                Err(e) => Err(TaskError::Failed {
                    name,
                    source: e.into(),
                }),
                Ok(()) if !token.is_cancelled() => Err(TaskError::StoppedEarly(name)),
                Ok(()) => {
                    tracing::info!(part = name, "stopped");
                    Ok(())
                }
            }
        });
    }

    /// Waits for every part. The first failure cancels the rest; the parts then get the grace
    /// period to drain. Returns the first failure.
    pub async fn join(mut self) -> Result<(), TaskError> {
        let mut first_error = None;
        loop {
            let next = if self.token.is_cancelled() {
                match tokio::time::timeout(self.grace, self.set.join_next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        let left = self.set.len();
                        self.set.abort_all();
                        first_error.get_or_insert(TaskError::DrainTimeout(left, self.grace));
                        break;
                    }
                }
            } else {
                tokio::select! {
                    next = self.set.join_next() => next,
                    () = self.token.cancelled() => continue,
                }
            };
            let Some(joined) = next else { break };
            let outcome = joined
                .map_err(|e| TaskError::Panicked(e.to_string()))
                .and_then(|r| r);
            if let Err(e) = outcome {
                tracing::error!(error = %e, "service part failed; stopping the others");
                self.token.cancel();
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("boom")]
    struct Boom;

    #[tokio::test]
    async fn a_failing_part_stops_the_others_and_is_reported() {
        let shutdown = CancellationToken::new();
        let mut tasks = Tasks::new(shutdown.clone());
        let token = tasks.token();
        tasks.spawn("waits", async move {
            token.cancelled().await;
            Ok::<(), Boom>(())
        });
        tasks.spawn("fails", async { Err::<(), Boom>(Boom) });
        let err = tasks.join().await.unwrap_err();
        assert!(
            matches!(err, TaskError::Failed { name: "fails", .. }),
            "{err}"
        );
        assert!(
            !shutdown.is_cancelled(),
            "the caller's token is not ours to cancel"
        );
    }

    #[tokio::test]
    async fn shutdown_stops_every_part_cleanly() {
        let shutdown = CancellationToken::new();
        let mut tasks = Tasks::new(shutdown.clone());
        for name in ["a", "b"] {
            let token = tasks.token();
            tasks.spawn(name, async move {
                token.cancelled().await;
                Ok::<(), Boom>(())
            });
        }
        shutdown.cancel();
        tasks.join().await.unwrap();
    }

    #[tokio::test]
    async fn a_part_returning_early_is_an_error_and_a_stuck_one_is_aborted() {
        let mut tasks = Tasks::new(CancellationToken::new()).with_grace(Duration::from_millis(50));
        tasks.spawn("quits", async { Ok::<(), Boom>(()) });
        tasks.spawn("stuck", std::future::pending::<Result<(), Boom>>());
        let err = tasks.join().await.unwrap_err();
        assert!(matches!(err, TaskError::StoppedEarly("quits")), "{err}");
    }
}
