#!/usr/bin/env python3
"""Change-feed fan-out: N server-sent-event subscribers on one collection,
a writer that puts a document stamped with the time, and the delay until
each subscriber has the change. Prints "p50_ms p99_ms deliveries".

    bench/docs-fanout.py URL TOKEN [SUBSCRIBERS] [ROUNDS]
"""
import asyncio
import json
import sys
import time
import urllib.parse
import urllib.request

URL, TOKEN = sys.argv[1], sys.argv[2]
N = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
ROUNDS = int(sys.argv[4]) if len(sys.argv) > 4 else 20
u = urllib.parse.urlparse(URL)
PATH = "/api/v1/namespaces/default/collections/fanout/changes"
delays = []


async def subscriber(ready, done):
    r, w = await asyncio.open_connection(u.hostname, u.port)
    w.write(
        (
            f"GET {PATH} HTTP/1.1\r\nhost: {u.hostname}\r\n"
            f"authorization: Bearer {TOKEN}\r\naccept: text/event-stream\r\n\r\n"
        ).encode()
    )
    await w.drain()
    got = 0
    signalled = False
    while got < ROUNDS:
        line = await r.readline()
        if not line:
            break
        if line.startswith(b"event: ready") and not signalled:
            signalled = True
            ready.release()
        if line.startswith(b"data: ") and b'"sent"' in line:
            now = time.time()
            sent = json.loads(line[6:])["data"]["sent"]
            delays.append((now - sent) * 1000)
            got += 1
    w.close()
    done.release()


def put(i):
    req = urllib.request.Request(
        f"{URL}/api/v1/namespaces/default/collections/fanout/docs/d{i}",
        data=json.dumps({"sent": time.time(), "i": i}).encode(),
        method="PUT",
        headers={"authorization": f"Bearer {TOKEN}", "content-type": "application/json"},
    )
    urllib.request.urlopen(req).read()


async def main():
    ready = asyncio.Semaphore(0)
    done = asyncio.Semaphore(0)
    tasks = [asyncio.create_task(subscriber(ready, done)) for _ in range(N)]
    for _ in range(N):
        await ready.acquire()
    loop = asyncio.get_running_loop()
    for i in range(ROUNDS):
        await loop.run_in_executor(None, put, i)
        await asyncio.sleep(0.5)
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
    delays.sort()
    p = lambda q: delays[min(len(delays) - 1, int(q * len(delays)))]
    print(f"{p(0.5):.1f} {p(0.99):.1f} {len(delays)}")


asyncio.run(main())
