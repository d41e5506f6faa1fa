//! Document collections: names, bounds, the query language and wire types.
//!
//! A namespace holds collections (`orders`, `users`, …), made by their
//! first write. A document is a JSON object with an id (given, or made by
//! the server) and a `version` that every write renews (increasing across
//! the server, never reused: the `seq` of its change in the change feed).
//!
//! A filter is JSON:
//!
//! ```json
//! {"and": [{"field": "status", "op": "==", "value": "open"},
//!          {"or": [{"field": "total", "op": ">", "value": 100},
//!                  {"field": "tags", "op": "contains", "value": "vip"}]}]}
//! ```
//!
//! Fields are paths of names (`customer.address.city`). Comparisons are
//! typed: a value matches only a field of its own JSON type (numbers with
//! numbers, whatever their form; text with text, byte-wise), so `"1"` never
//! equals `1`. `!=` and `not-in` match only documents that have the field.
//! [`Filter::matches`] is the meaning; every backend's query must agree
//! with it (the conformance suite checks that it does).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Largest document, in bytes of its JSON.
pub const MAX_DOC_BYTES: usize = 1024 * 1024;
/// Longest document id, in bytes.
pub const MAX_DOC_ID_BYTES: usize = 128;
/// Most writes one transaction may hold.
pub const MAX_TRANSACTION_WRITES: usize = 100;
/// Most documents one page of a query returns, and when asked for none.
pub const MAX_QUERY_LIMIT: u32 = 1000;
pub const DEFAULT_QUERY_LIMIT: u32 = 100;
/// Most conditions one filter may hold (nested ones included).
pub const MAX_FILTER_CONDITIONS: usize = 100;
/// Most values an `in` or `not-in` may list.
pub const MAX_IN_VALUES: usize = 100;
/// Most fields a query may sort on.
pub const MAX_ORDER_FIELDS: usize = 4;
/// Most names in a field path, and the longest path in bytes.
pub const MAX_FIELD_DEPTH: usize = 8;
pub const MAX_FIELD_PATH_BYTES: usize = 256;
/// Most changes one page of the change feed returns.
pub const MAX_CHANGES_LIMIT: u32 = 1000;
/// Most documents the id list of one get may name.
pub const MAX_GET_IDS: usize = 100;

/// Checks a collection name: 1 to 63 of `a-z 0-9 - _`, starting with a
/// letter or digit.
pub fn check_collection(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "collection name {name:?} is not valid: use 1 to 63 of a-z, 0-9, '-' and '_', starting with a letter or digit (e.g. orders)"
        ))
    }
}

/// Checks a document id: 1 to [`MAX_DOC_ID_BYTES`] of `A-Z a-z 0-9 - _`.
pub fn check_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= MAX_DOC_ID_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "document id {id:?} is not valid: use 1 to {MAX_DOC_ID_BYTES} of A-Z, a-z, 0-9, '-' and '_', or leave it to the server"
        ))
    }
}

/// A field path: names of `A-Z a-z 0-9 _` (not starting with a digit)
/// joined by `.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath(Vec<String>);

impl FieldPath {
    pub fn parse(path: &str) -> Result<FieldPath, String> {
        let bad = || {
            format!(
                "field {path:?} is not a field path: names of A-Z, a-z, 0-9 and '_' (not starting with a digit) joined by '.', at most {MAX_FIELD_DEPTH} deep (e.g. customer.city)"
            )
        };
        if path.is_empty() || path.len() > MAX_FIELD_PATH_BYTES {
            return Err(bad());
        }
        let names: Vec<String> = path.split('.').map(str::to_owned).collect();
        let ok = names.len() <= MAX_FIELD_DEPTH
            && names.iter().all(|n| {
                !n.is_empty()
                    && !n.as_bytes()[0].is_ascii_digit()
                    && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            });
        if ok { Ok(FieldPath(names)) } else { Err(bad()) }
    }

    pub fn names(&self) -> &[String] {
        &self.0
    }

    /// `$.a.b`, the path in SQLite's and PostgreSQL's JSON path syntax.
    pub fn json_path(&self) -> String {
        let mut out = String::from("$");
        for n in &self.0 {
            out.push('.');
            out.push_str(n);
        }
        out
    }

    /// The field in `doc`, if it has it (a JSON `null` is had).
    pub fn lookup<'a>(&self, doc: &'a Map<String, Value>) -> Option<&'a Value> {
        let mut names = self.0.iter();
        let mut at = doc.get(names.next()?)?;
        for n in names {
            at = at.as_object()?.get(n)?;
        }
        Some(at)
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    NotIn,
    /// The field is an array holding the value.
    Contains,
    /// The field is there (`true`) or not (`false`).
    Exists,
}

impl Op {
    fn parse(s: &str) -> Result<Op, String> {
        Ok(match s {
            "==" => Op::Eq,
            "!=" => Op::Ne,
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "in" => Op::In,
            "not-in" => Op::NotIn,
            "contains" => Op::Contains,
            "exists" => Op::Exists,
            other => {
                return Err(format!(
                    "op {other:?} is not one of ==, !=, <, <=, >, >=, in, not-in, contains, exists"
                ));
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::In => "in",
            Op::NotIn => "not-in",
            Op::Contains => "contains",
            Op::Exists => "exists",
        }
    }
}

/// A scalar a filter compares with.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl Scalar {
    fn from_json(v: &Value) -> Option<Scalar> {
        Some(match v {
            Value::Null => Scalar::Null,
            Value::Bool(b) => Scalar::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Scalar::Int(i),
                None => Scalar::Float(n.as_f64()?),
            },
            Value::String(s) => Scalar::Text(s.clone()),
            Value::Array(_) | Value::Object(_) => return None,
        })
    }

    /// `field == self`, typed.
    pub fn equals(&self, field: &Value) -> bool {
        self.compare(field) == Some(std::cmp::Ordering::Equal)
    }

    /// How `field` compares with `self`, if they are of one type.
    pub fn compare(&self, field: &Value) -> Option<std::cmp::Ordering> {
        match (field, self) {
            (Value::Null, Scalar::Null) => Some(std::cmp::Ordering::Equal),
            (Value::Bool(a), Scalar::Bool(b)) => Some(a.cmp(b)),
            (Value::Number(n), Scalar::Int(b)) => match n.as_i64() {
                Some(a) => Some(a.cmp(b)),
                None => Some(cmp_float_int(n.as_f64()?, *b)),
            },
            (Value::Number(n), Scalar::Float(b)) => match n.as_i64() {
                Some(a) => Some(cmp_float_int(*b, a).reverse()),
                None => n.as_f64()?.partial_cmp(b),
            },
            (Value::String(a), Scalar::Text(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
            _ => None,
        }
    }
}

/// How a float compares with an integer, exactly (as SQLite compares
/// them), not through a rounding of the integer to a float.
fn cmp_float_int(f: f64, i: i64) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    // 2^63 as a float: every i64 is below it, and at or above -2^63.
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if f >= TWO_63 {
        return Ordering::Greater;
    }
    if f < -TWO_63 {
        return Ordering::Less;
    }
    let whole = f.trunc();
    // In range: the whole part is exactly an i64.
    match (whole as i64).cmp(&i) {
        Ordering::Equal => (f - whole).partial_cmp(&0.0).unwrap_or(Ordering::Equal),
        other => other,
    }
}

/// A filter (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Cond {
        field: FieldPath,
        op: Op,
        /// One scalar; a list for `in` and `not-in`; `exists`: one bool.
        values: Vec<Scalar>,
    },
}

impl Filter {
    /// Reads a filter from its JSON, with a message naming what is wrong.
    pub fn parse(v: &Value) -> Result<Filter, String> {
        let mut count = 0;
        let f = Self::parse_at(v, "where", &mut count)?;
        if count > MAX_FILTER_CONDITIONS {
            return Err(format!(
                "the filter holds {count} conditions; at most {MAX_FILTER_CONDITIONS}"
            ));
        }
        Ok(f)
    }

    fn parse_at(v: &Value, at: &str, count: &mut usize) -> Result<Filter, String> {
        let Some(obj) = v.as_object() else {
            return Err(format!(
                "{at} is not an object: give {{\"field\", \"op\", \"value\"}}, {{\"and\": [...]}} or {{\"or\": [...]}}"
            ));
        };
        for (k, list) in [("and", true), ("or", false)] {
            if let Some(parts) = obj.get(k) {
                if obj.len() != 1 {
                    return Err(format!("{at}: {k:?} stands alone in its object"));
                }
                let Some(parts) = parts.as_array().filter(|p| !p.is_empty()) else {
                    return Err(format!("{at}.{k} is not a non-empty list of filters"));
                };
                let mut out = Vec::with_capacity(parts.len());
                for (i, p) in parts.iter().enumerate() {
                    out.push(Self::parse_at(p, &format!("{at}.{k}[{i}]"), count)?);
                    if *count > MAX_FILTER_CONDITIONS {
                        return Err(format!(
                            "the filter holds more than {MAX_FILTER_CONDITIONS} conditions"
                        ));
                    }
                }
                return Ok(if list {
                    Filter::And(out)
                } else {
                    Filter::Or(out)
                });
            }
        }
        if let Some(extra) = obj
            .keys()
            .find(|k| !matches!(k.as_str(), "field" | "op" | "value"))
        {
            return Err(format!(
                "{at}: unknown key {extra:?}; a condition has field, op and value"
            ));
        }
        let field = obj
            .get("field")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{at}.field is missing or not text"))?;
        let field = FieldPath::parse(field).map_err(|e| format!("{at}.field: {e}"))?;
        let op = obj
            .get("op")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{at}.op is missing or not text"))?;
        let op = Op::parse(op).map_err(|e| format!("{at}.{e}"))?;
        let value = obj
            .get("value")
            .ok_or_else(|| format!("{at}.value is missing"))?;
        let scalar = |v: &Value| {
            Scalar::from_json(v).ok_or_else(|| {
                format!(
                    "{at}.value: {op} compares with a string, number, boolean or null, not a list or object",
                    op = op.as_str()
                )
            })
        };
        let values = match op {
            Op::In | Op::NotIn => {
                let Some(list) = value
                    .as_array()
                    .filter(|l| !l.is_empty() && l.len() <= MAX_IN_VALUES)
                else {
                    return Err(format!(
                        "{at}.value: {} takes a list of 1 to {MAX_IN_VALUES} values",
                        op.as_str()
                    ));
                };
                list.iter().map(scalar).collect::<Result<Vec<_>, _>>()?
            }
            Op::Exists => match value {
                Value::Bool(b) => vec![Scalar::Bool(*b)],
                _ => return Err(format!("{at}.value: exists takes true or false")),
            },
            Op::Lt | Op::Le | Op::Gt | Op::Ge => {
                let s = scalar(value)?;
                if !matches!(s, Scalar::Int(_) | Scalar::Float(_) | Scalar::Text(_)) {
                    return Err(format!(
                        "{at}.value: {} orders numbers and text only",
                        op.as_str()
                    ));
                }
                vec![s]
            }
            Op::Eq | Op::Ne | Op::Contains => vec![scalar(value)?],
        };
        *count += 1;
        Ok(Filter::Cond { field, op, values })
    }

    /// Whether `doc` matches: the meaning every backend's query keeps.
    pub fn matches(&self, doc: &Map<String, Value>) -> bool {
        match self {
            Filter::And(parts) => parts.iter().all(|p| p.matches(doc)),
            Filter::Or(parts) => parts.iter().any(|p| p.matches(doc)),
            Filter::Cond { field, op, values } => {
                let got = field.lookup(doc);
                let v = &values[0];
                match (op, got) {
                    (Op::Exists, got) => got.is_some() == (*v == Scalar::Bool(true)),
                    (_, None) => false,
                    (Op::Eq, Some(f)) => v.equals(f),
                    (Op::Ne, Some(f)) => !v.equals(f),
                    (Op::In, Some(f)) => values.iter().any(|v| v.equals(f)),
                    (Op::NotIn, Some(f)) => !values.iter().any(|v| v.equals(f)),
                    (Op::Contains, Some(f)) => f
                        .as_array()
                        .is_some_and(|items| items.iter().any(|i| v.equals(i))),
                    (op, Some(f)) => v.compare(f).is_some_and(|o| match op {
                        Op::Lt => o.is_lt(),
                        Op::Le => o.is_le(),
                        Op::Gt => o.is_gt(),
                        _ => o.is_ge(),
                    }),
                }
            }
        }
    }
}

/// A sort direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dir {
    #[default]
    Asc,
    Desc,
}

/// One field to sort on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderBy {
    pub field: String,
    #[serde(default)]
    pub dir: Dir,
}

/// `POST …/query`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// A filter (see the module docs); none: every document.
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub filter: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub order_by: Vec<OrderBy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The previous page's cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Also count every document the filter matches.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub count: bool,
}

/// A document as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Doc {
    pub id: String,
    pub version: u64,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    pub data: Map<String, Value>,
}

/// One page of a query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocPage {
    pub docs: Vec<Doc>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Every document the filter matches, when asked (`count: true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

/// What a write did to a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeOp {
    Create,
    Update,
    Delete,
}

impl ChangeOp {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeOp::Create => "create",
            ChangeOp::Update => "update",
            ChangeOp::Delete => "delete",
        }
    }

    pub fn parse(s: &str) -> Option<ChangeOp> {
        Some(match s {
            "create" => ChangeOp::Create,
            "update" => ChangeOp::Update,
            "delete" => ChangeOp::Delete,
            _ => return None,
        })
    }
}

/// A write's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocWritten {
    pub collection: String,
    pub id: String,
    pub op: ChangeOp,
    /// The document's new version (for a delete: the change's seq).
    pub version: u64,
}

/// One entry of the change feed, in commit order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocChange {
    /// Its place in the feed: resume after it.
    pub seq: u64,
    pub collection: String,
    pub id: String,
    pub op: ChangeOp,
    pub at_ms: u64,
    /// The document after the change (absent for a delete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Map<String, Value>>,
}

/// One page of the change feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangePage {
    pub changes: Vec<DocChange>,
    /// Pass as `after` for what follows (the last seq read, or the one given).
    pub next_after: u64,
}

/// One write of a transaction (`POST …/transactions`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxWrite {
    /// `create` (fails if the id exists; no id: the server makes one),
    /// `put` (create or replace), `patch` (merge into an existing
    /// document) or `delete`.
    pub op: String,
    pub collection: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The document (`create`, `put`) or the merge patch (`patch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// Only if the document is at this version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_version: Option<u64>,
}

/// `POST …/transactions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transaction {
    pub writes: Vec<TxWrite>,
}

/// Its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransactionResult {
    pub results: Vec<DocWritten>,
}

/// A collection and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionInfo {
    pub name: String,
    pub docs: u64,
    /// Bytes of its documents' JSON.
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionList {
    pub collections: Vec<CollectionInfo>,
}

/// Applies a JSON merge patch (RFC 7386) to `target`.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    fn f(v: Value) -> Filter {
        Filter::parse(&v).expect("filter")
    }

    #[test]
    fn comparisons_are_typed() {
        let d = doc(json!({"n": 1, "x": 1.5, "s": "1", "b": true, "z": null, "tags": ["a", 2]}));
        assert!(f(json!({"field": "n", "op": "==", "value": 1.0})).matches(&d));
        assert!(!f(json!({"field": "s", "op": "==", "value": 1})).matches(&d));
        assert!(f(json!({"field": "s", "op": "==", "value": "1"})).matches(&d));
        assert!(f(json!({"field": "x", "op": ">", "value": 1})).matches(&d));
        assert!(!f(json!({"field": "s", "op": ">", "value": 0})).matches(&d));
        assert!(f(json!({"field": "b", "op": "==", "value": true})).matches(&d));
        assert!(!f(json!({"field": "b", "op": "==", "value": 1})).matches(&d));
        assert!(f(json!({"field": "z", "op": "==", "value": null})).matches(&d));
        assert!(f(json!({"field": "z", "op": "exists", "value": true})).matches(&d));
        assert!(f(json!({"field": "q", "op": "exists", "value": false})).matches(&d));
        assert!(f(json!({"field": "tags", "op": "contains", "value": 2})).matches(&d));
        assert!(!f(json!({"field": "tags", "op": "contains", "value": "2"})).matches(&d));
        // != and not-in need the field.
        assert!(!f(json!({"field": "q", "op": "!=", "value": 1})).matches(&d));
        assert!(!f(json!({"field": "q", "op": "not-in", "value": [1]})).matches(&d));
        assert!(f(json!({"field": "n", "op": "not-in", "value": [2, "1"]})).matches(&d));
    }

    #[test]
    fn floats_and_integers_compare_exactly() {
        let d = doc(json!({"f": 9007199254740992.0, "i": 9007199254740993i64, "h": 2.5}));
        assert!(f(json!({"field": "f", "op": "<", "value": 9007199254740993i64})).matches(&d));
        assert!(f(json!({"field": "i", "op": ">", "value": 9007199254740992.0})).matches(&d));
        assert!(f(json!({"field": "h", "op": ">", "value": 2})).matches(&d));
        assert!(f(json!({"field": "h", "op": "<", "value": 3})).matches(&d));
        assert!(!f(json!({"field": "h", "op": "==", "value": 2})).matches(&d));
        assert!(f(json!({"field": "f", "op": "==", "value": 9007199254740992i64})).matches(&d));
    }

    #[test]
    fn nested_fields_and_boolean_structure() {
        let d = doc(json!({"c": {"city": "Oslo", "zip": 150}}));
        let q = f(json!({"or": [
            {"field": "c.city", "op": "==", "value": "Paris"},
            {"and": [{"field": "c.zip", "op": ">=", "value": 100}, {"field": "c.zip", "op": "<", "value": 200}]},
        ]}));
        assert!(q.matches(&d));
        assert_eq!(
            FieldPath::parse("c.city").expect("path").json_path(),
            "$.c.city"
        );
    }

    #[test]
    fn bad_filters_say_where() {
        for (v, says) in [
            (json!([]), "where is not an object"),
            (
                json!({"field": "a", "op": "~", "value": 1}),
                "is not one of",
            ),
            (
                json!({"field": "a b", "op": "==", "value": 1}),
                "where.field",
            ),
            (
                json!({"field": "a", "op": "==", "value": [1]}),
                "not a list",
            ),
            (
                json!({"field": "a", "op": "in", "value": 1}),
                "takes a list",
            ),
            (
                json!({"field": "a", "op": "<", "value": true}),
                "numbers and text",
            ),
            (json!({"and": []}), "non-empty list"),
            (
                json!({"and": [{"field": "a", "op": "==", "value": 1}], "x": 1}),
                "stands alone",
            ),
            (
                json!({"field": "a", "op": "==", "value": 1, "extra": 2}),
                "unknown key",
            ),
            (
                json!({"or": [{"field": "1a", "op": "==", "value": 1}]}),
                "where.or[0].field",
            ),
        ] {
            let e = Filter::parse(&v).expect_err(&v.to_string());
            assert!(e.contains(says), "{v}: {e}");
        }
        let many: Vec<Value> = (0..=MAX_FILTER_CONDITIONS)
            .map(|i| json!({"field": "a", "op": "==", "value": i}))
            .collect();
        assert!(Filter::parse(&json!({ "and": many })).is_err());
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}, "n": [1]}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}, "n": [1]}));
    }

    #[test]
    fn names_and_ids_are_checked() {
        assert!(check_collection("orders_2024").is_ok());
        assert!(check_collection("_x").is_err());
        assert!(check_collection("Orders").is_err());
        assert!(check_id("0194a-x_Y").is_ok());
        assert!(check_id("a/b").is_err());
        assert!(check_id("").is_err());
    }
}
