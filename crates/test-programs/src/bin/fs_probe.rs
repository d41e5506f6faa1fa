//! Probes the filesystem sandbox.
//!
//! Tries to read `/etc/passwd`, to list `/` and to create `/tmp/x`, and
//! answers one line per attempt, `ok` or `denied: <error>`:
//!
//! ```text
//! read /etc/passwd: denied: No such file or directory (os error 44)
//! list /: denied: No such file or directory (os error 44)
//! create /tmp/x: denied: No such file or directory (os error 44)
//! ```
//!
//! With no directory granted to the function, all three must be denied. The
//! wording of the error varies: with no preopened directory at all, as
//! above, the WASI libc fails the lookup itself with "No such file or
//! directory".

use std::fs;
use std::io;

use nimbus_test_programs::respond;

fn line(body: &mut String, what: &str, result: io::Result<()>) {
    body.push_str(what);
    match result {
        Ok(()) => body.push_str(": ok\n"),
        Err(e) => {
            body.push_str(": denied: ");
            body.push_str(&e.to_string());
            body.push('\n');
        }
    }
}

fn main() {
    let mut body = String::new();
    line(
        &mut body,
        "read /etc/passwd",
        fs::read("/etc/passwd").map(|_| ()),
    );
    line(
        &mut body,
        "list /",
        fs::read_dir("/").and_then(|mut entries| entries.try_for_each(|entry| entry.map(|_| ()))),
    );
    line(&mut body, "create /tmp/x", fs::write("/tmp/x", b"x"));
    respond(&body);
}
