//! Executes the `unreachable` instruction: a WebAssembly trap.
//!
//! The host must report the trap as an error response (500) instead of
//! crashing, and keep serving other requests.

fn main() {
    eprintln!("trap: executing unreachable");
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    std::process::abort();
}
