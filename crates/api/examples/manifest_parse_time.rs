//! Times `Manifest::parse` on hostile manifests of up to the 1 MiB limit:
//! deep flow and block nesting, long flat documents and many keys.
//!
//! Run: `cargo run --release -p nimbus-api --example manifest_parse_time [BYTES [FILTER]]`
//! (BYTES defaults to the 1 MiB limit; FILTER keeps the cases whose name
//! contains it).

use nimbus_api::manifest::{MAX_MANIFEST_BYTES, Manifest};
use std::time::Instant;

fn repeat_to(prefix: &str, unit: &str, suffix: &str, bytes: usize) -> String {
    let n = (bytes - prefix.len() - suffix.len()) / unit.len();
    let mut s = String::with_capacity(bytes);
    s.push_str(prefix);
    for _ in 0..n {
        s.push_str(unit);
    }
    s.push_str(suffix);
    s
}

/// `prefix`, then lines `{indent}A<n>: b` with distinct keys, until `bytes`.
fn distinct_keys(prefix: &str, indent: &str, bytes: usize) -> String {
    let mut s = String::from(prefix);
    for n in 0.. {
        let line = format!("{indent}A{n}: b\n");
        if s.len() + line.len() > bytes {
            break;
        }
        s.push_str(&line);
    }
    s
}

/// Block mappings, each key one column deeper than the last, until `bytes`.
fn staircase(bytes: usize) -> String {
    let mut s = String::from("functions:\n");
    let mut depth = 1;
    while s.len() + depth + 3 < bytes {
        s.push_str(&" ".repeat(depth));
        s.push_str("a:\n");
        depth += 1;
    }
    s
}

fn main() {
    let bytes: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(MAX_MANIFEST_BYTES);
    let filter = std::env::args().nth(2).unwrap_or_default();
    let cases: Vec<(&str, String)> = vec![
        ("flow sequences [[[…", repeat_to("", "[", "", bytes)),
        ("flow mappings {{{…", repeat_to("", "{", "", bytes)),
        ("flow mappings {a: {a: …", repeat_to("", "{a: ", "", bytes)),
        (
            "under functions: [[[…",
            repeat_to("functions: ", "[", "", bytes),
        ),
        ("block sequences - - - …", repeat_to("", "- ", "x\n", bytes)),
        (
            "block sequences under functions: - - - …",
            repeat_to("functions:\n  ", "- ", "x\n", bytes),
        ),
        (
            "block mappings under functions, env: - - - …",
            repeat_to(
                "functions:\n  f:\n    code: a\n    env: ",
                "- ",
                "x\n",
                bytes,
            ),
        ),
        ("explicit keys ? ? ? …", repeat_to("", "? ", "x\n", bytes)),
        ("block mappings, one column deeper each", staircase(bytes)),
        (
            "32 deep, then [a, a, …]",
            repeat_to(&"[".repeat(32), "a, ", "a", bytes),
        ),
        (
            "32 deep, repeated [[…[a]…]], ",
            repeat_to(
                "[",
                &format!("{}a{}, ", "[".repeat(31), "]".repeat(31)),
                "]",
                bytes,
            ),
        ),
        ("32 deep block mappings, then many keys", {
            let mut s = String::new();
            for d in 0..31 {
                s.push_str(&" ".repeat(d));
                s.push_str("a:\n");
            }
            distinct_keys(&s, &" ".repeat(31), bytes)
        }),
        (
            "flat sequence [a, a, …]",
            repeat_to("functions: [", "a, ", "a]\n", bytes),
        ),
        (
            "many env keys",
            distinct_keys("functions:\n  f:\n    code: a\n    env:\n", "      ", bytes),
        ),
        ("comment of [", repeat_to("#", "[", "\n", bytes)),
        ("quoted [", repeat_to("functions: '", "[", "'\n", bytes)),
    ];
    println!(
        "{:<42} {:>9} {:>12}  result",
        "manifest", "bytes", "parse time"
    );
    for (name, text) in cases.into_iter().filter(|(n, _)| n.contains(&filter)) {
        let start = Instant::now();
        let result = Manifest::parse(&text);
        let elapsed = start.elapsed();
        let summary = match result {
            Ok(_) => "accepted".to_owned(),
            Err(e) => {
                let mut s = e.to_string();
                if s.len() > 90 {
                    let mut end = 90;
                    while !s.is_char_boundary(end) {
                        end -= 1;
                    }
                    s.truncate(end);
                    s.push('…');
                }
                s
            }
        };
        println!(
            "{name:<42} {:>9} {:>9.1} ms  {summary}",
            text.len(),
            elapsed.as_secs_f64() * 1000.0
        );
    }
}
