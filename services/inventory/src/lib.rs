//! inventory-service
