//! Nimbus domain logic: the traits every backend and runtime implements and
//! the code that drives them (deploy, dispatch, records).
//!
//! - [`runtime`]: the three-phase [`runtime::Runtime`] trait (prepare →
//!   invoke → release) that wasm and (later) process runtimes implement.
//! - [`store`]: storage traits by aggregate, with a conformance suite every
//!   backend runs ([`store::conformance`]).
//! - [`deploy`]: manifest → locked versions → prepared code, all or nothing.
//! - [`dispatch`]: finds a function, prepares it if cold, bounds concurrency,
//!   invokes it and records the result.
//! - [`framing`]: what of a function's response reaches the connection.
//! - [`records`]: batches invocation records off the hot path and prunes them.
//! - [`routes`]: the custom-route table (API-gateway style).
//! - [`bus`]: the event-bus trait later triggers deliver through.

pub mod aliases;
pub mod artifacts;
pub mod audit;
pub mod auth;
pub mod bus;
pub mod cgi;
pub mod config;
pub mod deploy;
pub mod dispatch;
pub mod docs;
pub mod egress;
pub mod error;
pub mod fair;
pub mod framing;
pub mod inspect;
pub mod kv;
pub mod live;
pub mod metrics;
pub mod plan;
pub mod records;
pub mod rollout;
pub mod routes;
pub mod runtime;
pub mod secrets;
pub mod store;
pub mod stream;
pub mod time;
pub mod trace;

pub use error::{Error, Result};
