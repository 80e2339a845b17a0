//! Waiting on a condition with a deadline, instead of sleeping for a guessed time.

use std::future::Future;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
#[error("condition not met within {0:?}")]
pub struct TimedOut(pub Duration);

/// Re-checks `condition` every 20 ms until it returns true or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, mut condition: F) -> Result<(), TimedOut>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(TimedOut(timeout));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
