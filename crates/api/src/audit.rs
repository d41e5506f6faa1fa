//! The audit log: one entry per admin action (`nimbus audit`).

use serde::{Deserialize, Serialize};

/// One admin action: who did what, when, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// A UUIDv7: entries sort by id as by time.
    pub id: String,
    /// When the action was answered, in ms since the Unix epoch.
    pub at_ms: u64,
    /// `admin` (the admin token), `key:<id>` (an API key), or `anonymous`
    /// (no valid token: the action was refused).
    pub actor: String,
    /// The endpoint: method and route (`DELETE /api/v1/namespaces/{ns}/functions/{name}`).
    pub action: String,
    /// The path as requested (`/api/v1/namespaces/shop/functions/orders`).
    pub path: String,
    /// The namespace the action was about, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The HTTP status of the answer.
    pub status: u16,
    /// The error code of a refused or failed action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
}

/// `GET /api/v1/audit`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditList {
    /// Newest first.
    pub entries: Vec<AuditEntry>,
}
