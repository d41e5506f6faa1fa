//! Answers with the whole environment the host gave it: one `KEY=VALUE`
//! line per variable, sorted by key. Shows exactly which CGI variables
//! (`REQUEST_METHOD`, `PATH_INFO`, `HTTP_*`, ...) and configured variables a
//! function sees, and that nothing else leaks in.

use std::env;

use nimbus_test_programs::respond;

fn main() {
    let mut vars: Vec<(String, String)> = env::vars_os()
        .map(|(key, value)| {
            (
                key.to_string_lossy().into_owned(),
                value.to_string_lossy().into_owned(),
            )
        })
        .collect();
    vars.sort();
    let mut body = String::new();
    for (key, value) in vars {
        body.push_str(&key);
        body.push('=');
        body.push_str(&value);
        body.push('\n');
    }
    respond(&body);
}
