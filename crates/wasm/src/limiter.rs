//! Per-invocation memory accounting.
//!
//! Wasmtime asks the store's [`ResourceLimiter`] before any linear memory
//! grows (including its initial allocation). Growth past the function's
//! `memory_limit_mib` is refused — `memory.grow` returns -1, which a guest
//! allocator reports as out of memory, usually by aborting — and the refusal
//! is remembered, so the failure that follows is reported as
//! `memory_limit` rather than a generic trap.

use wasmtime::ResourceLimiter;

/// Most table elements one table may hold (guards host memory against a
/// table-growth bomb; typical guests use a few thousand).
pub const MAX_TABLE_ELEMENTS: usize = 1_000_000;

#[derive(Debug, Clone)]
pub struct MemoryLimiter {
    limit_bytes: usize,
    /// Sum of the current sizes of the instance's memories.
    current_bytes: usize,
    pub peak_bytes: usize,
    pub denied: bool,
}

impl MemoryLimiter {
    pub fn new(limit_bytes: u64) -> Self {
        MemoryLimiter {
            limit_bytes: usize::try_from(limit_bytes).unwrap_or(usize::MAX),
            current_bytes: 0,
            peak_bytes: 0,
            denied: false,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        let total = self.current_bytes.saturating_add(growth);
        if total > self.limit_bytes {
            self.denied = true;
            return Ok(false);
        }
        self.current_bytes = total;
        self.peak_bytes = self.peak_bytes.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_growth_past_the_limit_across_memories() {
        let mut l = MemoryLimiter::new(100);
        assert!(l.memory_growing(0, 60, None).expect("grow"));
        assert!(l.memory_growing(0, 40, None).expect("second memory"));
        assert!(!l.denied);
        assert!(!l.memory_growing(40, 41, None).expect("refused"));
        assert!(l.denied);
        assert_eq!(l.peak_bytes, 100);
    }
}
