//! `nimbus config set|unset|get|history|rollback`: the namespace's app
//! config (see `nimbus_api::config`).

use crate::commands::{client, print_json};
use crate::timefmt::format_ms;
use crate::{ConfigCommand, Global, Output};
use anyhow::bail;
use nimbus_api::config::{
    ConfigChange, ConfigCommitted, ConfigHistory, ConfigRollback, ConfigValue, ConfigVersion,
};
use reqwest::Method;
use std::collections::BTreeMap;
use std::process::ExitCode;

/// `KEY=VALUE` pairs, checked here so a typo is caught before any request.
fn pairs(given: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for p in given {
        let Some((k, v)) = p.split_once('=') else {
            bail!("{p:?} is not KEY=VALUE: write e.g. API_URL=https://api.example.com");
        };
        nimbus_api::config::check_key(k).map_err(anyhow::Error::msg)?;
        if out.insert(k.to_owned(), v.to_owned()).is_some() {
            bail!("config key {k} is given twice; give it once");
        }
    }
    Ok(out)
}

/// What a version changed, in words.
fn summary(v: &ConfigVersion) -> String {
    let mut parts = Vec::new();
    if let Some(of) = v.rollback_of {
        parts.push(format!("rolled back to version {of}"));
    }
    if !v.set.is_empty() {
        parts.push(format!("set {}", v.set.join(", ")));
    }
    if !v.deleted.is_empty() {
        parts.push(format!("deleted {}", v.deleted.join(", ")));
    }
    parts.join("; ")
}

fn print_committed(g: &Global, done: &ConfigCommitted) -> anyhow::Result<()> {
    if g.output == Output::Json {
        return print_json(done);
    }
    if done.created {
        println!(
            "config version {} of namespace {}: {}",
            done.current.version,
            g.namespace,
            summary(&done.current)
        );
    } else {
        println!(
            "nothing changed: the config of namespace {} stays at version {}",
            g.namespace, done.current.version
        );
    }
    Ok(())
}

fn if_match(rb: reqwest::RequestBuilder, version: Option<u64>) -> reqwest::RequestBuilder {
    match version {
        Some(v) => rb.header("if-match", format!("\"{v}\"")),
        None => rb,
    }
}

pub async fn run(g: &Global, cmd: ConfigCommand) -> anyhow::Result<ExitCode> {
    let c = client(g)?;
    let base = format!("/api/v1/namespaces/{}/config", g.namespace);
    match cmd {
        ConfigCommand::Set {
            pairs: given,
            message,
            if_version,
        } => {
            let change = ConfigChange {
                set: pairs(&given)?,
                delete: Vec::new(),
                description: message.unwrap_or_default(),
            };
            let rb = if_match(c.request(Method::PATCH, &base).json(&change), if_version);
            let done: ConfigCommitted = c.send(rb).await?;
            print_committed(g, &done)?;
        }
        ConfigCommand::Unset {
            keys,
            message,
            if_version,
        } => {
            for k in &keys {
                nimbus_api::config::check_key(k).map_err(anyhow::Error::msg)?;
            }
            let change = ConfigChange {
                set: BTreeMap::new(),
                delete: keys,
                description: message.unwrap_or_default(),
            };
            let rb = if_match(c.request(Method::PATCH, &base).json(&change), if_version);
            let done: ConfigCommitted = c.send(rb).await?;
            print_committed(g, &done)?;
        }
        ConfigCommand::Get { key, version } => {
            let path = match version {
                Some(v) => format!("{base}/versions/{v}"),
                None => base.clone(),
            };
            let v: ConfigVersion = c.send(c.request(Method::GET, &path)).await?;
            let entries = v.entries.clone().unwrap_or_default();
            match key {
                Some(key) => {
                    let Some(value) = entries.get(&key) else {
                        bail!(
                            "config key {key} is not set in namespace {} (version {}); set it with nimbus config set {key}=VALUE",
                            g.namespace,
                            v.version
                        );
                    };
                    if g.output == Output::Json {
                        print_json(&ConfigValue {
                            key: key.clone(),
                            value: value.clone(),
                            version: v.version,
                        })?;
                    } else {
                        println!("{value}");
                    }
                }
                None if g.output == Output::Json => print_json(&v)?,
                None if v.version == 0 => println!(
                    "no config in namespace {}; set some with nimbus config set KEY=VALUE",
                    g.namespace
                ),
                None => {
                    println!(
                        "# config version {} of namespace {}",
                        v.version, g.namespace
                    );
                    for (k, value) in &entries {
                        println!("{k}={value}");
                    }
                }
            }
        }
        ConfigCommand::History { limit, before } => {
            let mut query: Vec<(&str, String)> = Vec::new();
            if let Some(l) = limit {
                query.push(("limit", l.to_string()));
            }
            if let Some(b) = before {
                query.push(("before", b.to_string()));
            }
            let page: ConfigHistory = c
                .send(
                    c.request(Method::GET, &format!("{base}/versions"))
                        .query(&query),
                )
                .await?;
            if g.output == Output::Json {
                print_json(&page)?;
            } else if page.versions.is_empty() {
                println!("no config versions in namespace {}", g.namespace);
            } else {
                println!(
                    "{:>7}  {:<24}  {:<20}  {:>5}  CHANGE",
                    "VERSION", "WHEN", "BY", "KEYS"
                );
                for v in &page.versions {
                    let mut change = summary(v);
                    if !v.description.is_empty() {
                        change = format!("{change} — {}", v.description);
                    }
                    println!(
                        "{:>7}  {:<24}  {:<20}  {:>5}  {change}",
                        v.version,
                        format_ms(v.created_at_ms),
                        v.author,
                        v.keys
                    );
                }
                if let Some(b) = page.next_before {
                    eprintln!("older versions: add --before {b}");
                }
            }
        }
        ConfigCommand::Rollback {
            version,
            message,
            if_version,
        } => {
            let body = ConfigRollback {
                version,
                description: message.unwrap_or_default(),
            };
            let rb = if_match(
                c.request(Method::POST, &format!("{base}/rollback"))
                    .json(&body),
                if_version,
            );
            let done: ConfigCommitted = c.send(rb).await?;
            print_committed(g, &done)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_split_at_the_first_equals_and_are_checked() {
        let p = pairs(&["A=1".into(), "URL=https://x?a=b".into(), "E=".into()]).expect("pairs");
        assert_eq!(p["URL"], "https://x?a=b");
        assert_eq!(p["E"], "");
        assert!(pairs(&["novalue".into()]).is_err());
        assert!(pairs(&["bad key=1".into()]).is_err());
        assert!(pairs(&["A=1".into(), "A=2".into()]).is_err());
    }
}
