//! End-to-end tests of the saga across all services live in `tests/it/`.
