//! Wiring through the real broker: see below.
