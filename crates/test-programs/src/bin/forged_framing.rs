//! A CGI response that tries to take over the connection's framing: a short
//! `Content-Length`, `Transfer-Encoding`, `Connection` (naming `X-Hop`) and
//! `Upgrade`, and a body that carries a forged second HTTP response after
//! the length it declares. `?status=204` answers `204 No Content` with a
//! body anyway.

use nimbus_test_programs::query_param;
use std::io::{self, Write};

fn main() {
    let status = query_param("status").unwrap_or_else(|| "200".to_owned());
    let mut out = io::stdout().lock();
    let _ = write!(
        out,
        "Content-Type: text/plain\nStatus: {status}\nContent-Length: 2\nTransfer-Encoding: chunked\nConnection: keep-alive, x-hop\nX-Hop: 1\nUpgrade: h2c\nX-Kept: yes\n\nOK\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged"
    );
    let _ = out.flush();
}
