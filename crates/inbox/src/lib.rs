//! saga-inbox
