//! `nimbus kv get|set|incr|list|del`.

use crate::client::failure;
use crate::commands::{client, print_json};
use crate::timefmt::parse_duration;
use crate::{Global, KvCommand, Output};
use anyhow::Context as _;
use nimbus_api::kv::{KvCounter, KvKeyList, KvStoreList, KvWritten};
use reqwest::Method;
use std::io::{Read as _, Write as _};
use std::process::ExitCode;

/// A key as one path segment: every byte that could change the path's
/// meaning is percent-encoded, `/` included (the server decodes it), so no
/// part of a key is read as `.` or `..`.
fn key_path(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-_~:@!$&'()*+,;=".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub async fn run(g: &Global, cmd: KvCommand) -> anyhow::Result<ExitCode> {
    let c = client(g)?;
    let base = format!("/api/v1/namespaces/{}/kv", g.namespace);
    match cmd {
        KvCommand::Get { key, store } => {
            let resp = c
                .request(
                    Method::GET,
                    &format!("{base}/{store}/keys/{}", key_path(&key)),
                )
                .send()
                .await
                .context("reach the Nimbus server")?;
            let status = resp.status().as_u16();
            let version = resp
                .headers()
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim_matches('"').to_owned());
            let bytes = resp.bytes().await.context("read the value")?;
            if status >= 400 {
                return Err(failure(status, &bytes).into());
            }
            if g.output == Output::Json {
                let value = String::from_utf8_lossy(&bytes);
                print_json(&serde_json::json!({
                    "key": key,
                    "value": value,
                    "version": version.and_then(|v| v.parse::<u64>().ok()),
                }))?;
            } else {
                let mut out = std::io::stdout().lock();
                out.write_all(&bytes).context("write the value")?;
                if std::io::IsTerminal::is_terminal(&std::io::stdout()) && !bytes.ends_with(b"\n") {
                    out.write_all(b"\n").context("write the value")?;
                }
            }
        }
        KvCommand::Set {
            key,
            value,
            store,
            ttl,
            if_absent,
            if_version,
        } => {
            let value = if value == "-" {
                let mut v = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut v)
                    .context("read the value from stdin")?;
                v
            } else {
                value.into_bytes()
            };
            let len = value.len();
            let mut path = format!("{base}/{store}/keys/{}", key_path(&key));
            if let Some(ttl) = &ttl {
                let seconds = parse_duration("--ttl", ttl)?.div_ceil(1000);
                path.push_str(&format!("?ttl_seconds={seconds}"));
            }
            let mut rb = c.request(Method::PUT, &path).body(value);
            if if_absent {
                rb = rb.header("if-none-match", "*");
            }
            if let Some(v) = if_version {
                rb = rb.header("if-match", format!("\"{v}\""));
            }
            let written: KvWritten = c.send(rb).await?;
            if g.output == Output::Json {
                print_json(&written)?;
            } else {
                println!(
                    "set {store}/{key} ({len} bytes, version {}){}",
                    written.version,
                    ttl.map(|t| format!(", expires in {t}")).unwrap_or_default()
                );
            }
        }
        KvCommand::Incr { key, by, store } => {
            let counter: KvCounter = c
                .send(
                    c.request(
                        Method::POST,
                        &format!("{base}/{store}/incr/{}", key_path(&key)),
                    )
                    .json(&serde_json::json!({ "by": by })),
                )
                .await?;
            if g.output == Output::Json {
                print_json(&counter)?;
            } else {
                println!("{}", counter.value);
            }
        }
        KvCommand::List {
            store,
            prefix,
            limit,
            cursor,
            stores: true,
        } => {
            let _ = (store, prefix, limit, cursor);
            let list: KvStoreList = c.send(c.request(Method::GET, &base)).await?;
            if g.output == Output::Json {
                print_json(&list)?;
            } else if list.stores.is_empty() {
                println!(
                    "no key-value stores in namespace {}; `nimbus kv set KEY VALUE` makes the default one",
                    g.namespace
                );
            } else {
                for s in &list.stores {
                    println!("{:<32} {:>10} keys {:>14} bytes", s.name, s.keys, s.bytes);
                }
            }
        }
        KvCommand::List {
            store,
            prefix,
            limit,
            cursor,
            stores: false,
        } => {
            let mut query: Vec<(&str, String)> = vec![("prefix", prefix)];
            if let Some(l) = limit {
                query.push(("limit", l.to_string()));
            }
            if let Some(cur) = cursor {
                query.push(("cursor", cur));
            }
            let page: KvKeyList = c
                .send(
                    c.request(Method::GET, &format!("{base}/{store}/keys"))
                        .query(&query),
                )
                .await?;
            if g.output == Output::Json {
                print_json(&page)?;
            } else {
                for k in &page.keys {
                    println!("{k}");
                }
                if let Some(cur) = &page.cursor {
                    eprintln!("more keys: add --cursor {cur}");
                }
            }
        }
        KvCommand::Del { key, store } => {
            let _: serde_json::Value = c
                .send(c.request(
                    Method::DELETE,
                    &format!("{base}/{store}/keys/{}", key_path(&key)),
                ))
                .await?;
            if g.output == Output::Json {
                print_json(&serde_json::json!({ "deleted": key, "store": store }))?;
            } else {
                println!("deleted {store}/{key}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_segment_whatever_they_hold() {
        assert_eq!(key_path("user:42/profile"), "user:42%2Fprofile");
        assert_eq!(key_path("a/../b"), "a%2F%2E%2E%2Fb");
        assert_eq!(key_path("a b?c#d%"), "a%20b%3Fc%23d%25");
        assert_eq!(key_path("\u{e9}"), "%C3%A9");
    }
}
