//! End-to-end tests: a real server (real wasmtime, real SQLite on disk, real
//! HTTP over loopback) and the real `nimbus` binary.
//!
//! Guests come from `scripts/build-guests` (`target/wasm/*.wasm`).

mod aliases;
mod audit;
mod auth;
mod build;
mod cli;
mod common;
mod config;
mod deploy;
mod docs;
mod first_hour;
mod grants;
mod hardening;
mod init_check;
mod invoke;
mod keys;
mod kv;
mod limits;
mod operations;
mod persistence;
mod process;
mod scaling;
mod streaming;
mod templates;
mod tls;
mod traces;
