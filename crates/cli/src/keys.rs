//! `nimbus key create|list|revoke`.

use crate::commands::{client, print_json};
use crate::timefmt::{format_ms, parse_duration};
use crate::{Global, KeyCommand, Output};
use anyhow::Context as _;
use nimbus_api::auth::{KeyCreate, KeyCreated, KeyInfo, KeyList, Scope};
use reqwest::Method;
use std::process::ExitCode;

pub async fn run(g: &Global, cmd: KeyCommand) -> anyhow::Result<ExitCode> {
    let c = client(g)?;
    match cmd {
        KeyCommand::Create {
            name,
            scopes,
            all_namespaces,
            expires_in,
        } => {
            let scopes = scopes
                .iter()
                .map(|s| s.parse::<Scope>().map_err(anyhow::Error::msg))
                .collect::<anyhow::Result<Vec<_>>>()
                .context("--scope")?;
            let req = KeyCreate {
                name,
                namespace: (!all_namespaces).then(|| g.namespace.clone()),
                scopes,
                expires_in_ms: expires_in
                    .map(|s| parse_duration("--expires-in", &s))
                    .transpose()?,
            };
            let created: KeyCreated = c
                .send(c.request(Method::POST, "/api/v1/keys").json(&req))
                .await?;
            if g.output == Output::Json {
                print_json(&created)?;
            } else {
                print_key(&created.key);
                println!("token (shown once, keep it secret): {}", created.token);
                println!(
                    "use it with: nimbus --token <token> …  or  NIMBUS_TOKEN=<token>  or  Authorization: Bearer <token>"
                );
            }
        }
        KeyCommand::List => {
            let list: KeyList = c.send(c.request(Method::GET, "/api/v1/keys")).await?;
            if g.output == Output::Json {
                print_json(&list)?;
            } else if list.keys.is_empty() {
                println!("no API keys; create one with `nimbus key create NAME --scope …`");
            } else {
                for k in &list.keys {
                    print_key(k);
                }
            }
        }
        KeyCommand::Revoke { id } => {
            let k: KeyInfo = c
                .send(c.request(Method::DELETE, &format!("/api/v1/keys/{id}")))
                .await?;
            if g.output == Output::Json {
                print_json(&k)?;
            } else {
                println!("revoked key {} ({})", k.id, k.name);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_key(k: &KeyInfo) {
    let state = match (k.revoked_at_ms, k.expires_at_ms) {
        (Some(t), _) => format!("revoked {}", format_ms(t)),
        (None, Some(t)) => format!("expires {}", format_ms(t)),
        (None, None) => "no expiry".to_owned(),
    };
    println!(
        "{}  {:<20} {:<16} {}  [{}]",
        k.id,
        k.name,
        k.namespace.as_deref().unwrap_or("*all namespaces*"),
        state,
        k.scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    );
}
