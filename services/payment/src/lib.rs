//! payment-service
