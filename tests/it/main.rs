//! End-to-end tests of the order saga: all five services on the real broker, Postgres and
//! schema registry (see docs/testing.md).

mod api;
mod concurrency;
mod console;
mod crash;
mod dead_letters;
mod deadlines;
mod duplicates;
mod fuzz;
mod group;
mod live;
mod monitoring;
mod paths;
mod rewind;
mod soak;
mod support;
mod trace;
