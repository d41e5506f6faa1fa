//! `nimbus docs put|get|patch|del|query|watch|list`: document collections
//! (see `nimbus_api::docs`).

use crate::client::Client;
use crate::commands::{client, print_json};
use crate::{DocsCommand, Global, Output};
use anyhow::{Context as _, bail};
use nimbus_api::docs::{
    CollectionList, Dir, Doc, DocChange, DocPage, DocWritten, OrderBy, QueryRequest,
};
use reqwest::Method;
use serde_json::{Value, json};
use std::io::Read as _;
use std::process::ExitCode;

/// JSON from an argument, or from stdin for `-`.
fn json_arg(what: &str, text: &str) -> anyhow::Result<Value> {
    let text = if text == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .with_context(|| format!("read {what} from stdin"))?;
        s
    } else {
        text.to_owned()
    };
    serde_json::from_str(&text)
        .with_context(|| format!("{what} is not JSON: give an object, e.g. '{{\"name\":\"Ada\"}}'"))
}

/// `FIELD OP VALUE` as a filter condition.
fn condition(text: &str) -> anyhow::Result<Value> {
    let mut parts = text.trim().splitn(3, char::is_whitespace);
    let (Some(field), Some(op)) = (parts.next(), parts.next()) else {
        bail!("--where {text:?} is not FIELD OP VALUE, e.g. 'status == open'");
    };
    let rest = parts.next().unwrap_or("").trim();
    if rest.is_empty() {
        bail!("--where {text:?} has no value: write FIELD OP VALUE, e.g. 'total > 10'");
    }
    let value = serde_json::from_str(rest).unwrap_or_else(|_| Value::String(rest.to_owned()));
    Ok(json!({ "field": field, "op": op, "value": value }))
}

/// The `--where` conditions, and-ed.
fn filter_of(filters: &[String]) -> anyhow::Result<Option<Value>> {
    let conditions = filters
        .iter()
        .map(|f| condition(f))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(match conditions.len() {
        0 => None,
        1 => conditions.into_iter().next(),
        _ => Some(json!({ "and": conditions })),
    })
}

fn order(text: &str) -> OrderBy {
    match text.rsplit_once(':') {
        Some((field, "desc")) => OrderBy {
            field: field.to_owned(),
            dir: Dir::Desc,
        },
        Some((field, "asc")) => OrderBy {
            field: field.to_owned(),
            dir: Dir::Asc,
        },
        _ => OrderBy {
            field: text.to_owned(),
            dir: Dir::Asc,
        },
    }
}

fn if_version(rb: reqwest::RequestBuilder, v: Option<u64>) -> reqwest::RequestBuilder {
    match v {
        Some(v) => rb.header("if-match", format!("\"{v}\"")),
        None => rb,
    }
}

fn print_written(g: &Global, w: &DocWritten) -> anyhow::Result<()> {
    if g.output == Output::Json {
        return print_json(w);
    }
    println!(
        "{} {}/{} (version {})",
        match w.op {
            nimbus_api::docs::ChangeOp::Create => "created",
            nimbus_api::docs::ChangeOp::Update => "updated",
            nimbus_api::docs::ChangeOp::Delete => "deleted",
        },
        w.collection,
        w.id,
        w.version
    );
    Ok(())
}

pub async fn run(g: &Global, cmd: DocsCommand) -> anyhow::Result<ExitCode> {
    let c = client(g)?;
    let ns = format!("/api/v1/namespaces/{}", g.namespace);
    match cmd {
        DocsCommand::Put {
            collection,
            args,
            if_absent,
            if_version: version,
        } => {
            let (id, data) = match args.as_slice() {
                [data] => (None, data),
                [id, data] => (Some(id), data),
                _ => bail!("give [ID] JSON"),
            };
            let data = json_arg("the document", data)?;
            let rb = match id {
                None => {
                    if if_absent || version.is_some() {
                        bail!("--if-absent and --if-version need an ID");
                    }
                    c.request(Method::POST, &format!("{ns}/collections/{collection}/docs"))
                }
                Some(id) => {
                    let rb = c.request(
                        Method::PUT,
                        &format!("{ns}/collections/{collection}/docs/{id}"),
                    );
                    let rb = if if_absent {
                        rb.header("if-none-match", "*")
                    } else {
                        rb
                    };
                    if_version(rb, version)
                }
            };
            let w: DocWritten = c.send(rb.json(&data)).await?;
            print_written(g, &w)?;
        }
        DocsCommand::Get { collection, id } => {
            let doc: Doc = c
                .send(c.request(
                    Method::GET,
                    &format!("{ns}/collections/{collection}/docs/{id}"),
                ))
                .await?;
            if g.output == Output::Json {
                print_json(&doc)?;
            } else {
                println!("{}", serde_json::to_string_pretty(&doc.data)?);
            }
        }
        DocsCommand::Patch {
            collection,
            id,
            patch,
            if_version: version,
        } => {
            let patch = json_arg("the patch", &patch)?;
            let rb = c
                .request(
                    Method::PATCH,
                    &format!("{ns}/collections/{collection}/docs/{id}"),
                )
                .json(&patch);
            let w: DocWritten = c.send(if_version(rb, version)).await?;
            print_written(g, &w)?;
        }
        DocsCommand::Del {
            collection,
            id,
            if_version: version,
        } => {
            let rb = c.request(
                Method::DELETE,
                &format!("{ns}/collections/{collection}/docs/{id}"),
            );
            let _: Value = c.send(if_version(rb, version)).await?;
            if g.output == Output::Json {
                print_json(&json!({ "deleted": id, "collection": collection }))?;
            } else {
                println!("deleted {collection}/{id}");
            }
        }
        DocsCommand::Query {
            collection,
            filters,
            order_by,
            limit,
            cursor,
            count,
        } => {
            let q = QueryRequest {
                filter: filter_of(&filters)?,
                order_by: order_by.iter().map(|o| order(o)).collect(),
                limit,
                cursor,
                count,
            };
            let page: DocPage = c
                .send(
                    c.request(
                        Method::POST,
                        &format!("{ns}/collections/{collection}/query"),
                    )
                    .json(&q),
                )
                .await?;
            if g.output == Output::Json {
                print_json(&page)?;
            } else {
                for d in &page.docs {
                    println!("{} {}", d.id, serde_json::to_string(&d.data)?);
                }
                if let Some(n) = page.count {
                    eprintln!("{n} documents match");
                }
                if let Some(cur) = &page.cursor {
                    eprintln!("more documents: add --cursor {cur}");
                }
            }
        }
        DocsCommand::Watch {
            collection,
            after,
            filters,
            order_by,
            limit,
        } if filters.is_empty() && order_by.is_empty() && limit.is_none() => {
            watch(g, &c, &ns, &collection, after).await?;
        }
        DocsCommand::Watch {
            collection,
            filters,
            order_by,
            limit,
            ..
        } => {
            live(g, &c, &ns, &collection, &filters, &order_by, limit).await?;
        }
        DocsCommand::List => {
            let list: CollectionList = c
                .send(c.request(Method::GET, &format!("{ns}/collections")))
                .await?;
            if g.output == Output::Json {
                print_json(&list)?;
            } else if list.collections.is_empty() {
                println!(
                    "no collections in namespace {}; `nimbus docs put NAME JSON` makes one",
                    g.namespace
                );
            } else {
                for c in &list.collections {
                    println!("{:<32} {:>10} docs {:>14} bytes", c.name, c.docs, c.bytes);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_change(g: &Global, change: &DocChange) -> anyhow::Result<()> {
    if g.output == Output::Json {
        println!("{}", serde_json::to_string(change)?);
    } else {
        let data = change
            .data
            .as_ref()
            .map(|d| serde_json::to_string(d).unwrap_or_default())
            .unwrap_or_default();
        println!("{} {} {} {data}", change.seq, change.op.as_str(), change.id);
    }
    Ok(())
}

/// Follows the feed; when the connection ends, connects again after the
/// last change seen, so nothing is missed or shown twice.
async fn watch(
    g: &Global,
    c: &Client,
    ns: &str,
    collection: &str,
    after: Option<String>,
) -> anyhow::Result<()> {
    let path = format!("{ns}/collections/{collection}/changes");
    let from = after;
    let mut last: Option<u64> = None;
    if g.output == Output::Text {
        eprintln!("watching {}/{collection} (Ctrl-C stops)", g.namespace);
    }
    loop {
        let mut rb = c
            .request(Method::GET, &path)
            .header("accept", "text/event-stream");
        if let Some(a) = last {
            rb = rb.query(&[("after", a)]);
        } else if let Some(a) = &from {
            rb = rb.query(&[("after", a)]);
        }
        let resp = match c.stream(rb).await {
            Ok(r) => r,
            Err(e) if last.is_some() && e.downcast_ref::<crate::client::ApiFailure>().is_none() => {
                eprintln!("note: {e:#}; connecting again");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut frames = crate::sse::Frames::new(resp);
        loop {
            match frames.next().await {
                Ok(Some(f)) if f.event == "ready" => {
                    // Where the server started: resume from there at worst.
                    let v: Value = serde_json::from_str(&f.data).unwrap_or_default();
                    if last.is_none() {
                        last = v["after"].as_u64();
                    }
                }
                Ok(Some(f)) if f.event == "change" => {
                    let change: DocChange =
                        serde_json::from_str(&f.data).context("read a change")?;
                    last = Some(change.seq);
                    print_change(g, &change)?;
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    eprintln!("note: {e:#}");
                    break;
                }
            }
        }
        eprintln!("note: the stream ended; connecting again");
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// Follows a live query: prints the snapshot, then each document that
/// enters (`+`), changes in (`~`) or leaves (`-`) the result.
async fn live(
    g: &Global,
    c: &Client,
    ns: &str,
    collection: &str,
    filters: &[String],
    order_by: &[String],
    limit: Option<u32>,
) -> anyhow::Result<()> {
    let mut q: Vec<(&str, String)> = Vec::new();
    if let Some(f) = filter_of(filters)? {
        q.push(("where", f.to_string()));
    }
    if !order_by.is_empty() {
        q.push(("order_by", order_by.join(",")));
    }
    if let Some(l) = limit {
        q.push(("limit", l.to_string()));
    }
    let resp = c
        .stream(
            c.request(Method::GET, &format!("{ns}/collections/{collection}/watch"))
                .header("accept", "text/event-stream")
                .query(&q),
        )
        .await?;
    let mut frames = crate::sse::Frames::new(resp);
    while let Some(f) = frames.next().await? {
        if g.output == Output::Json {
            println!(
                "{}",
                json!({ "event": f.event, "data": serde_json::from_str::<Value>(&f.data).unwrap_or(Value::Null) })
            );
            continue;
        }
        match f.event.as_str() {
            "snapshot" => {
                let v: Value = serde_json::from_str(&f.data).context("read the snapshot")?;
                for d in v["docs"].as_array().into_iter().flatten() {
                    println!("= {} {}", d["id"].as_str().unwrap_or(""), d["data"]);
                }
            }
            "added" | "modified" | "removed" => {
                let change: DocChange = serde_json::from_str(&f.data).context("read a change")?;
                let mark = match f.event.as_str() {
                    "added" => '+',
                    "modified" => '~',
                    _ => '-',
                };
                let data = change
                    .data
                    .map(|d| Value::Object(d).to_string())
                    .unwrap_or_default();
                println!("{mark} {} {data}", change.id);
            }
            "error" => {
                let v: Value = serde_json::from_str(&f.data).unwrap_or_default();
                bail!(
                    "{}",
                    v["message"].as_str().unwrap_or("the live query ended")
                );
            }
            _ => {}
        }
    }
    eprintln!("the server ended the stream; run the command again for a new snapshot");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_and_order_arguments_are_read() {
        assert_eq!(
            condition("status == open").expect("cond"),
            json!({"field": "status", "op": "==", "value": "open"})
        );
        assert_eq!(condition("total >= 10").expect("cond")["value"], json!(10));
        assert_eq!(
            condition("tags in [\"a\", \"b\"]").expect("cond")["value"],
            json!(["a", "b"])
        );
        assert_eq!(
            condition("name == Ada Lovelace").expect("cond")["value"],
            json!("Ada Lovelace")
        );
        assert!(condition("status ==").is_err());
        assert_eq!(order("total:desc").dir, Dir::Desc);
        assert_eq!(order("a.b").field, "a.b");
    }
}
