//! orchestrator-service: runs the order saga (see `sagas::order_saga` and docs/saga.md).

pub mod engine;
pub mod sagas;
