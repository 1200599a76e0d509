//! The inventory: YAML in, a validated [`Inventory`] out, with errors that point at
//! file:line:column and the field path. No I/O beyond reading the one file.

pub mod model;
pub mod names;
pub mod raw;

pub use model::*;
pub use names::{DcName, HostName, Port, Role};
