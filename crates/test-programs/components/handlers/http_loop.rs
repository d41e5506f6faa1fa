//! Spins forever inside the request handler, never answering and never
//! calling into the host. The host must stop it with its execution deadline
//! and answer with a timeout error.

use std::hint::black_box;

use wstd::http::{Body, Error, Request, Response};

#[wstd::http_server]
async fn main(_request: Request<Body>) -> Result<Response<Body>, Error> {
    let mut counter: u64 = 0;
    loop {
        // `black_box` keeps the loop from being optimised into nothing.
        counter = black_box(counter.wrapping_add(1));
    }
}
