//! saga-kafka
