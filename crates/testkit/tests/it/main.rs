//! Integration tests of the local stack against real PostgreSQL and a real tansu broker.

mod broker;
mod kafka;
mod lifecycle;
mod postgres_roles;
