//! `nimbus alias set|list|delete` and `nimbus rollback`.

use crate::commands::{client, print_json};
use crate::{AliasCommand, Global, Output};
use anyhow::Context as _;
use nimbus_api::alias::{Alias, AliasList, AliasSet, AliasTarget};
use reqwest::Method;
use std::process::ExitCode;

fn describe(a: &Alias) -> String {
    let routing = |r: &[AliasTarget]| {
        r.iter()
            .map(|t| {
                if t.weight == 100 {
                    format!("version {}", t.version)
                } else {
                    format!("version {} ({} %)", t.version, t.weight)
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = format!("{}@{} → {}", a.function, a.name, routing(&a.routing));
    if !a.previous.is_empty() {
        out.push_str(&format!("  (before: {})", routing(&a.previous)));
    }
    out
}

/// `7` or `7=90`.
fn target(text: &str) -> anyhow::Result<AliasTarget> {
    let (v, w) = text.split_once('=').unwrap_or((text, "100"));
    let version = v
        .trim()
        .parse()
        .with_context(|| format!("{text:?}: expected VERSION or VERSION=WEIGHT, e.g. 7 or 7=90"))?;
    let weight = w
        .trim()
        .trim_end_matches('%')
        .parse()
        .with_context(|| format!("{text:?}: the weight is a whole percent, e.g. 7=90"))?;
    Ok(AliasTarget { version, weight })
}

pub async fn run(g: &Global, cmd: AliasCommand) -> anyhow::Result<ExitCode> {
    let c = client(g)?;
    let base = |name: &str| {
        format!(
            "/api/v1/namespaces/{}/functions/{name}/aliases",
            g.namespace
        )
    };
    match cmd {
        AliasCommand::Set {
            name,
            alias,
            versions,
        } => {
            let routing = versions
                .iter()
                .map(|v| target(v))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let set = if routing.len() == 1 && !versions[0].contains('=') {
                AliasSet {
                    version: Some(routing[0].version),
                    routing: Vec::new(),
                }
            } else {
                AliasSet {
                    version: None,
                    routing,
                }
            };
            let a: Alias = c
                .send(
                    c.request(Method::PUT, &format!("{}/{alias}", base(&name)))
                        .json(&set),
                )
                .await?;
            if g.output == Output::Json {
                print_json(&a)?;
            } else {
                println!("{}", describe(&a));
            }
        }
        AliasCommand::List { name } => {
            let list: AliasList = c.send(c.request(Method::GET, &base(&name))).await?;
            if g.output == Output::Json {
                print_json(&list)?;
            } else if list.aliases.is_empty() {
                println!(
                    "{name} has no aliases; make one with `nimbus alias set {name} prod VERSION`"
                );
            } else {
                for a in &list.aliases {
                    println!("{}", describe(a));
                }
            }
        }
        AliasCommand::Delete { name, alias } => {
            let _: serde_json::Value = c
                .send(c.request(Method::DELETE, &format!("{}/{alias}", base(&name))))
                .await?;
            if g.output == Output::Json {
                print_json(&serde_json::json!({ "deleted": format!("{name}@{alias}") }))?;
            } else {
                println!("deleted alias {name}@{alias}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn rollback(g: &Global, name: &str, alias: Option<String>) -> anyhow::Result<ExitCode> {
    let c = client(g)?;
    let base = format!(
        "/api/v1/namespaces/{}/functions/{name}/aliases",
        g.namespace
    );
    let alias = match alias {
        Some(a) => a,
        None => {
            let list: AliasList = c.send(c.request(Method::GET, &base)).await?;
            match list.aliases.as_slice() {
                [only] => only.name.clone(),
                [] => anyhow::bail!("{name} has no aliases: nothing to roll back"),
                many => anyhow::bail!(
                    "{name} has {} aliases ({}); say which with --alias",
                    many.len(),
                    many.iter()
                        .map(|a| a.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }
    };
    let a: Alias = c
        .send(c.request(Method::POST, &format!("{base}/{alias}/rollback")))
        .await?;
    if g.output == Output::Json {
        print_json(&a)?;
    } else {
        println!("rolled back: {}", describe(&a));
    }
    Ok(ExitCode::SUCCESS)
}
