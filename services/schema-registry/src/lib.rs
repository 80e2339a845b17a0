//! schema-registry-service
