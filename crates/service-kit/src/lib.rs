//! saga-service-kit
