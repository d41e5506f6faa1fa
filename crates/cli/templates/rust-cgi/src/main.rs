//! {{name}}: a CGI-style Nimbus function. The request arrives as CGI
//! variables (`REQUEST_METHOD`, `PATH_INFO`, `QUERY_STRING`, `HTTP_*`) and
//! its body on stdin; the response is header lines, an empty line and the
//! body on stdout. stderr goes to `nimbus logs {{name}}`.

use std::env;
use std::io::{self, Read, Write};

fn main() -> io::Result<()> {
    let method = env::var("REQUEST_METHOD").unwrap_or_default();
    let path = env::var("PATH_INFO").unwrap_or_default();
    let query = env::var("QUERY_STRING").unwrap_or_default();
    let mut body = Vec::new();
    io::stdin().read_to_end(&mut body)?;
    eprintln!("{{name}}: {method} {path} ({} bytes)", body.len());

    let mut out = io::stdout().lock();
    write!(out, "Content-Type: text/plain\n\n")?;
    writeln!(out, "Hello from {{name}}! {method} {path}?{query}")?;
    out.flush()
}
