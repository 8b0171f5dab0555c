#!/usr/bin/env python3
"""Latency of the `history` server function on a long channel: pages of 50 asked
for at random points of the channel (as people scrolling back would), over one
keep-alive HTTP connection on loopback, one at a time. Prints one JSON line.

    measure.py ADDR LABEL MESSAGES [REQUESTS]
"""
import http.client
import json
import random
import sys
import time

addr, label, messages = sys.argv[1], sys.argv[2], int(sys.argv[3])
requests = int(sys.argv[4]) if len(sys.argv) > 4 else 2000
host, port = addr.rsplit(":", 1)
connection = http.client.HTTPConnection(host, int(port), timeout=10)
headers = {"Content-Type": "application/x-www-form-urlencoded"}
random.seed(1)


def ask(body):
    connection.request("POST", "/api/history", body=body, headers=headers)
    answer = connection.getresponse()
    payload = answer.read()
    if answer.status != 200:
        raise SystemExit(f"history answered {answer.status}: {payload[:200]!r}")
    return json.loads(payload)


# The newest page, and one from the start: the channel holds what it should.
newest = ask("channel=General&limit=50")
oldest = ask("channel=General&after=0&limit=50")
assert newest["messages"][-1]["seq"] == messages, newest["messages"][-1]["seq"]
assert oldest["messages"][0]["seq"] == 1

for _ in range(100):  # warm up
    ask(f"channel=General&before={random.randint(2, messages)}&limit=50")
times = []
for _ in range(requests):
    before = random.randint(2, messages + 1)
    started = time.perf_counter()
    page = ask(f"channel=General&before={before}&limit=50")
    times.append((time.perf_counter() - started) * 1000)
    assert page["messages"][-1]["seq"] == before - 1
times.sort()
pick = lambda q: round(times[min(len(times) - 1, int(q * len(times)))], 3)
print(json.dumps({
    "system": label, "scenario": "history_page", "messages_in_channel": messages,
    "page": 50, "requests": requests,
    "p50_ms": pick(0.50), "p99_ms": pick(0.99), "p999_ms": pick(0.999),
}))
