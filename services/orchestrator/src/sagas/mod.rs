//! Saga definitions, one file per saga, each a step table the engine interprets.

#[cfg(test)]
pub(crate) mod test_helpers;

pub mod order_saga;

#[cfg(test)]
mod toy_saga_tests;
