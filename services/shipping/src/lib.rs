//! shipping-service
