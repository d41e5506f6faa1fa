//! Warm Python and Node workers: one sandboxed interpreter serving many
//! invocations, one at a time, over a pair of pipes.
//!
//! ```text
//! host ──(protocol pipe, fd N)──► bootstrap: {"event", "context"}\n
//! host ◄─(protocol pipe, fd M)─── bootstrap: {"ready"} | {"ok"} | {"error"} | {"init_error"}\n
//! host ◄─(stdout, stderr)──────── the function's logs, each invocation ended by a marker
//! ```
//!
//! The protocol pipes are extra file descriptors whose numbers are passed to
//! the bootstrap (`src/bootstrap/python.py`, `src/bootstrap/node.js`, run with
//! `python3 -I -B -c` / `node -e` and a one-line loader that reads their
//! source from stdin, so `ps` shows the loader, not the source), so the
//! function's own stdin/stdout cannot reach them: stdin is at its end once
//! the source is read, stdout and stderr are log pipes, and the
//! bootstrap marks the protocol descriptors close-on-exec (Python also
//! closes them in forked children).
//!
//! # Protocol
//!
//! One JSON document per line (UTF-8, `\n`-terminated; JSON escapes every
//! newline inside it), one invocation at a time:
//!
//! ```text
//! worker → host  {"ready": {"init_ms": 12.3}}                  handler module imported
//!                {"init_error": {"errorType": "Runtime.ImportModuleError", "errorMessage": "..."}}
//! host → worker  {"event": {...API Gateway v2 event...},
//!                 "context": {"invocation_id", "function_name", "function_version",
//!                             "memory_limit_mib", "deadline_ms" (Unix ms), "invoked_function_arn"}}
//! worker → host  {"ok": <the handler's return value>}
//!                {"error": {"errorType", "errorMessage", "stackTrace": [...]}}
//! worker → host  a streaming Node handler (`awslambda.streamifyResponse`), before its
//!                {"ok"} | {"error"}:
//!                {"head": {"statusCode", "headers", "cookies"}}   once, before any chunk
//!                {"chunk": "<base64>"}                             per write
//! ```
//!
//! The head of a streamed response is handed to the caller at once and
//! each chunk is forwarded as it arrives (see `nimbus_core::stream`); an
//! `error` after the head cuts the body and is a function error.
//!
//! Before each reply the bootstrap flushes the function's output and writes
//! the log end marker to stdout and stderr (see `logs`), so each
//! invocation gets exactly its own log lines. `init_ms` is the time the
//! worker spent importing the handler's module; it is logged with the
//! cold-start time (spawn to ready) when a worker starts.
//!
//! A worker that timed out, crashed, broke the protocol, ran out of memory or
//! hit its task limit is killed with everything it started and never reused.

use crate::logs::{Capture, MarkerScan};
use crate::sandbox::Launch;
use crate::{Inner, Lang, VersionSpec};
use bytes::Bytes;
use nimbus_api::ErrorCode;
use nimbus_core::runtime::{FnRequest, FnResponse, InvokeContext, RuntimeError};
use nimbus_core::stream::{StreamWriter, Streaming, Written};
use serde_json::{Value, json};
use std::ffi::OsString;
use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::unix::pipe;
use tokio::process::{Child, ChildStderr, ChildStdout};

/// How long a worker that closed its protocol pipe may take to exit by
/// itself before it is killed: its own exit status is worth reporting.
const EXIT_REPORT_WAIT: Duration = Duration::from_millis(200);

const PYTHON_BOOTSTRAP: &str = include_str!("bootstrap/python.py");
/// What `python3 -c` runs: the bootstrap, read from stdin.
const PYTHON_LOADER: &str = "import sys; exec(sys.stdin.read())";
/// What `node -e` runs: the bootstrap, read from stdin.
const NODE_LOADER: &str = "eval(require('fs').readFileSync(0, 'utf8'))";
const NODE_BOOTSTRAP: &str = include_str!("bootstrap/node.js");

/// Longest `ready`/`init_error` line.
const INIT_LINE_LIMIT: usize = 1 << 20;
/// How long to wait for the log end markers after a result.
const LOG_SETTLE: Duration = Duration::from_secs(1);
/// How long to collect the last logs of a killed worker.
const DRAIN_GRACE: Duration = Duration::from_millis(300);

/// A function error reported by the bootstrap.
#[derive(Debug, serde::Deserialize)]
struct FnError {
    #[serde(rename = "errorType", default)]
    error_type: String,
    #[serde(rename = "errorMessage", default)]
    error_message: String,
}

enum Message {
    Ready(f64),
    InitError(FnError),
    Ok(Value),
    Error(FnError),
    /// A streamed response's head (`statusCode`, `headers`, `cookies`).
    Head(Value),
    /// A piece of a streamed response's body.
    Chunk(Bytes),
}

fn parse_message(line: &[u8]) -> Result<Message, String> {
    let v: Value = serde_json::from_slice(line).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(mut m) = v else {
        return Err("not a JSON object".into());
    };
    if let Some(ok) = m.remove("ok") {
        return Ok(Message::Ok(ok));
    }
    let fn_error = |v: Value| {
        serde_json::from_value::<FnError>(v).map_err(|e| format!("invalid error object: {e}"))
    };
    if let Some(e) = m.remove("error") {
        return Ok(Message::Error(fn_error(e)?));
    }
    if let Some(e) = m.remove("init_error") {
        return Ok(Message::InitError(fn_error(e)?));
    }
    if let Some(chunk) = m.remove("chunk") {
        use base64::Engine as _;
        let text = chunk.as_str().ok_or("a chunk must be a base64 string")?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| format!("a chunk is not base64: {e}"))?;
        return Ok(Message::Chunk(Bytes::from(bytes)));
    }
    if let Some(head) = m.remove("head") {
        return Ok(Message::Head(head));
    }
    if let Some(r) = m.remove("ready") {
        return Ok(Message::Ready(
            r.get("init_ms").and_then(Value::as_f64).unwrap_or(0.0),
        ));
    }
    Err("unknown message".into())
}

/// Why waiting for a message failed.
enum Failure {
    Timeout,
    Exited,
    TooLarge,
    Protocol(String),
}

pub(crate) struct Worker {
    child: Child,
    pid: Option<u32>,
    cgroup: Option<crate::cgroup::WorkerCgroup>,
    tx: pipe::Sender,
    rx: pipe::Receiver,
    rbuf: Vec<u8>,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    scans: [MarkerScan; 2],
    /// How long importing the handler module took, as the worker reported.
    pub init_ms: f64,
    /// Invocations served so far.
    pub invocations: u64,
    /// Host pids in the worker's cgroup once it was ready: bubblewrap, the
    /// interpreter and whatever its initialisation started. Anything else
    /// still running after an invocation was started by it and is killed.
    own_pids: Vec<i32>,
    /// Set while a check of this worker's idleness is scheduled, so that a
    /// worker parked between back-to-back calls has at most one.
    pub idle_check: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// What an invocation on a worker produced.
pub(crate) struct Invoked {
    pub result: Result<FnResponse, RuntimeError>,
    pub memory_peak: Option<u64>,
    /// The worker, if it may serve another invocation.
    pub worker: Option<Worker>,
    /// Set when the handler streamed its response (`result` is then
    /// meaningless): the stream, to be finished with the logs.
    pub streamed: Option<Streamed>,
}

/// Where a streaming handler's response goes once its head is out.
pub(crate) type HeadSender = tokio::sync::oneshot::Sender<(FnResponse, Streaming)>;

/// A streamed response whose body has ended or been cut.
pub(crate) struct Streamed {
    pub writer: StreamWriter,
    /// Why the body was cut short, or the handler's error after its head.
    pub error: Option<RuntimeError>,
    pub client_gone: bool,
}

async fn read_opt<R: AsyncRead + Unpin>(
    r: &mut Option<R>,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    match r {
        Some(r) => r.read(buf).await,
        None => std::future::pending().await,
    }
}

fn memory_error() -> RuntimeError {
    RuntimeError::new(
        ErrorCode::MemoryLimit,
        "the function tried to use more memory than its memory_limit_mib",
    )
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Why a worker did not start.
pub(crate) struct StartError {
    pub error: RuntimeError,
    /// The handler's own report (`init_error`): its module did not import
    /// or does not define the handler. `(errorType, errorMessage)`.
    pub init_error: Option<(String, String)>,
}

impl From<RuntimeError> for StartError {
    fn from(error: RuntimeError) -> Self {
        StartError {
            error,
            init_error: None,
        }
    }
}

impl Worker {
    /// Starts a worker and waits for its handler to be loaded. Init output
    /// goes to `cap` (the first invocation's logs).
    pub async fn spawn(
        inner: &Inner,
        spec: &VersionSpec,
        deadline: Instant,
        cap: &mut Capture,
    ) -> Result<Worker, RuntimeError> {
        Self::start(inner, spec, deadline, cap)
            .await
            .map_err(|e| e.error)
    }

    /// [`Self::spawn`], telling the handler's own initialisation errors apart.
    pub async fn start(
        inner: &Inner,
        spec: &VersionSpec,
        deadline: Instant,
        cap: &mut Capture,
    ) -> Result<Worker, StartError> {
        let started = Instant::now();
        let internal = |what: &str, e: std::io::Error| {
            RuntimeError::new(ErrorCode::Internal, format!("{what}: {e}"))
        };
        let sandbox = inner.sandbox()?;
        let cgroup = inner.worker_cgroup(spec.limits.memory_limit_bytes())?;
        let (child_in, host_out) = std::io::pipe().map_err(|e| internal("create a pipe", e))?;
        let (host_in, child_out) = std::io::pipe().map_err(|e| internal("create a pipe", e))?;
        if let Some((uid, gid)) = sandbox.drop_to {
            // The sandboxed user may reopen its ends (the Node bootstrap does,
            // to make them close-on-exec).
            for fd in [child_in.as_fd(), child_out.as_fd()] {
                std::os::unix::fs::fchown(fd, Some(uid), Some(gid))
                    .map_err(|e| internal("hand the worker pipes to the sandbox user", e))?;
            }
        }
        let nonce = format!(
            "{}{}",
            uuid::Uuid::now_v7().simple(),
            uuid::Uuid::now_v7().simple()
        );
        let code_root = sandbox.code_root(&spec.code_dir);
        // The bootstrap's source arrives on stdin, behind a one-line loader:
        // `ps` shows the loader, not the whole bootstrap.
        let (program, mut args, bootstrap): (_, Vec<OsString>, &str) = match spec.lang {
            Lang::Python => (
                spec.interpreter.clone(),
                vec!["-I".into(), "-B".into(), "-c".into(), PYTHON_LOADER.into()],
                PYTHON_BOOTSTRAP,
            ),
            Lang::Node => {
                let heap_mib = (u64::from(spec.limits.memory_limit_mib.get()) * 4 / 5).max(16);
                (
                    spec.interpreter.clone(),
                    vec![
                        format!("--max-old-space-size={heap_mib}").into(),
                        "-e".into(),
                        NODE_LOADER.into(),
                    ],
                    NODE_BOOTSTRAP,
                )
            }
            Lang::Exec => {
                return Err(RuntimeError::new(
                    ErrorCode::Internal,
                    "exec functions do not use warm workers",
                )
                .into());
            }
        };
        args.extend([
            child_in.as_raw_fd().to_string().into(),
            child_out.as_raw_fd().to_string().into(),
            code_root.into_os_string(),
            spec.handler.clone().into(),
            nonce.clone().into(),
        ]);
        let launch = Launch {
            code_dir: &spec.code_dir,
            program,
            args,
            env: spec.env.clone(),
            cgroup_procs: cgroup.as_ref().map(|c| c.procs_fds()).unwrap_or_default(),
            pass_fds: vec![child_in.as_raw_fd(), child_out.as_raw_fd()],
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
        let mut cmd = sandbox
            .command(launch)
            .map_err(|e| internal("prepare the worker command", e))?;
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| internal("start the worker process", e))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A few KiB into an empty pipe: the write does not wait for the
            // reader. A worker that died meanwhile is reported by the
            // exchange below; stdin is then at its end, as /dev/null was.
            let _ = tokio::io::AsyncWriteExt::write_all(&mut stdin, bootstrap.as_bytes()).await;
        }
        drop(child_in);
        drop(child_out);
        let tx = pipe::Sender::from_owned_fd(OwnedFd::from(host_out))
            .map_err(|e| internal("set up the worker pipe", e))?;
        let rx = pipe::Receiver::from_owned_fd(OwnedFd::from(host_in))
            .map_err(|e| internal("set up the worker pipe", e))?;
        let marker = crate::logs::marker(&nonce);
        let mut worker = Worker {
            pid: child.id(),
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            child,
            cgroup,
            tx,
            rx,
            rbuf: Vec::new(),
            scans: [MarkerScan::new(marker.clone()), MarkerScan::new(marker)],
            init_ms: 0.0,
            invocations: 0,
            own_pids: Vec::new(),
            idle_check: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
        };
        let oom_before = worker.oom_kills();
        match worker.exchange(None, deadline, cap, INIT_LINE_LIMIT).await {
            Ok(Message::Ready(init_ms)) => {
                worker.init_ms = init_ms;
                worker.own_pids = worker.cgroup.as_ref().map(|c| c.pids()).unwrap_or_default();
                tracing::info!(
                    function = %spec.name,
                    version = spec.version,
                    runtime = spec.lang.as_str(),
                    init_ms,
                    cold_start_ms = started.elapsed().as_secs_f64() * 1000.0,
                    "started a worker"
                );
                Ok(worker)
            }
            Ok(Message::InitError(e)) => {
                worker.retire_after_drain(cap).await;
                Err(StartError {
                    error: RuntimeError::new(
                        ErrorCode::Crashed,
                        format!(
                            "the function failed to initialise: {}: {}",
                            e.error_type, e.error_message
                        ),
                    ),
                    init_error: Some((e.error_type, e.error_message)),
                })
            }
            Ok(_) => {
                worker.retire_after_drain(cap).await;
                Err(RuntimeError::new(
                    ErrorCode::InvalidResponse,
                    "the worker broke the protocol while initialising",
                )
                .into())
            }
            Err(f) => Err(worker
                .fail(
                    f,
                    cap,
                    oom_before,
                    0,
                    spec.limits.timeout_ms.get(),
                    "initialising",
                )
                .await
                .into()),
        }
    }

    fn oom_kills(&self) -> u64 {
        self.cgroup.as_ref().map(|c| c.oom_kills()).unwrap_or(0)
    }

    fn pids_limit_hits(&self) -> u64 {
        self.cgroup
            .as_ref()
            .map(|c| c.pids_limit_hits())
            .unwrap_or(0)
    }

    /// Whether the process is still running (idle workers can die, e.g. of
    /// a background thread's crash).
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Runs one invocation; `token` is its credential for the local API.
    pub async fn invoke(
        mut self,
        spec: &VersionSpec,
        req: FnRequest,
        ctx: &InvokeContext,
        token: Option<&str>,
        cap: &mut Capture,
        head: Option<HeadSender>,
    ) -> Invoked {
        self.invocations += 1;
        let [s0, s1] = &mut self.scans;
        s0.begin(cap, 0);
        s1.begin(cap, 1);
        if let Some(cg) = &self.cgroup {
            cg.reset_peak();
        }
        let oom_before = self.oom_kills();
        let pids_before = self.pids_limit_hits();
        let now = now_ms();
        let remaining = ctx.deadline.saturating_duration_since(Instant::now());
        let deadline_ms = now + u64::try_from(remaining.as_millis()).unwrap_or(u64::MAX / 2);
        let message = json!({
            "event": crate::lambda::event(&req, &ctx.invocation_id, now),
            "context": {
                "invocation_id": ctx.invocation_id,
                "function_name": spec.name,
                "function_version": spec.version.to_string(),
                "memory_limit_mib": spec.limits.memory_limit_mib.get(),
                "deadline_ms": deadline_ms,
                "invoked_function_arn": spec.arn(),
                "nimbus_token": token,
            },
        });
        drop(req);
        let mut line = match serde_json::to_vec(&message) {
            Ok(l) => l,
            Err(e) => {
                return Invoked {
                    result: Err(RuntimeError::new(
                        ErrorCode::Internal,
                        format!("encode the event: {e}"),
                    )),
                    memory_peak: None,
                    worker: Some(self),
                    streamed: None,
                };
            }
        };
        drop(message);
        line.push(b'\n');
        let max_body = spec.limits.max_response_body_bytes.get();
        let line_limit = usize::try_from(max_body.saturating_mul(2).saturating_add(1 << 20))
            .unwrap_or(usize::MAX);
        let timeout_ms = spec.limits.timeout_ms.get();
        let reply = self
            .exchange(Some(Bytes::from(line)), ctx.deadline, cap, line_limit)
            .await;
        let mut reply = match reply {
            Ok(r) => r,
            Err(f) => {
                let peak = self.cgroup.as_ref().and_then(|c| c.memory_peak());
                let err = self
                    .fail(
                        f,
                        cap,
                        oom_before,
                        pids_before,
                        timeout_ms,
                        "serving an invocation",
                    )
                    .await;
                return Invoked {
                    result: Err(err),
                    memory_peak: peak,
                    worker: None,
                    streamed: None,
                };
            }
        };
        // A streaming handler (`awslambda.streamifyResponse`): its head
        // goes out now, then each chunk as it comes, until its result.
        let mut streamed = None;
        if let Message::Head(h) = reply {
            let head_resp = crate::lambda::stream_head(h);
            let (head_resp, head) = match (head_resp, head) {
                (Ok(r), Some(head)) => (r, head),
                (r, _) => {
                    let e = r.err().unwrap_or_else(|| {
                        RuntimeError::new(
                            ErrorCode::InvalidResponse,
                            "the worker sent a streamed response where none can be taken",
                        )
                    });
                    self.retire_after_drain(cap).await;
                    return Invoked {
                        result: Err(e),
                        memory_peak: None,
                        worker: None,
                        streamed: None,
                    };
                }
            };
            let (writer, stream) = StreamWriter::new(max_body);
            let _ = head.send((head_resp, stream));
            let mut st = Streamed {
                writer,
                error: None,
                client_gone: false,
            };
            // Ok: the handler's result; Err(Some): the worker failed;
            // Err(None): the stream was stopped here (too large, client gone).
            let last = loop {
                let msg = match self.exchange(None, ctx.deadline, cap, line_limit).await {
                    Ok(Message::Chunk(b)) => b,
                    Ok(m) => break Ok(m),
                    Err(f) => break Err(Some(f)),
                };
                let written =
                    tokio::time::timeout_at(ctx.deadline.into(), st.writer.write(msg)).await;
                match written {
                    Ok(Written::Sent) => {}
                    Ok(Written::TooLarge) => {
                        st.error = Some(RuntimeError::new(
                            ErrorCode::ResponseTooLarge,
                            format!(
                                "the streamed response body exceeds max_response_body_bytes ({max_body}); the stream was cut after {} bytes",
                                st.writer.sent_bytes()
                            ),
                        ));
                        break Err(None);
                    }
                    Ok(Written::Closed) => {
                        st.client_gone = true;
                        break Err(None);
                    }
                    Err(_) => break Err(Some(Failure::Timeout)),
                }
            };
            match last {
                Ok(m) => {
                    reply = m;
                    streamed = Some(st);
                }
                Err(failure) => {
                    // Cut mid-stream: the worker is still writing, so it
                    // is not reused.
                    let peak = self.cgroup.as_ref().and_then(|c| c.memory_peak());
                    match failure {
                        Some(f) => {
                            st.error = Some(
                                self.fail(
                                    f,
                                    cap,
                                    oom_before,
                                    pids_before,
                                    timeout_ms,
                                    "streaming a response",
                                )
                                .await,
                            );
                        }
                        None => self.retire_after_drain(cap).await,
                    }
                    return Invoked {
                        result: Err(RuntimeError::new(ErrorCode::Internal, "streamed")),
                        memory_peak: peak,
                        worker: None,
                        streamed: Some(st),
                    };
                }
            }
        }
        let settled = self.settle_logs(cap).await;
        let peak = self.cgroup.as_ref().and_then(|c| c.memory_peak());
        let mut healthy = settled;
        if self.pids_limit_hits() > pids_before {
            cap.note("[nimbus] the worker reached its process limit and is replaced\n");
            healthy = false;
        }
        if healthy && let Some(cg) = &self.cgroup {
            let killed = cg.kill_except(&self.own_pids);
            if !killed.is_empty() {
                cap.note(&format!(
                    "[nimbus] killed {} process(es) the invocation left running\n",
                    killed.len()
                ));
                // Let them finish dying before the worker is frozen: a task
                // frozen on its way out would stay alive until the next call.
                wait_exited(&killed, KILL_SETTLE).await;
            }
        }
        if let Some(st) = &mut streamed {
            match &reply {
                Message::Ok(_) => {}
                Message::Error(e) => {
                    st.error = Some(RuntimeError::new(
                        ErrorCode::FunctionError,
                        format!(
                            "the handler failed after its response began: {}: {}",
                            e.error_type, e.error_message
                        ),
                    ));
                }
                _ => {
                    healthy = false;
                    st.error = Some(RuntimeError::new(
                        ErrorCode::InvalidResponse,
                        "the worker broke the protocol while streaming",
                    ));
                }
            }
            let worker = if healthy {
                Some(self)
            } else {
                self.retire();
                None
            };
            return Invoked {
                result: Err(RuntimeError::new(ErrorCode::Internal, "streamed")),
                memory_peak: peak,
                worker,
                streamed,
            };
        }
        let result = match reply {
            Message::Ok(value) => crate::lambda::response(value, max_body),
            Message::Error(e) if e.error_type == "MemoryError" => {
                healthy = false;
                Err(memory_error())
            }
            Message::Error(e) => Ok(crate::lambda::function_error(
                &e.error_type,
                &e.error_message,
            )),
            Message::Ready(_) | Message::InitError(_) | Message::Head(_) | Message::Chunk(_) => {
                healthy = false;
                Err(RuntimeError::new(
                    ErrorCode::InvalidResponse,
                    "the worker broke the protocol",
                ))
            }
        };
        let worker = if healthy {
            Some(self)
        } else {
            self.retire();
            None
        };
        Invoked {
            result,
            memory_peak: peak,
            worker,
            streamed: None,
        }
    }

    /// Optionally sends `request`, then waits for the next message, reading
    /// logs meanwhile.
    async fn exchange(
        &mut self,
        request: Option<Bytes>,
        deadline: Instant,
        cap: &mut Capture,
        line_limit: usize,
    ) -> Result<Message, Failure> {
        let Worker {
            tx,
            rx,
            rbuf,
            stdout,
            stderr,
            scans,
            ..
        } = self;
        let mut pending = request.unwrap_or_default();
        let mut b0 = vec![0u8; 16 * 1024];
        let mut b1 = vec![0u8; 16 * 1024];
        let sleep = tokio::time::sleep_until(deadline.into());
        tokio::pin!(sleep);
        // Bytes of `rbuf` known to hold no newline.
        let mut scanned = 0;
        loop {
            if let Some(i) = rbuf[scanned..].iter().position(|&b| b == b'\n') {
                let pos = scanned + i;
                let message = parse_message(&rbuf[..pos]).map_err(Failure::Protocol);
                rbuf.drain(..=pos);
                if rbuf.capacity() > 1 << 20 {
                    rbuf.shrink_to(64 * 1024);
                }
                return message;
            }
            scanned = rbuf.len();
            if rbuf.len() > line_limit {
                return Err(Failure::TooLarge);
            }
            let writing = !pending.is_empty();
            tokio::select! {
                r = rx.read_buf(rbuf) => match r {
                    Ok(0) | Err(_) => return Err(Failure::Exited),
                    Ok(_) => {}
                },
                r = tx.write(&pending), if writing => match r {
                    Ok(n) => {
                        let _ = pending.split_to(n);
                    }
                    Err(_) => return Err(Failure::Exited),
                },
                r = read_opt(stdout, &mut b0) => match r {
                    Ok(0) | Err(_) => *stdout = None,
                    Ok(n) => scans[0].feed(&b0[..n], cap, 0),
                },
                r = read_opt(stderr, &mut b1) => match r {
                    Ok(0) | Err(_) => *stderr = None,
                    Ok(n) => scans[1].feed(&b1[..n], cap, 1),
                },
                () = &mut sleep => return Err(Failure::Timeout),
            }
        }
    }

    /// Reads logs until both end markers arrived; false if they did not.
    async fn settle_logs(&mut self, cap: &mut Capture) -> bool {
        let Worker {
            stdout,
            stderr,
            scans,
            ..
        } = self;
        let mut b0 = vec![0u8; 16 * 1024];
        let mut b1 = vec![0u8; 16 * 1024];
        let sleep = tokio::time::sleep(LOG_SETTLE);
        tokio::pin!(sleep);
        while !(scans[0].found() && scans[1].found()) {
            tokio::select! {
                r = read_opt(stdout, &mut b0), if !scans[0].found() => match r {
                    Ok(0) | Err(_) => {
                        *stdout = None;
                        scans[0].flush(cap, 0);
                        return false;
                    }
                    Ok(n) => scans[0].feed(&b0[..n], cap, 0),
                },
                r = read_opt(stderr, &mut b1), if !scans[1].found() => match r {
                    Ok(0) | Err(_) => {
                        *stderr = None;
                        scans[1].flush(cap, 1);
                        return false;
                    }
                    Ok(n) => scans[1].feed(&b1[..n], cap, 1),
                },
                () = &mut sleep => {
                    scans[0].flush(cap, 0);
                    scans[1].flush(cap, 1);
                    return false;
                }
            }
        }
        true
    }

    /// Collects what is left in the log pipes of a dying worker.
    async fn drain(&mut self, cap: &mut Capture) {
        let Worker {
            stdout,
            stderr,
            scans,
            ..
        } = self;
        let mut b0 = vec![0u8; 16 * 1024];
        let mut b1 = vec![0u8; 16 * 1024];
        let sleep = tokio::time::sleep(DRAIN_GRACE);
        tokio::pin!(sleep);
        while stdout.is_some() || stderr.is_some() {
            tokio::select! {
                r = read_opt(stdout, &mut b0) => match r {
                    Ok(0) | Err(_) => *stdout = None,
                    Ok(n) => scans[0].feed(&b0[..n], cap, 0),
                },
                r = read_opt(stderr, &mut b1) => match r {
                    Ok(0) | Err(_) => *stderr = None,
                    Ok(n) => scans[1].feed(&b1[..n], cap, 1),
                },
                () = &mut sleep => break,
            }
        }
        scans[0].flush(cap, 0);
        scans[1].flush(cap, 1);
    }

    /// Kills the worker, collects its last logs and classifies the failure.
    async fn fail(
        mut self,
        failure: Failure,
        cap: &mut Capture,
        oom_before: u64,
        pids_before: u64,
        timeout_ms: u64,
        phase: &str,
    ) -> RuntimeError {
        // A worker that closed its pipe is usually exiting on its own: let
        // it, so that its own exit status (not our SIGKILL) is reported.
        let mut status = None;
        if matches!(failure, Failure::Exited) {
            status = tokio::time::timeout(EXIT_REPORT_WAIT, self.child.wait())
                .await
                .ok()
                .and_then(Result::ok);
        }
        self.kill_now();
        self.drain(cap).await;
        if status.is_none() {
            status = tokio::time::timeout(Duration::from_millis(500), self.child.wait())
                .await
                .ok()
                .and_then(Result::ok);
        }
        let oom = self.oom_kills() > oom_before;
        let pids_hit = self.pids_limit_hits() > pids_before;
        let heap_oom = cap.stderr_contains("heap out of memory");
        self.retire();
        match failure {
            Failure::Timeout => RuntimeError::timeout(timeout_ms),
            Failure::TooLarge => RuntimeError::new(
                ErrorCode::ResponseTooLarge,
                "the response exceeds max_response_body_bytes",
            ),
            Failure::Protocol(msg) => RuntimeError::new(
                ErrorCode::InvalidResponse,
                format!("the worker broke the protocol while {phase}: {msg}"),
            ),
            Failure::Exited if oom || heap_oom => memory_error(),
            Failure::Exited => {
                let how = status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "still running; killed".into());
                let extra = if pids_hit {
                    "; it reached its process limit"
                } else {
                    ""
                };
                RuntimeError::new(
                    ErrorCode::Crashed,
                    format!("the worker process exited while {phase} ({how}{extra})"),
                )
            }
        }
    }

    /// Which worker this is.
    pub fn identity(&self) -> Option<u32> {
        self.pid
    }

    /// Whether a thread of the worker's processes is running or runnable
    /// (between invocations, a well-behaved worker sleeps in a read).
    pub fn runs_while_idle(&self) -> bool {
        self.own_pids.iter().any(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/task"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|task| task_state(&task.path().join("stat")) == Some('R'))
        })
    }

    /// Freezes the worker while it waits for its next invocation.
    pub fn freeze(&mut self) {
        if let Some(cg) = &mut self.cgroup {
            cg.freeze();
        }
    }

    /// Lets the worker run again before an invocation.
    pub fn thaw(&mut self) {
        if let Some(cg) = &mut self.cgroup {
            cg.thaw();
        }
    }

    /// Kills the init error's worker after collecting its output.
    async fn retire_after_drain(mut self, cap: &mut Capture) {
        self.kill_now();
        self.drain(cap).await;
        self.retire();
    }

    /// SIGKILLs the worker's process group and cgroup.
    fn kill_now(&mut self) {
        if matches!(self.child.try_wait(), Ok(None))
            && let Some(pid) = self.pid
        {
            crate::sandbox::kill_group(pid);
        }
        let _ = self.child.start_kill();
        if let Some(cg) = &self.cgroup {
            cg.kill_all();
        }
    }

    /// Kills the worker and everything it started, and removes its cgroup
    /// in the background.
    pub fn retire(mut self) {
        self.kill_now();
        let Worker {
            mut child, cgroup, ..
        } = self;
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
                    if let Some(cg) = cgroup {
                        let _ = tokio::task::spawn_blocking(move || cg.destroy_blocking()).await;
                    }
                });
            }
            Err(_) => {
                drop(child);
                drop(cgroup);
            }
        }
    }
}

/// Longest wait for killed leftovers to exit before the worker is frozen.
const KILL_SETTLE: Duration = Duration::from_millis(100);

/// Waits until every pid in `pids` has exited (gone or a zombie), at most `bound`.
async fn wait_exited(pids: &[i32], bound: Duration) {
    let until = Instant::now() + bound;
    while pids.iter().any(|&pid| running(pid)) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Whether `pid` exists and is not a zombie.
fn running(pid: i32) -> bool {
    task_state(std::path::Path::new(&format!("/proc/{pid}/stat")))
        .is_some_and(|s| s != 'Z' && s != 'X')
}

/// The state letter in a `/proc/.../stat` file (`R`, `S`, `Z`, ...); `None`
/// if the task is gone.
fn task_state(stat: &std::path::Path) -> Option<char> {
    let stat = std::fs::read_to_string(stat).ok()?;
    // The state follows the command name, which is in parentheses.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.trim_start().chars().next()
}
