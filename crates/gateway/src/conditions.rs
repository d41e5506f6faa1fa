//! Conditional writes: `If-Match: "<version>"` and `If-None-Match: *`, as
//! the data services' REST routes take them (versions are their ETags).

use crate::error::ApiError;
use nimbus_api::ErrorCode;

/// What a write requires of what it writes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Precondition {
    /// `If-None-Match: *`: nothing is there yet.
    Absent,
    /// `If-Match: "<version>"`: it is at this version.
    Version(u64),
}

/// The request's precondition, if it has one.
pub(crate) fn precondition(headers: &http::HeaderMap) -> Result<Option<Precondition>, ApiError> {
    if let Some(v) = headers.get(http::header::IF_NONE_MATCH) {
        return match v.to_str().map(str::trim) {
            Ok("*") => Ok(Some(Precondition::Absent)),
            _ => Err(ApiError::new(
                ErrorCode::BadRequest,
                "If-None-Match takes only *: write only where nothing is yet",
            )),
        };
    }
    let Some(v) = headers.get(http::header::IF_MATCH) else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .map(|s| s.trim().trim_start_matches("W/").trim_matches('"'))
        .and_then(|s| s.parse::<u64>().ok())
        .map(|v| Some(Precondition::Version(v)))
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::BadRequest,
                format!(
                    "If-Match is {:?}; give the version a read returned as its ETag, e.g. \"42\"",
                    String::from_utf8_lossy(v.as_bytes())
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: &str, value: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
            http::HeaderValue::from_str(value).expect("value"),
        );
        h
    }

    #[test]
    fn preconditions_are_read_from_their_headers() {
        assert_eq!(precondition(&http::HeaderMap::new()).expect("none"), None);
        assert_eq!(
            precondition(&with("if-match", "\"7\"")).expect("match"),
            Some(Precondition::Version(7))
        );
        assert_eq!(
            precondition(&with("if-none-match", "*")).expect("none-match"),
            Some(Precondition::Absent)
        );
        assert!(precondition(&with("if-match", "soon")).is_err());
        assert!(precondition(&with("if-none-match", "\"3\"")).is_err());
    }
}
