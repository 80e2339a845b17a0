//! Test plumbing: the shared helpers of `saga_runtime::testing`, on this service's tables.

pub use saga_runtime::testing::{Bus, problem, registry_codec, serve};
use sqlx::PgPool;

/// A fresh database of the test stack, with the outbox, inbox and service migrations run.
pub async fn fresh_pool() -> PgPool {
    saga_runtime::testing::fresh_pool(&shipping_service::MIGRATOR).await
}
