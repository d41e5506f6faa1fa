//! Deploy-time inspection of a function's code: credentials written into
//! it, and the packages it depends on.
//!
//! The scan looks for the formats of well-known credentials, and for long,
//! random-looking literals assigned to a name that says what they are
//! (`api_key = "…"`, `"password": "…"`):
//!
//! | finding                | what matches |
//! |------------------------|--------------|
//! | `aws_access_key_id`    | `AKIA` / `ASIA` + 16 upper-case letters or digits |
//! | `private_key`          | `-----BEGIN … PRIVATE KEY-----` |
//! | `github_token`         | `ghp_` / `gho_` / `ghu_` / `ghs_` / `ghr_` + 36 letters or digits |
//! | `slack_token`          | `xoxb-` / `xoxp-` / `xoxa-` / `xoxr-` / `xoxs-` + 10 or more token characters |
//! | `stripe_secret_key`    | `sk_live_` + 24 or more letters or digits |
//! | `google_api_key`       | `AIza` + 35 letters, digits, `-` or `_` |
//! | `nimbus_api_key`       | `nk_` + 16 hex + `_` + 64 hex |
//! | `high_entropy_secret`  | a quoted literal of 20 to 200 token characters with more than 3.5 bits of entropy per character, assigned to a name containing `key`, `secret`, `token`, `password` or `passwd` |
//!
//! A finding never carries the credential: only its first four characters.
//! Findings are warnings: the deploy goes on, the deploy's answer and the
//! version list them (`nimbus fn show`).

use nimbus_api::function::{CodeFinding, Dependency};

/// Files read for the scan: larger ones are skipped.
pub const SCAN_MAX_FILE_BYTES: usize = 1 << 20;
/// Bytes read for the scan over all of a version's files.
pub const SCAN_MAX_TOTAL_BYTES: usize = 16 << 20;
/// Findings kept per version.
pub const MAX_FINDINGS: usize = 50;

/// What inspecting a version's code found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inspection {
    pub findings: Vec<CodeFinding>,
    pub dependencies: Vec<Dependency>,
}

/// Credentials written in `text`, the contents of `file`.
pub fn scan(file: &str, text: &[u8]) -> Vec<CodeFinding> {
    let mut out = Vec::new();
    let mut line = 1u32;
    let mut i = 0;
    while i < text.len() && out.len() < MAX_FINDINGS {
        if text[i] == b'\n' {
            line += 1;
            i += 1;
            continue;
        }
        // Tokens only start at a boundary, so `xAKIA…` inside a longer
        // word is not one.
        let boundary = i == 0 || !is_token(text[i - 1]);
        if boundary && let Some((kind, len)) = known_format(&text[i..]) {
            out.push(finding(file, line, kind, &text[i..i + len]));
            i += len;
            continue;
        }
        // A quoted credential of a known format is reported as that.
        if (text[i] == b'"' || text[i] == b'\'')
            && known_format(&text[i + 1..]).is_none()
            && let Some(len) = assigned_secret(text, i)
        {
            out.push(finding(
                file,
                line,
                "high_entropy_secret",
                &text[i + 1..i + 1 + len],
            ));
            i += len + 2;
            continue;
        }
        i += 1;
    }
    out
}

fn finding(file: &str, line: u32, kind: &str, matched: &[u8]) -> CodeFinding {
    let head: String = String::from_utf8_lossy(&matched[..matched.len().min(4)]).into_owned();
    CodeFinding {
        file: file.to_owned(),
        line,
        kind: kind.to_owned(),
        excerpt: format!("{head}…"),
    }
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// How many bytes from the start of `s` satisfy `ok`, up to `max`.
fn run(s: &[u8], ok: impl Fn(u8) -> bool, max: usize) -> usize {
    s.iter().take(max).take_while(|&&b| ok(b)).count()
}

/// A credential of a known format at the start of `s`: its kind and length.
fn known_format(s: &[u8]) -> Option<(&'static str, usize)> {
    let upper_digit = |b: u8| b.is_ascii_uppercase() || b.is_ascii_digit();
    let alnum = |b: u8| b.is_ascii_alphanumeric();
    let hex = |b: u8| b.is_ascii_hexdigit();
    // An exact-length token must not go on with more token characters.
    let exact = |s: &[u8], prefix: usize, n: usize, ok: &dyn Fn(u8) -> bool| {
        let body = &s[prefix..];
        (run(body, ok, n) == n && body.get(n).is_none_or(|&b| !is_token(b))).then_some(prefix + n)
    };
    if s.starts_with(b"AKIA") || s.starts_with(b"ASIA") {
        return exact(s, 4, 16, &upper_digit).map(|n| ("aws_access_key_id", n));
    }
    if s.starts_with(b"-----BEGIN ") {
        let end = s
            .iter()
            .take(80)
            .position(|&b| b == b'\n')
            .unwrap_or(80.min(s.len()));
        let head = &s[..end];
        if head.windows(17).any(|w| w == b"PRIVATE KEY-----") || head.ends_with(b"PRIVATE KEY-----")
        {
            return Some(("private_key", end));
        }
        return None;
    }
    for p in [&b"ghp_"[..], b"gho_", b"ghu_", b"ghs_", b"ghr_"] {
        if s.starts_with(p) {
            return exact(s, 4, 36, &alnum).map(|n| ("github_token", n));
        }
    }
    for p in [&b"xoxb-"[..], b"xoxp-", b"xoxa-", b"xoxr-", b"xoxs-"] {
        if s.starts_with(p) {
            let n = run(&s[5..], is_token, 200);
            return (n >= 10).then_some(("slack_token", 5 + n));
        }
    }
    if s.starts_with(b"sk_live_") {
        let n = run(&s[8..], alnum, 200);
        return (n >= 24).then_some(("stripe_secret_key", 8 + n));
    }
    if s.starts_with(b"AIza") {
        return exact(s, 4, 35, &|b: u8| {
            b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
        })
        .map(|n| ("google_api_key", n));
    }
    if s.starts_with(b"nk_") && s.get(19) == Some(&b'_') {
        let id = run(&s[3..], hex, 16);
        if id == 16 {
            return exact(s, 20, 64, &hex).map(|n| ("nimbus_api_key", n));
        }
    }
    None
}

/// If the quote at `text[at]` opens a literal that looks like a secret
/// assigned to a secret-sounding name, the literal's length.
fn assigned_secret(text: &[u8], at: usize) -> Option<usize> {
    let quote = text[at];
    let body = &text[at + 1..];
    let len = body.iter().take(201).position(|&b| b == quote)?;
    let lit = &body[..len];
    if !(20..=200).contains(&len)
        || !lit
            .iter()
            .all(|&b| is_token(b) || matches!(b, b'+' | b'/' | b'=' | b'.'))
        || entropy(lit) <= 3.5
    {
        return None;
    }
    // What precedes: `name = `, `name: `, `"name": `, `name := `.
    let before = &text[..at];
    let mut j = before.len();
    while j > 0 && matches!(before[j - 1], b' ' | b'\t') {
        j -= 1;
    }
    let mut ops = 0;
    while j > 0 && matches!(before[j - 1], b'=' | b':') && ops < 2 {
        j -= 1;
        ops += 1;
    }
    if ops == 0 {
        return None;
    }
    while j > 0 && matches!(before[j - 1], b' ' | b'\t' | b'"' | b'\'') {
        j -= 1;
    }
    let start = before[..j]
        .iter()
        .rposition(|&b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
        .map_or(0, |p| p + 1);
    let name = String::from_utf8_lossy(&before[start..j]).to_ascii_lowercase();
    ["key", "secret", "token", "password", "passwd"]
        .iter()
        .any(|w| name.contains(w))
        .then_some(len)
}

/// Shannon entropy of `s`, in bits per byte.
fn entropy(s: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for &b in s {
        counts[b as usize] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// The packages a `requirements.txt` pins or names (`name==1.2.3`,
/// `name>=1`, `name`), lower-cased as PyPI compares them.
pub fn python_requirements(text: &str) -> Vec<Dependency> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with('-') {
            continue;
        }
        let line = line.split(';').next().unwrap_or("").trim();
        let end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
            .unwrap_or(line.len());
        let (name, rest) = line.split_at(end);
        if name.is_empty() {
            continue;
        }
        let rest = rest.trim_start();
        let rest = if rest.starts_with('[') {
            rest.split_once(']').map_or("", |(_, r)| r).trim_start()
        } else {
            rest
        };
        let version = rest.strip_prefix("==").map(|v| v.trim().to_owned());
        out.push(Dependency {
            ecosystem: "pypi".to_owned(),
            name: name.to_ascii_lowercase().replace('_', "-"),
            version: version.unwrap_or_else(|| rest.trim().to_owned()),
        });
    }
    out
}

/// The packages a `package-lock.json` (lockfile version 2 or 3) installs,
/// or, without one, what `package.json` asks for.
pub fn node_packages(lock: Option<&[u8]>, manifest: Option<&[u8]>) -> Vec<Dependency> {
    let mut out = Vec::new();
    if let Some(v) = lock.and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
        && let Some(pkgs) = v["packages"].as_object()
    {
        for (path, p) in pkgs {
            let Some(name) = path.rsplit_once("node_modules/").map(|(_, n)| n) else {
                continue;
            };
            if p["dev"].as_bool() == Some(true) {
                continue;
            }
            out.push(Dependency {
                ecosystem: "npm".to_owned(),
                name: name.to_owned(),
                version: p["version"].as_str().unwrap_or("").to_owned(),
            });
        }
        out.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
        return out;
    }
    if let Some(v) = manifest.and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
        && let Some(deps) = v["dependencies"].as_object()
    {
        for (name, range) in deps {
            out.push(Dependency {
                ecosystem: "npm".to_owned(),
                name: name.clone(),
                version: range.as_str().unwrap_or("").to_owned(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(u32, String)> {
        scan("f", text.as_bytes())
            .into_iter()
            .map(|f| (f.line, f.kind))
            .collect()
    }

    #[test]
    fn well_known_credentials_are_found_with_their_line() {
        let text = "x = 1\nAWS = 'AKIAIOSFODNN7EXAMPLE'\n-----BEGIN RSA PRIVATE KEY-----\nMIIE\n\
                    gh = ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789\nslack: xoxb-1234567890-abcdef\n\
                    stripe = sk_live_abcdefghijklmnopqrstuvwx\ng = AIzaSyA-1234567890abcdefghijklmnopqrstu\n\
                    nk_0123456789abcdef_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n";
        assert_eq!(
            kinds(text),
            [
                (2, "aws_access_key_id".to_owned()),
                (3, "private_key".to_owned()),
                (5, "github_token".to_owned()),
                (6, "slack_token".to_owned()),
                (7, "stripe_secret_key".to_owned()),
                (8, "google_api_key".to_owned()),
                (9, "nimbus_api_key".to_owned()),
            ]
        );
        let f = &scan("app.py", b"k = 'AKIAIOSFODNN7EXAMPLE'")[0];
        assert_eq!(f.excerpt, "AKIA…", "the credential itself is never kept");
        assert_eq!(
            f.kind, "aws_access_key_id",
            "named by its format, not as a random literal"
        );
        assert_eq!(f.file, "app.py");
    }

    #[test]
    fn look_alikes_are_not_credentials() {
        assert!(kinds("MYAKIAIOSFODNN7EXAMPLE").is_empty(), "inside a word");
        assert!(kinds("AKIAIOSFODNN7EXAMPLEXX").is_empty(), "too long");
        assert!(kinds("AKIA-lower").is_empty());
        assert!(kinds("-----BEGIN CERTIFICATE-----").is_empty());
        assert!(kinds("ghp_short").is_empty());
    }

    #[test]
    fn random_literals_count_only_when_named_like_a_secret() {
        let secret = "q8ZfT2vLx9RkWm4Hs7JdNc3Yp6Ab1Ue5";
        assert_eq!(
            kinds(&format!("API_KEY = \"{secret}\"\n")),
            [(1, "high_entropy_secret".to_owned())]
        );
        assert_eq!(
            kinds(&format!("{{\"client_secret\": '{secret}'}}")),
            [(1, "high_entropy_secret".to_owned())]
        );
        assert!(
            kinds(&format!("greeting = \"{secret}\"")).is_empty(),
            "name"
        );
        assert!(
            kinds("password = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaa\"").is_empty(),
            "no entropy"
        );
        assert!(kinds("token = \"short\"").is_empty());
    }

    #[test]
    fn dependencies_are_read_from_the_lock_files() {
        let py = python_requirements(
            "# pinned\nrequests==2.32.3\nFlask_Cors >= 4  # range\nuvicorn[standard]==0.30.1 ; python_version > '3.8'\n-r other.txt\n",
        );
        let got: Vec<_> = py
            .iter()
            .map(|d| (d.name.as_str(), d.version.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("requests", "2.32.3"),
                ("flask-cors", ">= 4"),
                ("uvicorn", "0.30.1")
            ]
        );
        let lock = br#"{"lockfileVersion":3,"packages":{"":{"name":"app"},"node_modules/left-pad":{"version":"1.3.0"},"node_modules/jest":{"version":"29.0.0","dev":true},"node_modules/a/node_modules/b":{"version":"2.0.0"}}}"#;
        let got: Vec<_> = node_packages(Some(lock), None)
            .into_iter()
            .map(|d| (d.name, d.version))
            .collect();
        assert_eq!(
            got,
            [
                ("b".to_owned(), "2.0.0".to_owned()),
                ("left-pad".to_owned(), "1.3.0".to_owned())
            ]
        );
        let manifest = br#"{"dependencies":{"express":"^4.19.2"}}"#;
        assert_eq!(node_packages(None, Some(manifest))[0].version, "^4.19.2");
    }
}
