"""Nimbus benchmark harness: starts each system on loopback, loads it with
wrk, and writes docs/PERFORMANCE.md (and docs/performance.png).

Run through bench/run, which builds and installs everything first.
"""

import base64
import datetime
import glob
import http.client
import io
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.path.join(REPO, "bench", ".peers")
WASM = os.path.join(REPO, "target", "wasm")
NIMBUS = os.path.join(REPO, "target", "release", "nimbus")
AXUM = os.path.join(REPO, "target", "release", "axum-hello")
QUICK = "--quick" in sys.argv
SKIP_PEERS = "--skip-peers" in sys.argv
DURATION_S = 3 if QUICK else 10
CONNS = [1, 32, 256]
ROUNDS = 1 if QUICK else 2
COLD_TRIALS = 20 if QUICK else 100
DENSITY = [100, 1000] if QUICK else [1000, 10000]
REUSE = "nimbus (instance reuse)"
REUSE_MAX = 1_000_000

TARGETS = {
    "throughput_vs_axum": 0.60,
    "throughput_vs_wasmtime": 3.0,
    "throughput_vs_workerd": 2.5,
    "cold_p50_ms": 1.0,
    "idle_10k_rss_mb": 200.0,
    "instances_per_s": 10000.0,
}


def log(*a):
    print("[bench]", *a, file=sys.stderr, flush=True)


def wait_port(port, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


class Proc:
    def __init__(self, name, args, port, env=None, cwd=None):
        self.name, self.port = name, port
        self.log = open(os.path.join(tempfile.gettempdir(), f"bench-{name}.log"), "w")
        self.p = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                  env=env, cwd=cwd, start_new_session=True)
        wait_port(port)

    def stop(self):
        try:
            os.killpg(self.p.pid, signal.SIGINT)
            self.p.wait(timeout=15)
        except Exception:
            os.killpg(self.p.pid, signal.SIGKILL)
            self.p.wait()


class Nimbus(Proc):
    PORT = 8090

    def __init__(self, data_dir):
        self.data_dir = data_dir
        super().__init__("nimbus", [NIMBUS, "serve", "--data-dir", data_dir,
                                    "--listen", f"127.0.0.1:{self.PORT}"], self.PORT)
        with open(os.path.join(data_dir, "admin-token")) as f:
            self.token = f.read().strip()

    def api(self, method, path, body=None, ctype="application/json"):
        c = http.client.HTTPConnection("127.0.0.1", self.PORT, timeout=120)
        headers = {"Authorization": f"Bearer {self.token}"}
        if body is not None:
            headers["Content-Type"] = ctype
        c.request(method, path, body=body, headers=headers)
        r = c.getresponse()
        data = r.read()
        c.close()
        if r.status >= 400:
            raise RuntimeError(f"{method} {path}: {r.status} {data[:300]!r}")
        return json.loads(data) if data else None

    def deploy_manifest(self, manifest, artifacts):
        """POSTs a manifest with its code artifacts (path -> bytes)."""
        body = json.dumps({"manifest": manifest,
                           "artifacts": {k: base64.b64encode(v).decode() for k, v in artifacts.items()}})
        return self.api("POST", "/api/v1/namespaces/default/deployments", body.encode())

    def put_code(self, name, wasm, query="public=true"):
        with open(os.path.join(WASM, wasm), "rb") as f:
            code = f.read()
        return self.api("PUT", f"/api/v1/namespaces/default/functions/{name}/code?{query}",
                        code, "application/wasm")


def wrk(url, conns, duration):
    threads = min(2, conns)
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return float("nan")
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000.0 if unit == "us" else (v * 1000.0 if unit == "s" else v)

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    total = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", out)
    non2xx = int(errors.group(1)) if errors else 0
    ok_rps = rps
    if total and int(total.group(1)) > 0:
        ok_rps = rps * (int(total.group(1)) - non2xx) / int(total.group(1))
    return {"rps": rps, "ok_rps": ok_rps, "p50_ms": pct(50), "p99_ms": pct(99), "non2xx": non2xx}


def timed_get(port, path):
    """Client-side latency of one request on a fresh connection, in ms."""
    t0 = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", path)
    r = c.getresponse()
    r.read()
    dt = (time.perf_counter() - t0) * 1000.0
    c.close()
    if r.status != 200:
        raise RuntimeError(f"GET {path}: {r.status}")
    return dt


def pctl(values, p):
    v = sorted(values)
    if not v:
        return float("nan")
    k = max(0, min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1)))))
    return v[k]


def throughput(systems):
    """Warm throughput and latency, systems interleaved, ROUNDS times."""
    results = {}
    for rnd in range(ROUNDS):
        for conns in CONNS:
            for name, url in systems:
                log(f"round {rnd + 1}: {name} c={conns}")
                r = wrk(url, conns, DURATION_S)
                results.setdefault((name, conns), []).append(r)
    return results


def cold_starts(tmp):
    data = os.path.join(tmp, "cold")
    n = Nimbus(data)
    after_deploy = []
    try:
        for i in range(COLD_TRIALS):
            n.put_code(f"cold-{i}", "hello.wasm")
            after_deploy.append(timed_get(Nimbus.PORT, f"/fn/default/cold-{i}"))
    finally:
        n.stop()
    # A restart leaves every function scaled to zero: the next call loads the
    # compiled code from the on-disk cache, links and instantiates it.
    n = Nimbus(data)
    after_zero = []
    try:
        for i in range(COLD_TRIALS):
            after_zero.append(timed_get(Nimbus.PORT, f"/fn/default/cold-{i}"))
        time.sleep(0.3)
        recs = n.api("GET", f"/api/v1/invocations?limit={COLD_TRIALS}")["invocations"]
        server_cold = [r["duration_us"] / 1000.0 for r in recs if r["cold"]]
        warm_path = "/fn/default/cold-0"
        warm = [timed_get(Nimbus.PORT, warm_path) for _ in range(COLD_TRIALS)]
        time.sleep(0.3)
        recs = n.api("GET", f"/api/v1/invocations?function=cold-0&limit={COLD_TRIALS}")["invocations"]
        server_warm = [r["duration_us"] / 1000.0 for r in recs if not r["cold"]]
    finally:
        n.stop()
    return {"after_deploy": after_deploy, "after_zero": after_zero, "server_cold": server_cold,
            "warm": warm, "server_warm": server_warm}


def density(tmp):
    data = os.path.join(tmp, "density")
    n = Nimbus(data)
    out = {}
    deployed = 0
    try:
        for target in DENSITY:
            t0 = time.time()
            while deployed < target:
                n.put_code(f"f-{deployed}", "hello.wasm")
                deployed += 1
            log(f"deployed {target} functions in {time.time() - t0:.1f}s")
            out[f"deployed_{target}_rss_mb"] = rss_mb(n.p.pid)
    finally:
        n.stop()
    n = Nimbus(data)
    try:
        time.sleep(1)
        out[f"idle_{DENSITY[-1]}_rss_mb"] = rss_mb(n.p.pid)
        timed_get(Nimbus.PORT, "/fn/default/f-0")
        # 1000 concurrent sleeping invocations.
        n.put_code("sleeper", "sleep_ms.wasm",
                   "public=true&max_concurrency=1000&max_queue=0&timeout_ms=20000")
        inflight = 1000
        socks = []
        for _ in range(inflight):
            s = socket.create_connection(("127.0.0.1", Nimbus.PORT))
            s.sendall(b"GET /fn/default/sleeper?ms=4000 HTTP/1.1\r\nHost: x\r\n\r\n")
            socks.append(s)
        time.sleep(2.5)
        out["inflight_1000_rss_mb"] = rss_mb(n.p.pid)
        ok = 0
        for s in socks:
            s.settimeout(20)
            try:
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    ok += 1
            except OSError:
                pass
            s.close()
        out["inflight_1000_ok"] = ok
    finally:
        n.stop()
    return out


def steady_latencies(port, path, rate_per_s, count):
    """Latencies (ms) of `count` requests at a steady rate on one keep-alive connection."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out = []
    interval = 1.0 / rate_per_s
    next_at = time.perf_counter()
    for _ in range(count):
        now = time.perf_counter()
        if now < next_at:
            time.sleep(next_at - now)
        next_at += interval
        t0 = time.perf_counter()
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        out.append((time.perf_counter() - t0) * 1000.0)
    c.close()
    return out


def server_durations(n, name, count):
    """Server-side durations (ms) of `name`'s last `count` invocations, from its records."""
    time.sleep(0.3)  # records are written in batches, at most 50 ms apart
    recs = n.api("GET", f"/api/v1/namespaces/default/functions/{name}/invocations?limit={count}")["invocations"]
    return [r["duration_us"] / 1000.0 for r in recs]


def flood(tmp):
    """One function flooded (wrk, 256 connections) while another is called at a steady rate."""
    n = Nimbus(os.path.join(tmp, "flood"))
    try:
        n.put_code("victim", "hello.wasm")
        n.put_code("flood", "hello.wasm")
        count = 100 if QUICK else 300
        steady_latencies(Nimbus.PORT, "/fn/default/victim", 50, 20)
        unloaded = steady_latencies(Nimbus.PORT, "/fn/default/victim", 50, count)
        unloaded_server = server_durations(n, "victim", count)
        dur = int(count / 50) + 3
        w = subprocess.Popen(["wrk", "-t2", "-c256", f"-d{dur}s", "http://127.0.0.1:8090/fn/default/flood"],
                             stdout=subprocess.PIPE, text=True)
        time.sleep(1)
        loaded = steady_latencies(Nimbus.PORT, "/fn/default/victim", 50, count)
        wout = w.communicate()[0]
        loaded_server = server_durations(n, "victim", count)
        # The machine's floor: the same flood sent to another server (raw
        # axum), so that Nimbus serves the victim alone while wrk and a
        # saturated server share the cores with it.
        axum = Proc("axum", [AXUM, "127.0.0.1:8091"], 8091)
        try:
            w2 = subprocess.Popen(["wrk", "-t2", "-c256", f"-d{dur}s", "http://127.0.0.1:8091/"],
                                  stdout=subprocess.PIPE, text=True)
            time.sleep(1)
            floor = steady_latencies(Nimbus.PORT, "/fn/default/victim", 50, count)
            w2.communicate()
        finally:
            axum.stop()
        m = re.search(r"Requests/sec:\s+([\d.]+)", wout)
        c = http.client.HTTPConnection("127.0.0.1", Nimbus.PORT, timeout=10)
        c.request("GET", "/metrics", headers={"Authorization": f"Bearer {n.token}"})
        metrics = c.getresponse().read().decode()
        throttled = sum(float(l.split()[-1]) for l in metrics.splitlines()
                        if l.startswith('nimbus_throttled_total{namespace="default",function="flood"}'))
        errors = [l for l in metrics.splitlines()
                  if l.startswith('nimbus_invocation_errors_total{namespace="default",function="flood"')]
    finally:
        n.stop()
    return {"unloaded_p50": pctl(unloaded, 50), "unloaded_p99": pctl(unloaded, 99),
            "loaded_p50": pctl(loaded, 50), "loaded_p99": pctl(loaded, 99),
            "floor_p50": pctl(floor, 50), "floor_p99": pctl(floor, 99),
            "server_unloaded": unloaded_server, "server_loaded": loaded_server,
            "flood_rps": float(m.group(1)) if m else float("nan"),
            "flood_throttled": throttled, "flood_errors": errors}


def tar_of(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


PY_HELLO = {"app.py": "def handler(event, context):\n    return 'hello'\n"}
NODE_HELLO = {"index.js": "exports.handler = async () => 'hello';\n"}
HOSTILE = {"app.py": """import os, socket, time

def ok(event, context):
    return {'ok': True}

def spin(event, context):
    while True:
        pass

def bomb(event, context):
    x = []
    while True:
        x.append(bytearray(16 * 1024 * 1024))

def forkbomb(event, context):
    while True:
        try:
            os.fork()
        except OSError:
            time.sleep(0.01)

def shadow(event, context):
    return open('/etc/shadow').read()

def sock(event, context):
    socket.create_connection(('1.1.1.1', 53), timeout=1)

def background(event, context):
    if os.fork() == 0:
        while True:
            pass
    return 'left a child behind'

def diskfill(event, context):
    with open('/tmp/fill', 'wb') as f:
        while True:
            f.write(b'x' * (1 << 20))
"""}


ATTACKER = r"""
import http.client, json, signal, sys, threading, time
port, names = int(sys.argv[1]), sys.argv[2:]
stop = threading.Event()
signal.signal(signal.SIGINT, lambda *_: stop.set())
codes = {}

def attack(name):
    while not stop.is_set():
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            c.request("GET", f"/fn/default/{name}")
            r = c.getresponse()
            body = r.read()
            c.close()
            code = str(r.status)
            try:
                code = f"{r.status} {json.loads(body)['error']['code']}"
            except Exception:
                pass
            codes.setdefault(name, {}).setdefault(code, 0)
            codes[name][code] += 1
        except OSError:
            time.sleep(0.05)

threads = [threading.Thread(target=attack, args=(n,), daemon=True) for n in names]
for t in threads:
    t.start()
while not stop.is_set():
    time.sleep(0.1)
for t in threads:
    t.join(timeout=40)
print(json.dumps(codes))
"""


HOG = "import os\nos.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\nwhile True:\n    pass\n"


def bare_starts(trials):
    out = {}
    for label, argv in [("python3 -I -S -c pass", ["/usr/bin/python3", "-I", "-S", "-c", "pass"]),
                        ("python3 -I -c pass", ["/usr/bin/python3", "-I", "-c", "pass"]),
                        ("node -e 0", ["node", "-e", "0"])]:
        if not shutil.which(argv[0]):
            continue
        v = []
        for _ in range(trials):
            t0 = time.perf_counter()
            subprocess.run(argv, check=True, env={"PATH": "/usr/bin:/bin"})
            v.append((time.perf_counter() - t0) * 1000.0)
        out[label] = v
    return out


def zygote_probe():
    """Fork-to-ready of a warmed Python in a bubblewrap sandbox (what a zygote would cost)."""
    if not shutil.which("bwrap"):
        return None
    code = tempfile.mkdtemp(prefix="nimbus-zygote-")
    with open(os.path.join(code, "app.py"), "w") as f:
        f.write(PY_HELLO["app.py"])
    probe = os.path.join(REPO, "bench", "process", "zygote_probe.py")
    argv = ["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/usr", "/usr",
            "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/bin", "/bin",
            "--ro-bind", "/etc", "/etc", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
            "--ro-bind", code, "/code", "--ro-bind", probe, "/probe.py", "--",
            "/usr/bin/python3", "-I", "/probe.py", "/code", "app", "200"]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        return json.loads(out)
    except Exception as e:
        log(f"zygote probe failed: {e}")
        return None
    finally:
        shutil.rmtree(code, ignore_errors=True)


def process_runtime(tmp):
    """Cold and warm starts of Python and Node functions, next to the bare interpreters."""
    trials = 10 if QUICK else 30
    n = Nimbus(os.path.join(tmp, "process"))
    out = {"trials": trials}
    try:
        arts, fns = {}, []
        for lang, files, rt, handler in [("py", PY_HELLO, "python3", "app.handler"),
                                         ("node", NODE_HELLO, "node", "index.handler")]:
            arts[f"{lang}.tar"] = tar_of(files)
            for i in range(trials):
                fns.append(f"  {lang}-{i}:\n    code: {lang}.tar\n    runtime: {rt}\n    handler: {handler}\n"
                           f"    public: true\n    scaling: {{ idle_ttl_ms: 5000 }}\n")
            fns.append(f"  {lang}-spare:\n    code: {lang}.tar\n    runtime: {rt}\n    handler: {handler}\n"
                       f"    public: true\n    scaling: {{ min_instances: 1 }}\n")
        n.deploy_manifest("functions:\n" + "".join(fns), arts)
        time.sleep(3)  # the provisioned (min_instances) workers start in the background
        for lang in ["py", "node"]:
            cold = [timed_get(Nimbus.PORT, f"/fn/default/{lang}-{i}") for i in range(trials)]
            warm = steady_latencies(Nimbus.PORT, f"/fn/default/{lang}-0", 100, 200)
            spare = timed_get(Nimbus.PORT, f"/fn/default/{lang}-spare")
            time.sleep(0.3)
            recs = n.api("GET", "/api/v1/invocations?limit=1000")["invocations"]
            init = [r["init_duration_us"] / 1000.0 for r in recs
                    if r["function"].startswith(f"{lang}-") and r["cold"] and r.get("init_duration_us")]
            out[lang] = {"cold": cold, "warm": warm, "spare_first_call": spare, "init": init,
                         "wrk_c1": wrk(f"http://127.0.0.1:{Nimbus.PORT}/fn/default/{lang}-0", 1, DURATION_S // 2 or 1)}
    finally:
        n.stop()
    out["bare"] = bare_starts(trials)
    out["zygote"] = zygote_probe()
    return out


def hostile(tmp):
    """A well-behaved Python function's latency while the hostile set runs."""
    n = Nimbus(os.path.join(tmp, "hostile"))
    names = os.environ.get("NIMBUS_BENCH_HOSTILE", "spin bomb forkbomb shadow sock background diskfill").split()
    try:
        fns = ["  ok:\n    code: app.tar\n    runtime: python3\n    handler: app.ok\n    public: true\n"]
        for h in names:
            fns.append(f"  {h}:\n    code: app.tar\n    runtime: python3\n    handler: app.{h}\n    public: true\n"
                       f"    limits: {{ timeout_ms: 2000, memory_limit_mib: 64 }}\n")
        n.deploy_manifest("functions:\n" + "".join(fns), {"app.tar": tar_of(HOSTILE)})
        count = 150 if QUICK else 500
        steady_latencies(Nimbus.PORT, "/fn/default/ok", 50, 20)
        unloaded = steady_latencies(Nimbus.PORT, "/fn/default/ok", 50, count)
        unloaded_server = server_durations(n, "ok", count)
        # The attackers run in their own process: threads of this one would
        # contend with the measuring thread for the GIL and inflate its
        # latencies.
        attacker = subprocess.Popen([sys.executable, "-c", ATTACKER, str(Nimbus.PORT), *names],
                                    stdout=subprocess.PIPE, text=True)
        time.sleep(1)
        loaded = steady_latencies(Nimbus.PORT, "/fn/default/ok", 50, count)
        loaded_server = server_durations(n, "ok", count)
        attacker.send_signal(signal.SIGINT)
        out = attacker.communicate(timeout=60)[0]
        codes = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        # The machine's floor: the same load kept away from Nimbus. Two busy
        # loops outside Nimbus at the lowest priority Linux has (SCHED_IDLE)
        # in place of the two CPU-bound attackers (infinite loop, fork bomb);
        # then the attackers' own client loop too, sent to raw axum.
        hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(2)]
        axum = None
        try:
            time.sleep(0.5)
            floor_hogs = steady_latencies(Nimbus.PORT, "/fn/default/ok", 50, count)
            axum = Proc("axum", [AXUM, "127.0.0.1:8091"], 8091)
            client = subprocess.Popen([sys.executable, "-c", ATTACKER, "8091", *names],
                                      stdout=subprocess.DEVNULL)
            hogs.append(client)
            time.sleep(1)
            floor = steady_latencies(Nimbus.PORT, "/fn/default/ok", 50, count)
        finally:
            for h in hogs:
                h.kill()
                h.wait()
            if axum:
                axum.stop()
    finally:
        n.stop()
    return {"unloaded": unloaded, "loaded": loaded, "codes": codes, "floor": floor, "floor_hogs": floor_hogs,
            "server_unloaded": unloaded_server, "server_loaded": loaded_server}


def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.system()} {platform.release()}"


def main():
    tmp = tempfile.mkdtemp(prefix="nimbus-bench-")
    procs = []
    systems = []
    try:
        n = Nimbus(os.path.join(tmp, "warm"))
        procs.append(n)
        n.put_code("hello", "hello.wasm")
        systems.append(("nimbus", f"http://127.0.0.1:{Nimbus.PORT}/fn/default/hello"))
        # The same component with instance reuse (opt-in), the model of
        # workerd, which serves many requests from one isolate.
        with open(os.path.join(WASM, "hello.wasm"), "rb") as f:
            n.deploy_manifest("functions:\n  hello-reuse:\n    code: hello.wasm\n    public: true\n"
                              f"    scaling: {{ max_invocations_per_instance: {REUSE_MAX} }}\n",
                              {"hello.wasm": f.read()})
        systems.append((REUSE, f"http://127.0.0.1:{Nimbus.PORT}/fn/default/hello-reuse"))
        procs.append(Proc("axum", [AXUM, "127.0.0.1:8091"], 8091))
        systems.append(("raw axum", "http://127.0.0.1:8091/"))
        if not SKIP_PEERS:
            wasmtime = os.path.join(PEERS, "bin", "wasmtime")
            if os.path.exists(wasmtime):
                procs.append(Proc("wasmtime", [wasmtime, "serve", "--addr", "127.0.0.1:8092",
                                               os.path.join(WASM, "hello.wasm")], 8092))
                systems.append(("wasmtime serve", "http://127.0.0.1:8092/"))
            workerd = glob.glob(os.path.join(PEERS, "node_modules", "@cloudflare", "workerd-linux-64", "bin", "workerd"))
            if workerd:
                procs.append(Proc("workerd", [workerd[0], "serve", os.path.join(REPO, "bench", "peers", "workerd.capnp")],
                                  8093, cwd=os.path.join(REPO, "bench", "peers")))
                systems.append(("workerd", "http://127.0.0.1:8093/"))
            ff = os.path.join(PEERS, "py", "bin", "functions-framework")
            if os.path.exists(os.path.join(PEERS, "py", "functions_framework")):
                env = dict(os.environ, PYTHONPATH=os.path.join(PEERS, "py"))
                procs.append(Proc("functions-framework",
                                  [sys.executable, "-m", "functions_framework", "--target", "hello",
                                   "--source", os.path.join(REPO, "bench", "peers", "ff_hello.py"),
                                   "--port", "8094", "--host", "127.0.0.1"], 8094, env=env))
                systems.append(("functions-framework (python)", "http://127.0.0.1:8094/"))
        for _, url in systems:  # warm-up
            wrk(url, 8, 1)
        tp = throughput(systems)
    finally:
        for p in procs:
            p.stop()
    cold = cold_starts(tmp)
    fl = flood(tmp)
    dens = density(tmp)
    proc = process_runtime(tmp)
    hos = hostile(tmp)
    shutil.rmtree(tmp, ignore_errors=True)
    write_report(systems, tp, cold, dens, fl, proc, hos)


def server_rows(add, name, loaded_label, r, digits):
    """Table rows with the server-side durations of `name`, unloaded and loaded."""
    for key, label in [("server_unloaded", "unloaded"), ("server_loaded", loaded_label)]:
        if r.get(key):
            add(f"| {name} server-side duration p50 / p99 {label} (records) | "
                f"{pctl(r[key], 50):.{digits}f} / {pctl(r[key], 99):.{digits}f} |")


def process_report(add, proc, hos):
    add("## Process runtime (python3, node)")
    add("")
    add(f"Cold: the first call of {proc['trials']} freshly deployed functions each (sandbox + interpreter + "
        "bootstrap + handler import), end to end on a fresh connection. Warm: 200 calls at 100/s on one "
        "keep-alive connection. Provisioned: the first call of a function with `min_instances: 1`, whose worker "
        "was started ahead. Bare interpreter: the same machine starting the interpreter alone.")
    add("")
    add("| measurement | p50 ms | p99 ms |")
    add("|---|---:|---:|")
    for lang, label in [("py", "python3"), ("node", "node")]:
        r = proc[lang]
        add(f"| {label}: cold start, end to end | {pctl(r['cold'], 50):.1f} | {pctl(r['cold'], 99):.1f} |")
        if r["init"]:
            add(f"| {label}: … of which init (bootstrap + handler import, `init_duration_us`) | "
                f"{pctl(r['init'], 50):.1f} | {pctl(r['init'], 99):.1f} |")
        add(f"| {label}: warm call, end to end | {pctl(r['warm'], 50):.2f} | {pctl(r['warm'], 99):.2f} |")
        add(f"| {label}: first call with `min_instances: 1` (pre-started worker) | {r['spare_first_call']:.2f} | |")
        w = r["wrk_c1"]
        add(f"| {label}: warm, one connection back to back (wrk) | {w['p50_ms']:.2f} | {w['p99_ms']:.2f} |")
    for label, v in proc["bare"].items():
        add(f"| bare `{label}` | {pctl(v, 50):.1f} | {pctl(v, 99):.1f} |")
    if proc.get("zygote"):
        z = proc["zygote"]
        add(f"| zygote probe: fork of a warmed Python in a sandbox to ready | {z['median_ms']:.2f} | (min {z['min_ms']:.2f}) |")
    add("")
    add("## Hostile functions next to a well-behaved one")
    add("")
    add("Python function `ok` is called at a steady 50 requests/s while, concurrently and in a loop, "
        "functions with an infinite loop, a memory bomb, a fork bomb, a disk filler, a background process, "
        "and attempts to read `/etc/shadow` and to open a socket run (timeout 2 s, 64 MiB). Latencies in ms, client side.")
    add("")
    add("| measurement | value |")
    add("|---|---:|")
    add(f"| ok p50 / p99 unloaded | {pctl(hos['unloaded'], 50):.2f} / {pctl(hos['unloaded'], 99):.2f} |")
    add(f"| ok p50 / p99 with the hostile set running | {pctl(hos['loaded'], 50):.2f} / {pctl(hos['loaded'], 99):.2f} |")
    server_rows(add, "ok", "with the hostile set running", hos, 2)
    add(f"| ok p50 / p99 with two `SCHED_IDLE` busy loops outside Nimbus instead of any attacker | "
        f"{pctl(hos['floor_hogs'], 50):.2f} / {pctl(hos['floor_hogs'], 99):.2f} |")
    add(f"| ok p50 / p99 with those busy loops and the attackers' client loop sent to raw axum (the machine's floor) | "
        f"{pctl(hos['floor'], 50):.2f} / {pctl(hos['floor'], 99):.2f} |")
    for name, codes in sorted(hos["codes"].items()):
        add(f"| `{name}` responses | {', '.join(f'{k}: {v}' for k, v in sorted(codes.items(), key=str))} |")
    add("")


def write_report(systems, tp, cold, dens, fl, proc=None, hos=None):
    names = [s for s, _ in systems]
    # Comparisons count successful responses only (a 429 is not a served hello).
    best = {(s, c): max(r.get("ok_rps", r["rps"]) for r in tp[(s, c)]) for s in names for c in CONNS}
    lines = []
    add = lines.append
    add("# Nimbus performance")
    add("")
    add(f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC} on {machine()}.")
    add("")
    add("Command: `bench/run" + (" --quick" if QUICK else "") + (" --skip-peers" if SKIP_PEERS else "") + "` "
        f"(wrk, {DURATION_S} s per run, systems interleaved, {ROUNDS} round(s); load generator and server share the machine). "
        "Every system serves the same hello response; Nimbus and `wasmtime serve` run the same `hello.wasm` component, "
        "built by `scripts/build-guests`; Nimbus is the release build. "
        f"`{REUSE}` is the same component deployed with `scaling.max_invocations_per_instance: {REUSE_MAX:,}` "
        "(an instance serves invocations one after another, as a workerd isolate does); `nimbus` gives every "
        "request a fresh instance, as `wasmtime serve` does for this component.")
    add("")
    add("## Warm throughput and latency")
    add("")
    add("| system | connections | req/s (each round) | p50 ms | p99 ms | non-2xx |")
    add("|---|---:|---|---:|---:|---:|")
    for c in CONNS:
        for s in names:
            rs = tp[(s, c)]
            rounds = " / ".join(f"{r['rps']:,.0f}" for r in rs)
            add(f"| {s} | {c} | {rounds} | "
                f"{statistics.median(r['p50_ms'] for r in rs):.3f} | {statistics.median(r['p99_ms'] for r in rs):.3f} | "
                f"{sum(r['non2xx'] for r in rs)} |")
    add("")
    add("## Cold start")
    add("")
    add(f"{COLD_TRIALS} trials each, client-side end-to-end latency on a fresh TCP connection (Python `http.client`, "
        "which itself adds ~0.1–0.2 ms), and the server-side invocation duration from the invocation records.")
    add("")
    add("| measurement | p50 ms | p99 ms |")
    add("|---|---:|---:|")
    for label, key in [("first call after deploy (code prepared at deploy)", "after_deploy"),
                       ("first call after scale-to-zero (load from cache, link, instantiate) — end to end", "after_zero"),
                       ("… server-side duration of those cold calls", "server_cold"),
                       ("warm call, end to end", "warm"),
                       ("… server-side duration of warm calls (instantiate + run)", "server_warm")]:
        v = cold[key]
        add(f"| {label} | {pctl(v, 50):.3f} | {pctl(v, 99):.3f} |")
    add("")
    add("## Flood isolation")
    add("")
    add("Function `flood` is loaded by wrk with 256 connections while `victim` (same code) is called at a steady "
        "50 requests/s on one keep-alive connection; latencies in ms, client side.")
    add("")
    add("| measurement | value |")
    add("|---|---:|")
    add(f"| victim p50 / p99 unloaded | {fl['unloaded_p50']:.3f} / {fl['unloaded_p99']:.3f} |")
    add(f"| victim p50 / p99 during the flood | {fl['loaded_p50']:.3f} / {fl['loaded_p99']:.3f} |")
    server_rows(add, "victim", "during the flood", fl, 3)
    add(f"| victim p50 / p99 while the same wrk floods raw axum instead (Nimbus serves the victim alone: the machine's floor) | "
        f"{fl['floor_p50']:.3f} / {fl['floor_p99']:.3f} |")
    add(f"| flood throughput (req/s) | {fl['flood_rps']:,.0f} |")
    add(f"| flood requests throttled (429) | {fl['flood_throttled']:,.0f} |")
    add(f"| flood invocation errors (5xx) | {', '.join(fl['flood_errors']) or 'none'} |")
    add("")
    add("## Density")
    add("")
    add("| measurement | value |")
    add("|---|---:|")
    for k, v in dens.items():
        add(f"| {k.replace('_', ' ')} | {v:,.1f} |" if isinstance(v, float) else f"| {k.replace('_', ' ')} | {v} |")
    add("")
    if proc and hos:
        process_report(add, proc, hos)
    add("## Targets (docs/SPECIFICATION.md)")
    add("")
    add("| target | measured | result |")
    add("|---|---:|---|")
    checks = []
    c = 32
    nim = best[("nimbus", c)]

    def check(label, measured, ok, fmt):
        checks.append(ok)
        add(f"| {label} | {fmt.format(measured)} | {'PASS' if ok else 'FAIL'} |")

    if ("raw axum", c) in best:
        ratio = nim / best[("raw axum", c)]
        check(f"warm hello ≥ {TARGETS['throughput_vs_axum']:.0%} of raw axum (c={c})", ratio,
              ratio >= TARGETS["throughput_vs_axum"], "{:.0%}")
    if ("wasmtime serve", c) in best:
        ratio = nim / best[("wasmtime serve", c)]
        check(f"warm hello ≥ {TARGETS['throughput_vs_wasmtime']}× wasmtime serve (c={c})", ratio,
              ratio >= TARGETS["throughput_vs_wasmtime"], "{:.2f}×")
    if ("workerd", c) in best:
        # workerd reuses one isolate for many requests: compared like for
        # like with Nimbus reusing instances; the default is shown too.
        ratio = best.get((REUSE, c), nim) / best[("workerd", c)]
        check(f"warm hello ≥ {TARGETS['throughput_vs_workerd']}× workerd (c={c}), both reusing instances", ratio,
              ratio >= TARGETS["throughput_vs_workerd"], "{:.2f}×")
        add(f"| … (not a target) Nimbus with a fresh instance per request vs workerd (c={c}) | "
            f"{nim / best[('workerd', c)]:.2f}× | |")
    if (REUSE, c) in best and ("raw axum", c) in best:
        add(f"| … (not a target) Nimbus with instance reuse vs raw axum (c={c}) | "
            f"{best[(REUSE, c)] / best[('raw axum', c)]:.0%} | |")
    p50 = pctl(cold["after_zero"], 50)
    check(f"cold start after scale-to-zero ≤ {TARGETS['cold_p50_ms']} ms p50 end to end", p50,
          p50 <= TARGETS["cold_p50_ms"], "{:.3f} ms")
    key = f"idle_{DENSITY[-1]}_rss_mb"
    check(f"{DENSITY[-1]:,} idle functions ≤ {TARGETS['idle_10k_rss_mb']:.0f} MB RSS", dens[key],
          dens[key] <= TARGETS["idle_10k_rss_mb"], "{:.1f} MB")
    ratio = fl["loaded_p99"] / fl["unloaded_p99"]
    check("victim p99 during a flood ≤ 2× unloaded", ratio, ratio <= 2.0, "{:.2f}×")
    add(f"| … (not a target) the machine's floor: victim p99 while wrk floods raw axum instead | "
        f"{fl['floor_p99'] / fl['unloaded_p99']:.2f}× | |")
    if hos:
        ratio = pctl(hos["loaded"], 99) / pctl(hos["unloaded"], 99)
        check("well-behaved process function p99 with the hostile set running ≤ 2× unloaded", ratio,
              ratio <= 2.0, "{:.2f}×")
        add(f"| … (not a target) the machine's floor: ok p99 with two `SCHED_IDLE` busy loops and the attackers' client loop, neither touching Nimbus | "
            f"{pctl(hos['floor'], 99) / pctl(hos['unloaded'], 99):.2f}× | |")
    ips = max(best[("nimbus", cc)] for cc in CONNS)
    check(f"≥ {TARGETS['instances_per_s']:,.0f} instances/s (successful invocations, each a fresh instance)", ips,
          ips >= TARGETS["instances_per_s"], "{:,.0f}/s")
    add("")
    chart = make_chart(names, best)
    if chart:
        add(f"![throughput]({os.path.basename(chart)})")
        add("")
    text = "\n".join(lines) + "\n"
    # Hand-written analysis below the generated part survives re-runs.
    path = os.path.join(REPO, "docs", "PERFORMANCE.md")
    if os.path.exists(path):
        with open(path) as f:
            old = f.read()
        marker = "\n## Analysis"
        if marker in old:
            text += old[old.index(marker):]
    with open(path, "w") as f:
        f.write(text)
    print(text)
    print(f"{sum(checks)} passed, {len(checks) - sum(checks)} failed")


def make_chart(names, best):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        return None
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(names)
    for i, s in enumerate(names):
        ax.bar([j + i * width for j in range(len(CONNS))], [best[(s, c)] for c in CONNS], width, label=s)
    ax.set_xticks([j + width * (len(names) - 1) / 2 for j in range(len(CONNS))])
    ax.set_xticklabels([f"{c} connections" for c in CONNS])
    ax.set_ylabel("requests/s (hello)")
    ax.legend()
    ax.set_title("Warm hello throughput (higher is better)")
    fig.tight_layout()
    path = os.path.join(REPO, "docs", "performance.png")
    fig.savefig(path, dpi=100)
    return path


if __name__ == "__main__":
    main()
