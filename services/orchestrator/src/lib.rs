//! orchestrator-service
