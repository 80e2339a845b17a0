//! The registry in-process on port 0 against a fresh database of the shared test stack,
//! exercised over real HTTP: raw requests, the real `schema_registry_converter` client,
//! the compatibility table and concurrent registration.

mod api;
mod auth;
mod client;
mod compat;
mod concurrency;
mod support;
