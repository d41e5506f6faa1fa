//! Cold and warm start times next to the bare interpreters, for the docs:
//! `cargo test -p nimbus-process --test all -- --ignored --nocapture cold_start`.

use crate::{Fixture, get, invoke, limits};
use nimbus_api::CodeKind;
use std::time::Instant;

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn cold_start_times() {
    let f = Fixture::new();
    let py = f
        .prepare(
            CodeKind::Python,
            None,
            &[("app.py", "def lambda_handler(e, c):\n    return 1\n")],
            limits(5000),
        )
        .await
        .expect("prepare");
    let node = f
        .prepare(
            CodeKind::Node,
            None,
            &[("index.js", "exports.handler = async () => 1;\n")],
            limits(5000),
        )
        .await
        .expect("prepare");
    let mut rows: Vec<(&str, Vec<f64>)> = [
        "python3 -I -S -c pass",
        "python3 -I -c pass",
        "node -e 0 (clean env)",
        "node -e 0 (this env)",
        "bwrap true",
        "python cold",
        "python warm",
        "node cold",
        "node warm",
    ]
    .into_iter()
    .map(|n| (n, Vec::new()))
    .collect();
    for _ in 0..15 {
        let t = Instant::now();
        std::process::Command::new("/usr/bin/python3")
            .args(["-I", "-S", "-c", "pass"])
            .status()
            .expect("run");
        rows[0].1.push(ms(t));
        let t = Instant::now();
        std::process::Command::new("/usr/bin/python3")
            .args(["-I", "-c", "pass"])
            .status()
            .expect("run");
        rows[1].1.push(ms(t));
        let t = Instant::now();
        std::process::Command::new("/usr/bin/node")
            .args(["-e", "0"])
            .env_clear()
            .status()
            .expect("run");
        rows[2].1.push(ms(t));
        let t = Instant::now();
        std::process::Command::new("/usr/bin/node")
            .args(["-e", "0"])
            .status()
            .expect("run");
        rows[3].1.push(ms(t));
        let t = Instant::now();
        std::process::Command::new("bwrap")
            .args([
                "--ro-bind",
                "/usr",
                "/usr",
                "--symlink",
                "usr/lib64",
                "/lib64",
                "--symlink",
                "usr/lib",
                "/lib",
                "--unshare-all",
                "--",
                "/usr/bin/true",
            ])
            .status()
            .expect("run");
        rows[4].1.push(ms(t));
        for (i, p) in [(5, &py), (7, &node)] {
            let t = Instant::now();
            invoke(p, get("/"), 5000).await.result.expect("ok");
            rows[i].1.push(ms(t));
            let t = Instant::now();
            invoke(p, get("/"), 5000).await.result.expect("ok");
            rows[i + 1].1.push(ms(t));
            p.release();
        }
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    for (name, mut v) in rows {
        v.sort_by(f64::total_cmp);
        eprintln!(
            "{name:24} median {:6.1} ms   min {:6.1} ms",
            v[v.len() / 2],
            v[0]
        );
    }
}
