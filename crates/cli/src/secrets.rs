//! `nimbus secret set|list|delete`.

use crate::commands::{client, print_json};
use crate::timefmt::format_ms;
use crate::{Global, Output, SecretCommand};
use anyhow::Context as _;
use nimbus_api::wire::{SecretInfo, SecretList};
use reqwest::Method;
use std::io::Read as _;
use std::process::ExitCode;

pub async fn run(g: &Global, cmd: SecretCommand) -> anyhow::Result<ExitCode> {
    let c = client(g)?;
    let base = format!("/api/v1/namespaces/{}/secrets", g.namespace);
    match cmd {
        SecretCommand::Set { name, from_file } => {
            let value = match &from_file {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("read the secret's value from {}", path.display()))?,
                None => {
                    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                        eprintln!("value of {name} (end with Ctrl-D):");
                    }
                    let mut v = String::new();
                    std::io::stdin()
                        .read_to_string(&mut v)
                        .context("read the secret's value from stdin (it must be UTF-8)")?;
                    let trimmed = v
                        .strip_suffix("\r\n")
                        .or_else(|| v.strip_suffix('\n'))
                        .unwrap_or(&v);
                    trimmed.to_owned()
                }
            };
            let info: SecretInfo = c
                .send(
                    c.request(Method::PUT, &format!("{base}/{name}"))
                        .json(&serde_json::json!({ "value": value })),
                )
                .await?;
            if g.output == Output::Json {
                print_json(&info)?;
            } else {
                println!(
                    "set secret {}/{} ({} bytes); grant it with grants.secrets: [{}]",
                    info.namespace,
                    info.name,
                    value.len(),
                    info.name
                );
                if !info.used_by.is_empty() {
                    println!(
                        "  {} will use the new value from their next call",
                        info.used_by.join(", ")
                    );
                }
            }
        }
        SecretCommand::List => {
            let list: SecretList = c.send(c.request(Method::GET, &base)).await?;
            if g.output == Output::Json {
                print_json(&list)?;
            } else if list.secrets.is_empty() {
                println!(
                    "no secrets in namespace {}; set one with `nimbus secret set NAME`",
                    g.namespace
                );
            } else {
                for s in &list.secrets {
                    let used = if s.used_by.is_empty() {
                        "(granted to no function)".to_owned()
                    } else {
                        format!("granted to {}", s.used_by.join(", "))
                    };
                    println!(
                        "{:<32} updated {}  {used}",
                        s.name,
                        format_ms(s.updated_at_ms)
                    );
                }
            }
        }
        SecretCommand::Delete { name } => {
            let _: serde_json::Value = c
                .send(c.request(Method::DELETE, &format!("{base}/{name}")))
                .await?;
            if g.output == Output::Json {
                print_json(&serde_json::json!({ "deleted": format!("{}/{name}", g.namespace) }))?;
            } else {
                println!("deleted secret {}/{name}", g.namespace);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
