//! Mapping SQLite failures onto [`StoreError`].

use nimbus_core::store::StoreError;

pub(crate) fn backend(e: anyhow::Error) -> StoreError {
    StoreError::Backend(e)
}

/// Whether `e` is a primary-key or unique-constraint violation.
pub(crate) fn is_duplicate_key(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_extended_error_code(),
        Some(rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY | rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
    )
}
