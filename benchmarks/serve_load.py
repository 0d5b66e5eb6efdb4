"""Load on the API over loopback: `medtune serve` (embedded model on llama.cpp by default) in a subprocess,
N concurrent clients x M requests each from an asyncio httpx loop (a mix of plain and streamed questions and
a few emergencies), small max_tokens; a client told 429/503 waits Retry-After before its next request.

Reports: answers by status (429 rate limit and 503 queue-full are intended refusals; anything else that is
not 200 is an error), p50/p95 latency of the answered requests (and time to first text of streamed ones),
requests/s, audit rows == requests sent (read back with the audit module after the server stopped on
SIGTERM), and the server's RSS after warm-up, after a first round and after a second round (flat memory
means the second round adds about nothing). The load average is printed: run it on a quiet machine.

Run as: .venv/bin/python benchmarks/serve_load.py [--clients 16] [--requests 20] [--max-tokens 24]
        [--model default] [--engine llama.cpp] [--queue-size 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from medtune.serve.audit import read_rows

KEY = "bench-key-1"
QUESTIONS = [
    "What is high blood pressure?", "What does a cholesterol test measure?", "What is anemia?",
    "How is type 2 diabetes usually managed?", "What are common side effects of ibuprofen?",
    "What is the difference between a virus and a bacterium?", "How much sleep do adults need?",
    "What does an elevated white blood cell count mean?", "What is asthma?", "How do vaccines work?",
]
EMERGENCY = "my dad just collapsed, he's not breathing and his lips are blue"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


async def one(client: httpx.AsyncClient, url: str, rng: random.Random, max_tokens: int) -> dict:
    emergency = rng.random() < 0.1
    stream = rng.random() < 0.5
    body = {"model": "default", "max_tokens": max_tokens, "stream": stream,
            "messages": [{"role": "user", "content": EMERGENCY if emergency else rng.choice(QUESTIONS)}]}
    t0 = time.monotonic()
    first = None
    retry = 0.0
    try:
        if stream:
            async with client.stream("POST", url, json=body) as r:
                status = r.status_code
                retry = float(r.headers.get("Retry-After", 0))
                async for line in r.aiter_lines():
                    if first is None and '"content": "' in line and '"content": ""' not in line:
                        first = time.monotonic() - t0
        else:
            r = await client.post(url, json=body)
            status = r.status_code
            retry = float(r.headers.get("Retry-After", 0))
            json.loads(r.content)  # every answer, error or not, must be JSON
    except (httpx.HTTPError, ValueError) as e:
        return {"status": f"exception {type(e).__name__}", "latency": time.monotonic() - t0, "first": None,
                "stream": stream, "retry": 1.0}
    return {"status": status, "latency": time.monotonic() - t0, "first": first, "stream": stream, "retry": retry}


async def round_of_load(base: str, clients: int, requests: int, max_tokens: int, seed: int) -> list[dict]:
    url = base + "/v1/chat/completions"
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}, timeout=300, limits=limits) as c:
        async def worker(i: int) -> list[dict]:
            rng = random.Random(seed * 1000 + i)
            out = []
            for _ in range(requests):
                out.append(await one(c, url, rng, max_tokens))
                await asyncio.sleep(min(out[-1]["retry"], 5.0))  # a polite client honours Retry-After
            return out

        results = await asyncio.gather(*(worker(i) for i in range(clients)))
    return [r for rs in results for r in rs]


def report(name: str, results: list[dict], seconds: float) -> None:
    by = Counter(r["status"] for r in results)
    ok = [r for r in results if r["status"] == 200]
    errors = sum(n for s, n in by.items() if s not in (200, 429, 503))
    lat = [r["latency"] for r in ok]
    firsts = [r["first"] for r in ok if r["stream"] and r["first"] is not None]
    print(f"{name}: {len(results)} requests in {seconds:.1f} s ({len(results) / seconds:.1f} req/s, "
          f"{len(ok) / seconds:.2f} answers/s); status {dict(sorted(by.items(), key=str))}; errors {errors}")
    print(f"  latency of answers p50 {pct(lat, 0.5):.3f} s  p95 {pct(lat, 0.95):.3f} s  max {max(lat or [0]):.3f} s;"
          f" streamed first text p50 {pct(firsts, 0.5):.3f} s  p95 {pct(firsts, 0.95):.3f} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=20, help="requests per client per round")
    ap.add_argument("--max-tokens", type=int, default=24)
    ap.add_argument("--model", default="default")
    ap.add_argument("--engine", default="llama.cpp")
    ap.add_argument("--queue-size", type=int, default=8)
    ap.add_argument("--rate-limit", default="100000/minute")
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; {args.clients} clients x "
          f"{args.requests} requests x 2 rounds, max_tokens {args.max_tokens}, queue {args.queue_size}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp = Path(tempfile.mkdtemp(prefix="medtune-load-"))
    audit = tmp / "audit.sqlite3"
    cmd = [sys.executable, "-m", "medtune.cli", "serve", "--model", args.model, "--engine", args.engine,
           "--port", str(port), "--api-key", KEY, "--set", f"serve.audit_path={audit}",
           "--set", f"serve.queue_size={args.queue_size}", "--set", f"serve.rate_limit={args.rate_limit}",
           "--set", "serve.request_timeout=300"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sent = 0
    try:
        t0 = time.monotonic()
        line = proc.stdout.readline()
        if "ready" not in line:
            print("server did not start:", line, proc.stderr.read()[-2000:])
            return 1
        print(f"server ready in {time.monotonic() - t0:.1f} s: {line.strip()}")
        base = f"http://127.0.0.1:{port}"
        warm = asyncio.run(round_of_load(base, 1, 3, args.max_tokens, seed=0))
        sent += len(warm)
        rss = [rss_mb(proc.pid)]
        for k in (1, 2):
            t = time.monotonic()
            results = asyncio.run(round_of_load(base, args.clients, args.requests, args.max_tokens, seed=k))
            report(f"round {k}", results, time.monotonic() - t)
            sent += len(results)
            rss.append(rss_mb(proc.pid))
        print(f"server RSS: after warm-up {rss[0]:.0f} MB, after round 1 {rss[1]:.0f} MB, after round 2 "
              f"{rss[2]:.0f} MB (round 2 added {rss[2] - rss[1]:+.0f} MB)")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    rows = read_rows(audit)
    print(f"server exit code {proc.returncode}; traceback in its stderr: {'Traceback' in err}; "
          f"audit rows {len(rows)} for {sent} requests sent ({'equal' if len(rows) == sent else 'DIFFERENT'})")
    return 0 if len(rows) == sent and proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
