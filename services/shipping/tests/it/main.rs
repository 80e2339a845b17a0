//! shipping-service integration tests against real Postgres (and, for the handler and wiring
//! tests, the real broker and schema registry).

mod handler;
mod http;
mod shipments;
mod support;
mod wiring;
