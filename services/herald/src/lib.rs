//! The Herald binary's library: running the roles together, and the operator commands that
//! tests drive too.

pub mod bench;
pub mod client;
pub mod demo;
pub mod fixtures;
pub mod ops;
pub mod stack;
pub mod tenant;
