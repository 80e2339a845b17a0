//! Integration tests of orchestrator-service against real PostgreSQL and the real schema
//! registry (and the tansu broker for the wiring test).

mod failures;
mod harness;
mod http_api;
mod saga_db;
mod wiring;
