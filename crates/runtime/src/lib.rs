//! The wiring every saga service shares, written once: the common configuration sections
//! ([`RuntimeConfig`], flattened into each service's config), [`Runtime`] (connect, migrate
//! the outbox + inbox + service tables, register the schemas, bind HTTP, build the relay and
//! the service's consumers, then run them all under one cancellation token), and [`main`] for
//! the services' binaries.
//!
//! It sits above `saga-service-kit` (which must not depend on the messaging crates) and the
//! messaging crates (outbox, inbox, consumer, contracts).

mod binary;
pub mod config;
mod dead_letters;
mod rewind;
mod runtime;
#[cfg(feature = "test-support")]
pub mod testing;

pub use binary::main;
pub use config::{
    LoadError, RetentionConfig, RuntimeConfig, ServiceConfig, ServiceName, SharedConfig,
};
pub use runtime::{Runtime, RuntimeError, migrate};
