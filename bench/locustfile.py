"""Locust users for `afrl bench load`: POST /v1/score in the mix of bench/load_mix.py.

Each user sends its next request as soon as the previous answer has been
read in full (closed loop: concurrency = the number of users). A streamed
request counts as done when its `done` event has arrived, so its time covers
the grades and the explanation. A request the server refuses with 429 (its
admission control under overload) is recorded under the kind's name plus
" [429]", so the kind's latencies are those of answered requests, and the
user waits the Retry-After it was given (capped) as a well-behaved client
does. Reads the mix from the JSON file named by AFRL_LOAD_MIX
(bench.load_mix.write_mix).

Run it through `afrl bench load`, which starts the server and locust in
processes of their own: locust's gevent monkey-patching fails in a process
that already imported ssl or torch, so nothing here may import afrl code that
does. By hand, against a running server:

    AFRL_LOAD_MIX=mix.json locust -f bench/locustfile.py --headless -u 8 -t 60s --host http://127.0.0.1:8000
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

from locust import FastHttpUser, constant, task

from bench.load_mix import REJECTED, RETRY_AFTER_CAP_S  # plain constants: no ssl, no torch

_MIX = json.loads(Path(os.environ["AFRL_LOAD_MIX"]).read_text())
KINDS = _MIX["kinds"]
WEIGHTS = [k["weight"] for k in KINDS]
REQUESTS = _MIX["requests"]


class ScoreUser(FastHttpUser):
    wait_time = constant(0)

    @task
    def score(self) -> None:
        kind = random.choices(KINDS, weights=WEIGHTS)[0]
        request = random.choice(REQUESTS)
        body = {"query": request["query"], "documents": request["documents"][: kind["documents"]], **kind["extra"]}
        wait_s = 0.0
        with self.client.post("/v1/score", json=body, name=kind["name"], catch_response=True) as response:
            if response.status_code == 429:
                response.request_meta["name"] = kind["name"] + REJECTED
                response.failure("HTTP 429")
                wait_s = min(float(response.headers.get("Retry-After") or 1), RETRY_AFTER_CAP_S)
            elif response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")
            elif kind["extra"].get("stream") and "event: done" not in (response.text or ""):
                response.failure("the event stream ended without a done event")
            else:
                response.success()
        if wait_s:
            time.sleep(wait_s)  # gevent-patched: only this user waits
