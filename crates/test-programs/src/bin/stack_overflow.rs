//! Recurses without bound until the stack runs out.
//!
//! Each frame keeps a 256-byte array alive across the recursive call, so
//! the recursion can neither be turned into a loop nor kept in registers;
//! it ends in a trap (call stack exhausted, or an out-of-bounds access once
//! the in-memory stack underflows), which the host must report as an error.

use std::hint::black_box;

use nimbus_test_programs::respond;

#[inline(never)]
fn descend(depth: u64) -> u64 {
    // A limit the compiler cannot see through, so the recursion is
    // unbounded in practice without being unconditional.
    if depth == black_box(u64::MAX) {
        return depth;
    }
    let mut frame = [0u8; 256];
    frame[(depth % 256) as usize] = depth as u8;
    let frame = black_box(frame);
    let below = descend(black_box(depth + 1));
    below.wrapping_add(u64::from(frame[(depth % 251) as usize]))
}

fn main() {
    eprintln!("stack_overflow: recursing");
    let result = descend(0);
    respond(&format!("the stack never ran out ({result})\n"));
}
