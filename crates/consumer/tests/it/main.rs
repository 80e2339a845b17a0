//! Messaging kit end to end: outbox relay -> real tansu broker -> consumer runtime with
//! inbox, against real PostgreSQL and the real schema registry.

mod consumer;
mod relay;
mod rewind;
mod support;
