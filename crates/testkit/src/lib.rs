//! saga-testkit
