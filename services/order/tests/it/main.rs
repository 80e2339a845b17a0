//! order-service integration tests: the HTTP API and the event-sourced model against real
//! Postgres, with the service running in-process on port 0.

mod event_sourcing;
mod http_api;
mod live;
mod snapshots;
mod support;
