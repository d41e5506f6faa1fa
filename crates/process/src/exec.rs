//! The exec runtime: any executable, started fresh for every invocation, in
//! the spirit of the OpenFaaS classic watchdog and CGI.
//!
//! - The handler is a path to an executable file inside the code directory
//!   (default `bootstrap`); it runs with `/code` as its working directory.
//! - The request body is its stdin (closed after the body).
//! - Request metadata are CGI/1.1 environment variables: `REQUEST_METHOD`,
//!   `PATH_INFO`, `QUERY_STRING`, `CONTENT_TYPE`, `CONTENT_LENGTH`,
//!   `SERVER_PROTOCOL`, `REMOTE_ADDR`, `HTTP_<HEADER>` for every header, and
//!   `NIMBUS_INVOCATION_ID`, plus the function's own environment.
//! - Its stdout is the response. If stdout starts with CGI header lines
//!   (`Name: value`, e.g. `Content-Type:` or `Status: 404`) followed by a
//!   blank line, those are the response's headers and status; otherwise
//!   the whole output is the body of a 200 `application/octet-stream`.
//! - Its stderr is the invocation's log.
//! - A non-zero exit status is `crashed` (the stderr tail is in the logs);
//!   running past the deadline is `timeout`; an OOM kill is `memory_limit`.
//!   When the process exits, anything it left running is killed.

use crate::logs::Capture;
use crate::sandbox::Launch;
use crate::{Inner, VersionSpec};
use nimbus_api::ErrorCode;
use nimbus_core::cgi::{CgiOutput, cgi_env, parse_cgi_response};
use nimbus_core::runtime::{FnRequest, FnResponse, InvokeContext, RuntimeError};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Room for CGI headers on top of `max_response_body_bytes`.
const MAX_HEADER_BYTES: u64 = 64 * 1024;

/// Runs one exec invocation; returns its result and memory peak.
pub(crate) async fn invoke(
    inner: &Inner,
    spec: &VersionSpec,
    req: FnRequest,
    ctx: &InvokeContext,
    token: Option<&str>,
    cap: &mut Capture,
) -> (Result<FnResponse, RuntimeError>, Option<u64>) {
    let internal = |what: &str, e: std::io::Error| {
        RuntimeError::new(ErrorCode::Internal, format!("{what}: {e}"))
    };
    let sandbox = match inner.sandbox() {
        Ok(s) => s,
        Err(e) => return (Err(e), None),
    };
    let cgroup = match inner.worker_cgroup(spec.limits.memory_limit_bytes()) {
        Ok(c) => c,
        Err(e) => return (Err(e), None),
    };
    let (parts, body) = req.into_parts();
    let mut env = spec.env.clone();
    env.extend(cgi_env(&parts, body.len()));
    env.push(("NIMBUS_INVOCATION_ID".into(), ctx.invocation_id.clone()));
    if let Some(t) = token {
        env.push(("NIMBUS_API_TOKEN".into(), t.to_owned()));
    }
    let launch = Launch {
        code_dir: &spec.code_dir,
        program: sandbox.code_root(&spec.code_dir).join(&spec.handler),
        args: Vec::new(),
        env,
        cgroup_procs: cgroup.as_ref().map(|c| c.procs_fds()).unwrap_or_default(),
        pass_fds: Vec::new(),
        address_space_limit: inner.address_space_limit(
            spec.lang,
            spec.limits.memory_limit_bytes(),
            cgroup.is_some(),
        ),
        network: spec.network,
        netns: spec.egress.as_ref().map(|e| e.netns()),
        api: spec.api_mounts(),
        writable: false,
    };
    let mut cmd = match sandbox.command(launch) {
        Ok(c) => c,
        Err(e) => return (Err(internal("prepare the command", e)), None),
    };
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return (Err(internal("start the function", e)), None),
    };
    let pid = child.id();
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let max_body = spec.limits.max_response_body_bytes.get();
    let out_limit =
        usize::try_from(max_body.saturating_add(MAX_HEADER_BYTES)).unwrap_or(usize::MAX);
    let mut out: Vec<u8> = Vec::new();
    let mut input = body;
    let mut b1 = vec![0u8; 16 * 1024];
    let mut status = None;
    let mut timed_out = false;
    let mut too_large = false;
    let sleep = tokio::time::sleep_until(ctx.deadline.into());
    tokio::pin!(sleep);
    // After the process exits, its pipes close once everything it started
    // is gone (the pid namespace ends with it); wait a little for that.
    let mut exited_at: Option<tokio::time::Instant> = None;
    let oom_before = cgroup.as_ref().map(|c| c.oom_kills()).unwrap_or(0);
    if input.is_empty() {
        stdin = None;
    }
    loop {
        if status.is_some() && stdout.is_none() && stderr.is_none() {
            break;
        }
        let grace = async {
            match exited_at {
                Some(t) => tokio::time::sleep_until(t + Duration::from_millis(200)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = async {
                match stdin.as_mut() {
                    Some(s) => s.write(&input).await,
                    None => std::future::pending().await,
                }
            } => match r {
                Ok(n) if n < input.len() => {
                    let _ = input.split_to(n);
                }
                _ => stdin = None,
            },
            r = async {
                match stdout.as_mut() {
                    Some(s) => s.read_buf(&mut out).await,
                    None => std::future::pending().await,
                }
            } => match r {
                Ok(0) | Err(_) => stdout = None,
                Ok(_) if out.len() > out_limit => {
                    too_large = true;
                    break;
                }
                Ok(_) => {}
            },
            r = async {
                match stderr.as_mut() {
                    Some(s) => s.read(&mut b1).await,
                    None => std::future::pending().await,
                }
            } => match r {
                Ok(0) | Err(_) => stderr = None,
                Ok(n) => cap.push(1, &b1[..n]),
            },
            r = child.wait(), if status.is_none() => {
                status = Some(r);
                exited_at = Some(tokio::time::Instant::now());
            },
            () = grace => break,
            () = &mut sleep => {
                timed_out = true;
                break;
            }
        }
    }
    drop(stdin);
    if matches!(child.try_wait(), Ok(None))
        && let Some(pid) = pid
    {
        crate::sandbox::kill_group(pid);
    }
    let _ = child.start_kill();
    if let Some(cg) = &cgroup {
        cg.kill_all();
    }
    // Collect the last log lines of a killed process.
    if stderr.is_some() {
        let _ = tokio::time::timeout(Duration::from_millis(200), async {
            while let Some(s) = stderr.as_mut() {
                match s.read(&mut b1).await {
                    Ok(0) | Err(_) => stderr = None,
                    Ok(n) => cap.push(1, &b1[..n]),
                }
            }
        })
        .await;
    }
    let status = match status {
        Some(s) => s.ok(),
        None => tokio::time::timeout(Duration::from_millis(500), child.wait())
            .await
            .ok()
            .and_then(Result::ok),
    };
    let peak = cgroup.as_ref().and_then(|c| c.memory_peak());
    let oom = cgroup.as_ref().map(|c| c.oom_kills()).unwrap_or(0) > oom_before;
    if let Some(cg) = cgroup {
        tokio::task::spawn_blocking(move || cg.destroy_blocking());
    }
    let result = if timed_out {
        Err(RuntimeError::timeout(spec.limits.timeout_ms.get()))
    } else if too_large {
        Err(RuntimeError::new(
            ErrorCode::ResponseTooLarge,
            format!("the response body exceeds max_response_body_bytes ({max_body})"),
        ))
    } else if oom {
        Err(RuntimeError::new(
            ErrorCode::MemoryLimit,
            "the function tried to use more memory than its memory_limit_mib",
        ))
    } else {
        match status {
            Some(s) if s.success() => parse_cgi_response(&out, max_body, CgiOutput::OrRaw),
            Some(s) => Err(RuntimeError::new(
                ErrorCode::Crashed,
                format!("the function {s}"),
            )),
            None => Err(RuntimeError::new(
                ErrorCode::Crashed,
                "the function did not exit",
            )),
        }
    };
    (result, peak)
}
