//! The deploy-time import check of Python and Node handlers.
//!
//! A handler module with a syntax error, an import that fails, or no
//! function of the handler's name would otherwise deploy fine and fail at
//! its first call. At deploy (never at a lazy prepare after a restart or a
//! scale to zero) one worker of the new version is started in its sandbox,
//! as a first call would start it; it imports the module and reports
//! `ready` or `init_error` (see [`crate::worker`]). An `init_error` refuses
//! the deploy with `invalid_code` and the interpreter's message; a worker
//! that is ready stays in the version's idle pool, so the first call is warm.
//!
//! The check is bounded by [`DEPLOY_INIT_TIMEOUT_MS`], as Lambda bounds its
//! init phase. exec functions have nothing to import and are not started.

use crate::worker::Worker;
use crate::{Lang, ProcessPrepared, logs};
use nimbus_api::ErrorCode;
use nimbus_core::runtime::RuntimeError;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Longest a new version's handler may take to initialise (start the
/// interpreter, import the module) at deploy, in ms: Lambda's init phase
/// limit. The function's own `timeout_ms` still bounds the first start of
/// a worker at a call.
pub const DEPLOY_INIT_TIMEOUT_MS: u64 = 10_000;

/// Most bytes of the handler's initialisation output (its stderr, where the
/// traceback or stack is) quoted in a refusal.
const QUOTED_OUTPUT_BYTES: usize = 2_048;

impl ProcessPrepared {
    /// Starts one worker and keeps it idle, or says why the handler does
    /// not initialise.
    pub(crate) async fn check_init(&self) -> Result<(), RuntimeError> {
        if self.spec.lang == Lang::Exec {
            return Ok(());
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let mut cap = logs::Capture::new(self.spec.limits.max_log_bytes.get());
        let deadline = Instant::now() + Duration::from_millis(DEPLOY_INIT_TIMEOUT_MS);
        let handler = &self.spec.handler;
        match Worker::start(&self.inner, &self.spec, deadline, &mut cap).await {
            Ok(w) => {
                // Provisioned workers (`min_instances`) start alongside:
                // together they keep no more than that many.
                let wanted = (self.spec.min_instances as usize).max(1);
                self.park_within(w, generation, wanted);
                Ok(())
            }
            Err(e) => {
                let output = quote_output(&cap.into_logs().stderr);
                let (code, what) = match (e.init_error, e.error.code) {
                    (Some((error_type, message)), _) => {
                        (ErrorCode::InvalidCode, format!("{message} ({error_type})"))
                    }
                    (None, ErrorCode::Timeout) => (
                        ErrorCode::InvalidCode,
                        format!(
                            "the handler did not finish initialising within {DEPLOY_INIT_TIMEOUT_MS} ms (DEPLOY_INIT_TIMEOUT_MS)"
                        ),
                    ),
                    (None, ErrorCode::MemoryLimit) => (
                        ErrorCode::InvalidCode,
                        "initialising the handler needed more memory than its memory_limit_mib"
                            .to_owned(),
                    ),
                    (None, code @ (ErrorCode::Internal | ErrorCode::Unavailable)) => {
                        return Err(RuntimeError::new(
                            code,
                            format!("start a worker to check the handler: {}", e.error.message),
                        ));
                    }
                    (None, _) => (ErrorCode::InvalidCode, e.error.message),
                };
                Err(RuntimeError::new(
                    code,
                    format!(
                        "{what}. The {} handler {handler:?} is started at deploy: its module must import without errors and define the handler; fix the code and deploy again{output}",
                        self.spec.lang.display_name()
                    ),
                ))
            }
        }
    }
}

/// The end of the initialisation output, as a suffix for a message.
fn quote_output(stderr: &str) -> String {
    let text = stderr.trim_end();
    if text.is_empty() {
        return String::new();
    }
    let mut start = text.len().saturating_sub(QUOTED_OUTPUT_BYTES);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let cut = if start > 0 { "…" } else { "" };
    format!(". Its output:\n{cut}{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_quoted_from_its_end() {
        assert_eq!(quote_output(" \n"), "");
        assert_eq!(quote_output("boom\n"), ". Its output:\nboom");
        let long = format!("{}é{}", "a".repeat(3000), "tail");
        let q = quote_output(&long);
        assert!(q.ends_with("tail"), "{q}");
        assert!(q.contains('…'));
        assert!(q.len() <= QUOTED_OUTPUT_BYTES + 40, "{}", q.len());
    }
}
