//! Integration tests of saga-contracts (one binary, see CONVENTIONS.md).

mod compat;
mod drift;
mod registry;
mod samples;
