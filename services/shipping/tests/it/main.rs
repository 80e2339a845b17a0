//! shipping-service integration tests against real Postgres (and, for the wiring test, the
//! real broker and schema registry).

mod http;
mod shipments;
mod support;
