//! One module per service: the message structs and their topic enums.

pub mod inventory;
pub mod order;
pub mod payment;
pub mod shipping;
