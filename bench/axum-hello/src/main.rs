//! The physical limit for the benchmarks: a raw axum server answering the
//! same "Hello from Nimbus!" body as the hello example, with no sandbox.
//!
//! Run with: `cargo run --release -p nimbus-bench-axum-hello -- 127.0.0.1:8091`

use axum::Router;
use axum::routing::get;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8091".to_owned());
    let app = Router::new().fallback(get(|| async { "Hello from Nimbus!\n" }));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    axum::serve(listener, app).await
}
