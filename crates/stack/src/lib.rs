//! saga-stack
