//! inventory-service integration tests against real Postgres (and, for the wiring test, the
//! real broker and schema registry).

mod handler;
mod http;
mod retention;
mod stock;
mod support;
mod wiring;
