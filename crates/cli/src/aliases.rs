//! `nimbus alias set|list|delete` and `nimbus rollback`.

use crate::commands::{client, print_json};
use crate::{AliasCommand, Global, Output};
use anyhow::Context as _;
use nimbus_api::alias::{Alias, AliasList, AliasSet, AliasTarget, RolloutStart, RolloutState};
use reqwest::Method;
use std::process::ExitCode;

/// `version 7`, or `version 7 (90 %), version 8 (10 %)`.
pub(crate) fn routing_text(r: &[AliasTarget]) -> String {
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
}

fn describe(a: &Alias) -> String {
    let mut out = format!("{}@{} → {}", a.function, a.name, routing_text(&a.routing));
    if !a.previous.is_empty() {
        out.push_str(&format!("  (before: {})", routing_text(&a.previous)));
    }
    if let Some(r) = &a.rollout {
        let state = match r.state {
            RolloutState::Running => {
                format!("running, step {} % of {:?}", r.steps[r.step], r.steps)
            }
            RolloutState::Done => "done".to_owned(),
            RolloutState::RolledBack => "rolled back".to_owned(),
        };
        out.push_str(&format!("\n  rollout {} → {}: {state}", r.from, r.to));
        for line in &r.log {
            out.push_str(&format!("\n    {line}"));
        }
    }
    out
}

/// The alias to act on: the one given, or the function's only one.
async fn the_alias(
    c: &crate::client::Client,
    base: &str,
    name: &str,
    alias: Option<String>,
    what: &str,
) -> anyhow::Result<String> {
    if let Some(a) = alias {
        return Ok(a);
    }
    let list: AliasList = c.send(c.request(Method::GET, base)).await?;
    match list.aliases.as_slice() {
        [only] => Ok(only.name.clone()),
        [] => anyhow::bail!(
            "{name} has no aliases: nothing to {what}; make one with `nimbus alias set {name} prod VERSION`"
        ),
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

pub async fn rollout(
    g: &Global,
    name: &str,
    alias: Option<String>,
    start: RolloutStart,
    wait: bool,
) -> anyhow::Result<ExitCode> {
    let c = client(g)?;
    let base = format!(
        "/api/v1/namespaces/{}/functions/{name}/aliases",
        g.namespace
    );
    let alias = the_alias(&c, &base, name, alias, "roll out").await?;
    let mut a: Alias = c
        .send(
            c.request(Method::POST, &format!("{base}/{alias}/rollout"))
                .json(&start),
        )
        .await?;
    if g.output == Output::Json && !wait {
        print_json(&a)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}", describe(&a));
    if !wait {
        return Ok(ExitCode::SUCCESS);
    }
    let mut shown = a.rollout.as_ref().map_or(0, |r| r.log.len());
    loop {
        let state = a.rollout.as_ref().map(|r| r.state.clone());
        match state {
            Some(RolloutState::Running) => {}
            Some(RolloutState::Done) => {
                println!("rollout done: {name}@{alias} → version {}", start.to);
                return Ok(ExitCode::SUCCESS);
            }
            _ => {
                eprintln!("rollout rolled back: {name}@{alias} is on its previous version again");
                return Ok(ExitCode::FAILURE);
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(
            (start.every_ms / 4).clamp(100, 5_000),
        ))
        .await;
        let list: AliasList = c.send(c.request(Method::GET, &base)).await?;
        let Some(now) = list.aliases.into_iter().find(|x| x.name == alias) else {
            anyhow::bail!("alias {name}@{alias} was deleted during the rollout");
        };
        a = now;
        if let Some(r) = &a.rollout {
            for line in r.log.iter().skip(shown) {
                println!("  {line}");
            }
            shown = r.log.len();
        }
    }
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
    let alias = the_alias(&c, &base, name, alias, "roll back").await?;
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
