//! Panics. The panic message goes to stderr, then the module aborts, which
//! traps; the host must answer with an error and keep the message in the
//! function's logs.

fn main() {
    panic!("guest panicked on purpose");
}
