"""Measures what a pre-forked zygote would give a Python worker.

Run inside the same kind of bubblewrap sandbox as a Nimbus worker. The
process imports what a worker imports before its handler (json, importlib,
time) plus the handler module, then forks children that each signal "ready"
on a pipe; prints the median and minimum fork-to-ready time in ms.
"""

import importlib
import json  # noqa: F401  (what the worker bootstrap imports)
import os
import statistics
import sys
import time

sys.path.insert(0, sys.argv[1])
importlib.import_module(sys.argv[2])
samples = []
for _ in range(int(sys.argv[3])):
    r, w = os.pipe()
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.write(w, b"r")
        os._exit(0)
    os.close(w)
    os.read(r, 1)
    samples.append((time.perf_counter() - t0) * 1000.0)
    os.close(r)
    os.waitpid(pid, 0)
print(json.dumps({"median_ms": statistics.median(samples), "min_ms": min(samples)}))
