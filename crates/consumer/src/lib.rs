//! saga-consumer
