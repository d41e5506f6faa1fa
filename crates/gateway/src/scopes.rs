//! The one table of endpoint × required scope. The admin API's middleware
//! looks every matched request up here; docs/SECURITY.md shows the table
//! and a test walks it, so an endpoint cannot be added without its scope.

use nimbus_api::auth::Scope;

/// An endpoint and what it needs.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    pub method: &'static str,
    /// The route as the router writes it, under `/api/v1` (or the function URL).
    pub path: &'static str,
    pub scope: Scope,
    /// Where the namespace comes from: the path's `{ns}`, or, for
    /// endpoints across namespaces, the key's own namespace (lists are
    /// filtered to it; a record of another namespace is not found).
    pub namespaced: bool,
}

const fn ep(method: &'static str, path: &'static str, scope: Scope, namespaced: bool) -> Endpoint {
    Endpoint {
        method,
        path,
        scope,
        namespaced,
    }
}

/// Every endpoint that needs a principal.
pub const ENDPOINTS: &[Endpoint] = &[
    ep(
        "POST",
        "/api/v1/namespaces/{ns}/deployments",
        Scope::FunctionsDeploy,
        true,
    ),
    ep(
        "GET",
        "/api/v1/namespaces/{ns}/functions",
        Scope::FunctionsRead,
        true,
    ),
    ep(
        "GET",
        "/api/v1/namespaces/{ns}/functions/{name}",
        Scope::FunctionsRead,
        true,
    ),
    ep(
        "DELETE",
        "/api/v1/namespaces/{ns}/functions/{name}",
        Scope::FunctionsDeploy,
        true,
    ),
    ep(
        "PUT",
        "/api/v1/namespaces/{ns}/functions/{name}/code",
        Scope::FunctionsDeploy,
        true,
    ),
    ep(
        "GET",
        "/api/v1/namespaces/{ns}/functions/{name}/versions/{version}",
        Scope::FunctionsRead,
        true,
    ),
    ep(
        "GET",
        "/api/v1/namespaces/{ns}/functions/{name}/invocations",
        Scope::LogsRead,
        true,
    ),
    ep(
        "GET",
        "/api/v1/namespaces/{ns}/functions/{name}/invocations/live",
        Scope::LogsRead,
        true,
    ),
    ep(
        "GET",
        "/api/v1/namespaces/{ns}/functions/{name}/aliases",
        Scope::FunctionsRead,
        true,
    ),
    ep(
        "PUT",
        "/api/v1/namespaces/{ns}/functions/{name}/aliases/{alias}",
        Scope::FunctionsDeploy,
        true,
    ),
    ep(
        "POST",
        "/api/v1/namespaces/{ns}/functions/{name}/aliases/{alias}/rollback",
        Scope::FunctionsDeploy,
        true,
    ),
    ep(
        "POST",
        "/api/v1/namespaces/{ns}/functions/{name}/aliases/{alias}/rollout",
        Scope::FunctionsDeploy,
        true,
    ),
    ep(
        "DELETE",
        "/api/v1/namespaces/{ns}/functions/{name}/aliases/{alias}",
        Scope::FunctionsDeploy,
        true,
    ),
    ep(
        "GET",
        "/api/v1/namespaces/{ns}/secrets",
        Scope::SecretsWrite,
        true,
    ),
    ep(
        "PUT",
        "/api/v1/namespaces/{ns}/secrets/{name}",
        Scope::SecretsWrite,
        true,
    ),
    ep(
        "DELETE",
        "/api/v1/namespaces/{ns}/secrets/{name}",
        Scope::SecretsWrite,
        true,
    ),
    ep("GET", "/api/v1/namespaces/{ns}/kv", Scope::KvRead, true),
    ep(
        "GET",
        "/api/v1/namespaces/{ns}/kv/{store}/keys",
        Scope::KvRead,
        true,
    ),
    ep(
        "GET",
        "/api/v1/namespaces/{ns}/kv/{store}/keys/{*key}",
        Scope::KvRead,
        true,
    ),
    ep(
        "PUT",
        "/api/v1/namespaces/{ns}/kv/{store}/keys/{*key}",
        Scope::KvWrite,
        true,
    ),
    ep(
        "DELETE",
        "/api/v1/namespaces/{ns}/kv/{store}/keys/{*key}",
        Scope::KvWrite,
        true,
    ),
    ep(
        "POST",
        "/api/v1/namespaces/{ns}/kv/{store}/incr/{*key}",
        Scope::KvWrite,
        true,
    ),
    ep(
        "POST",
        "/api/v1/namespaces/{ns}/kv/{store}/get",
        Scope::KvRead,
        true,
    ),
    ep(
        "POST",
        "/api/v1/namespaces/{ns}/kv/{store}/set",
        Scope::KvWrite,
        true,
    ),
    ep(
        "POST",
        "/api/v1/namespaces/{ns}/kv/{store}/delete",
        Scope::KvWrite,
        true,
    ),
    ep(
        "GET",
        "/api/v1/namespaces/{ns}/config",
        Scope::ConfigRead,
        true,
    ),
    ep(
        "PATCH",
        "/api/v1/namespaces/{ns}/config",
        Scope::ConfigWrite,
        true,
    ),
    ep(
        "GET",
        "/api/v1/namespaces/{ns}/config/keys/{key}",
        Scope::ConfigRead,
        true,
    ),
    ep(
        "PUT",
        "/api/v1/namespaces/{ns}/config/keys/{key}",
        Scope::ConfigWrite,
        true,
    ),
    ep(
        "DELETE",
        "/api/v1/namespaces/{ns}/config/keys/{key}",
        Scope::ConfigWrite,
        true,
    ),
    ep(
        "GET",
        "/api/v1/namespaces/{ns}/config/versions",
        Scope::ConfigRead,
        true,
    ),
    ep(
        "GET",
        "/api/v1/namespaces/{ns}/config/versions/{version}",
        Scope::ConfigRead,
        true,
    ),
    ep(
        "POST",
        "/api/v1/namespaces/{ns}/config/rollback",
        Scope::ConfigWrite,
        true,
    ),
    ep(
        "GET",
        "/api/v1/namespaces/{ns}/collections",
        Scope::DocsRead,
        true,
    ),
    ep(
        "POST",
        "/api/v1/namespaces/{ns}/collections/{collection}/docs",
        Scope::DocsWrite,
        true,
    ),
    ep(
        "GET",
        "/api/v1/namespaces/{ns}/collections/{collection}/docs/{id}",
        Scope::DocsRead,
        true,
    ),
    ep(
        "PUT",
        "/api/v1/namespaces/{ns}/collections/{collection}/docs/{id}",
        Scope::DocsWrite,
        true,
    ),
    ep(
        "PATCH",
        "/api/v1/namespaces/{ns}/collections/{collection}/docs/{id}",
        Scope::DocsWrite,
        true,
    ),
    ep(
        "DELETE",
        "/api/v1/namespaces/{ns}/collections/{collection}/docs/{id}",
        Scope::DocsWrite,
        true,
    ),
    ep(
        "POST",
        "/api/v1/namespaces/{ns}/collections/{collection}/query",
        Scope::DocsRead,
        true,
    ),
    ep(
        "GET",
        "/api/v1/namespaces/{ns}/collections/{collection}/changes",
        Scope::DocsRead,
        true,
    ),
    ep(
        "GET",
        "/api/v1/namespaces/{ns}/collections/{collection}/watch",
        Scope::DocsRead,
        true,
    ),
    ep(
        "POST",
        "/api/v1/namespaces/{ns}/transactions",
        Scope::DocsWrite,
        true,
    ),
    ep("GET", "/api/v1/invocations", Scope::LogsRead, false),
    ep("GET", "/api/v1/invocations/{id}", Scope::LogsRead, false),
    ep("GET", "/api/v1/usage", Scope::UsageRead, false),
    ep("POST", "/api/v1/keys", Scope::KeysAdmin, false),
    ep("GET", "/api/v1/keys", Scope::KeysAdmin, false),
    ep("DELETE", "/api/v1/keys/{id}", Scope::KeysAdmin, false),
    ep("GET", "/api/v1/audit", Scope::AuditRead, false),
    ep("GET", "/metrics", Scope::MetricsRead, false),
    ep(
        "ANY",
        "/fn/{ns}/{name}[@{version or alias}]/…",
        Scope::FunctionsInvoke,
        true,
    ),
];

/// The table as docs/SECURITY.md shows it (a test keeps the two equal).
pub fn markdown_table() -> String {
    let mut out = String::from("| method | path | scope | namespace |\n|---|---|---|---|\n");
    for e in ENDPOINTS {
        out.push_str(&format!(
            "| {} | `{}` | `{}` | {} |\n",
            e.method,
            e.path,
            e.scope,
            if e.namespaced {
                "the path's"
            } else {
                "the key's own (lists filtered to it)"
            }
        ));
    }
    out
}

/// The endpoint of a matched admin route.
pub fn lookup(method: &http::Method, matched: &str) -> Option<&'static Endpoint> {
    ENDPOINTS
        .iter()
        .find(|e| e.method == method.as_str() && e.path == matched)
}

/// The value of `{ns}` in `path` for the route `pattern`.
pub fn namespace_in<'a>(pattern: &str, path: &'a str) -> Option<&'a str> {
    let at = pattern.split('/').position(|s| s == "{ns}")?;
    path.split('/').nth(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_md_shows_the_table_as_it_is_in_code() {
        let doc = include_str!("../../../docs/SECURITY.md");
        assert!(
            doc.contains(&markdown_table()),
            "docs/SECURITY.md must contain this table:\n{}",
            markdown_table()
        );
    }

    #[test]
    fn the_namespace_is_read_from_the_path() {
        assert_eq!(
            namespace_in(
                "/api/v1/namespaces/{ns}/functions/{name}",
                "/api/v1/namespaces/team-a/functions/f"
            ),
            Some("team-a")
        );
        assert_eq!(namespace_in("/api/v1/usage", "/api/v1/usage"), None);
    }

    #[test]
    fn every_scope_is_needed_somewhere() {
        for (scope, _, _) in nimbus_api::auth::SCOPES {
            let used = ENDPOINTS.iter().any(|e| e.scope == *scope);
            assert!(used, "{scope} guards no endpoint");
        }
    }
}
