//! Day-2 operations: following a function's invocations live.

use crate::common::TestServer;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `nimbus logs --follow` process; its stdout and stderr are collected.
struct Follower {
    child: std::process::Child,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
}

impl Follower {
    fn start(s: &TestServer, args: &[&str]) -> Follower {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_nimbus"))
            .args(["--url", &s.url, "--token", &s.token, "logs"])
            .args(args)
            .env_remove("NIMBUS_URL")
            .env_remove("NIMBUS_TOKEN")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn nimbus logs --follow");
        let out = Arc::new(Mutex::new(String::new()));
        let err = Arc::new(Mutex::new(String::new()));
        crate::common::collect_into(child.stdout.take().expect("stdout"), out.clone());
        crate::common::collect_into(child.stderr.take().expect("stderr"), err.clone());
        Follower { child, out, err }
    }

    fn out(&self) -> String {
        self.out.lock().expect("out").clone()
    }

    fn err(&self) -> String {
        self.err.lock().expect("err").clone()
    }

    fn wait_for(&self, what: &str, text: impl Fn(&Follower) -> String, needle: &str) {
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if text(self).contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "the follower's {what} never showed {needle:?}:\n{}\n{}",
            self.out(),
            self.err()
        );
    }

    /// Waits for the process to end; its exit code.
    fn wait_exit(&mut self) -> i32 {
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code().unwrap_or(-1);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the follower did not end:\n{}\n{}", self.out(), self.err());
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_streams_invocations_as_they_finish_with_filters() {
    let mut s = TestServer::start().await;
    s.deploy("exit", "exit_code", "").await;
    let all = Follower::start(&s, &["exit", "--follow"]);
    let errors = Follower::start(&s, &["exit", "--follow", "--status", "error"]);
    all.wait_for("stderr", Follower::err, "following default/exit");
    errors.wait_for("stderr", Follower::err, "following default/exit");

    let (status, _, ok1) = s.call("/fn/default/exit?code=0").await;
    assert_eq!(status, 200);
    let (status, _, failed) = s.call("/fn/default/exit?code=3").await;
    assert_eq!(status, 502);
    let (_, _, ok2) = s.call("/fn/default/exit?code=0").await;

    for id in [&ok1, &failed, &ok2] {
        all.wait_for("stdout", Follower::out, id);
    }
    all.wait_for("stdout", Follower::out, "stderr| exit_code: exiting with 3");
    errors.wait_for("stdout", Follower::out, &failed);
    let e = errors.out();
    assert!(
        !e.contains(&ok1) && !e.contains(&ok2),
        "--status error shows failures only:\n{e}"
    );
    assert!(e.contains("crashed"), "{e}");

    // A function that does not exist is an error, not an empty stream.
    let (rc, _, err) = s.nimbus(&["logs", "nope", "--follow"]);
    assert_eq!(rc, 1);
    assert!(
        err.contains("not_found") && err.contains("default/nope"),
        "{err}"
    );
    let (rc, _, err) = s.nimbus(&["logs", "exit", "--follow", "--sample", "7"]);
    assert_eq!(rc, 1);
    assert!(
        err.contains("sample=7") && err.contains("from 0.001 to 1"),
        "{err}"
    );

    // Shutting the server down ends every follower's stream.
    let mut all = all;
    let mut errors = errors;
    s.stop().await;
    assert_eq!(all.wait_exit(), 0);
    assert_eq!(errors.wait_exit(), 0);
    assert!(
        all.err().contains("the server ended the stream"),
        "{}",
        all.err()
    );
}
