//! saga-contracts
