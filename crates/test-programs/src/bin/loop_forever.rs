//! Spins forever without ever calling into the host.
//!
//! The host must stop it with its execution deadline (epoch interruption or
//! fuel) and answer with a timeout error; it never writes a response.

use std::hint::black_box;

fn main() {
    eprintln!("loop_forever: spinning");
    let mut counter: u64 = 0;
    loop {
        // `black_box` keeps the loop (and its counter) from being optimised
        // into nothing.
        counter = black_box(counter.wrapping_add(1));
    }
}
