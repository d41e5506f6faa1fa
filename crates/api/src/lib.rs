//! Nimbus data types: the user's manifest, the locked function version the
//! runtime consumes, invocation records, API wire types and error codes.
//!
//! This crate holds data only (serde types and their validation) so that the
//! CLI and other clients can link it without pulling in the server.

pub mod alias;
pub mod audit;
pub mod auth;
pub mod config;
pub mod docs;
pub mod error;
pub mod function;
pub mod grants;
pub mod invocation;
pub mod kv;
pub mod limits;
pub mod manifest;
pub mod names;
mod unique_map;
pub mod wire;

pub use error::ErrorCode;
pub use function::{CodeKind, FunctionVersion, InvokeMode, Route};
pub use grants::Grants;
pub use invocation::{InvocationRecord, UsageRow};
pub use limits::{Limits, Scaling};
pub use manifest::{Manifest, ManifestError};
pub use names::{FunctionName, Namespace};
