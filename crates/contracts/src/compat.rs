//! The schema compatibility gate (filled in below).
