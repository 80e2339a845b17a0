//! order-service
