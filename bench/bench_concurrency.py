"""Benchmark: map concurrency through LiteLLM against a loopback OpenAI-compatible server.

Run ``python bench/bench_concurrency.py``. The bench starts its own HTTP server on 127.0.0.1 that
speaks ``POST /v1/chat/completions``, sleeps 100 ms per request (like a remote model) and answers
with the deterministic test LM's text for the prompt it received; it serves a bounded number of
requests and stops itself. A spec maps 400 one-line chunks through an ``openai/…`` model with
``api_base`` pointing at it — the real path: DSPy → our call gate → LiteLLM → HTTP — at
``--concurrency 32``. Ideal wall time is 400 / 32 * 0.1 s = 1.25 s; the target is <= 1.25 * ideal
for the map step. The server runs in its own process so that its work does not share our GIL, and
the same run measures a baseline: 400 bare ``litellm.completion`` calls from 32 threads, which is
the floor any LiteLLM-based runtime can reach on this machine. Prints a table and saves
``bench/results/bench_concurrency.json``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from rlm_dsl.compile import compile_file
from rlm_dsl.runtime.executor import RunOptions, execute
from rlm_dsl.runtime.lm.testing import answer

RESULTS = Path(__file__).parent / "results" / "bench_concurrency.json"
CHUNKS, CONCURRENCY, DELAY_S = 400, 32, 0.1
IDEAL_S = CHUNKS / CONCURRENCY * DELAY_S
TARGET_S = 1.25 * IDEAL_S
MAX_REQUESTS = 4 * CHUNKS  # the server stops itself after this many
SPEC = '''recipe fanout "Count marked lines remotely."
lm remote = "openai/bench-model" with api_base="{base}", api_key_env="RLM_BENCH_KEY"
input items: lines
chunk items -> pieces by lines(1)
map pieces -> n: int using remote """
  COUNT "mark"
  {{{{ chunk.text }}}}
"""
output n
'''


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else Nagle + delayed ACK add ~40 ms to every reply
    served = 0
    active = 0
    peak = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with _Handler.lock:
            _Handler.served += 1
            _Handler.active += 1
            _Handler.peak = max(_Handler.peak, _Handler.active)
            last = _Handler.served >= MAX_REQUESTS
        time.sleep(DELAY_S)
        with _Handler.lock:
            _Handler.active -= 1
        messages = body["messages"]
        system = next((m["content"] for m in messages if m["role"] == "system"), "")
        text = answer(_text(system), _text(messages[-1]["content"]))
        payload = json.dumps({
            "id": "bench", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "bench-model"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110},
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        if last:
            threading.Thread(target=self.server.shutdown, daemon=True).start()

    def do_GET(self) -> None:
        """``/stats``: requests served and the peak in flight."""
        payload = json.dumps({"served": _Handler.served, "peak": _Handler.peak}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        """Quiet."""


def _serve(ports: multiprocessing.Queue) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    ports.put(server.server_address[1])
    server.serve_forever()


def _start_server() -> tuple[multiprocessing.Process, str]:
    context = multiprocessing.get_context("fork")
    ports = context.Queue()
    process = context.Process(target=_serve, args=(ports,), daemon=True)
    process.start()
    return process, f"http://127.0.0.1:{ports.get(timeout=30)}"


def _stats(base: str) -> dict:
    with urllib.request.urlopen(f"{base}/stats", timeout=10) as reply:
        return json.loads(reply.read())


def _bare_litellm(base: str, lines: list[str]) -> float:
    """Wall time of the same 400 requests as bare ``litellm.completion`` calls, 32 threads."""
    import litellm

    def call(line: str) -> None:
        litellm.completion(model="openai/bench-model", api_base=f"{base}/v1", api_key="loopback",
                           messages=[{"role": "user", "content": f'COUNT "mark"\n{line}'}])

    call(lines[0])  # warm LiteLLM's lazy imports and client cache
    started = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(call, lines))
    return time.perf_counter() - started


def _text(content: object) -> str:
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


def _step_wall(db: Path) -> float:
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        row = con.execute("SELECT started_at, finished_at FROM step_status "
                          "WHERE step = 'map-n' AND status = 'done'").fetchone()
    started, finished = (v if isinstance(v, datetime) else datetime.fromisoformat(v) for v in row)
    return (finished - started).total_seconds()


def main() -> None:
    process, root = _start_server()
    base = f"{root}/v1"
    os.environ["RLM_BENCH_KEY"] = "loopback"
    lines = [f"item {i} {'mark' if i % 5 == 0 else 'plain'}" for i in range(CHUNKS)]
    bare = _bare_litellm(root, lines)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "items.txt").write_text("\n".join(lines) + "\n")
        (folder / "fanout.rlm").write_text(SPEC.format(base=base))
        db = folder / "run.duckdb"
        started = time.perf_counter()
        result = execute(compile_file(folder / "fanout.rlm"),
                         RunOptions(inputs={"items": str(folder / "items.txt")}, db=str(db),
                                    concurrency=CONCURRENCY))
        total = time.perf_counter() - started
        step = _step_wall(db)
    stats = _stats(root)
    process.terminate()
    assert result.summary["failures"] == 0, result.summary
    assert sum(result.outputs["n"]) == sum("mark" in line for line in lines)
    verdict = "PASS" if step <= TARGET_S else "FAIL"
    report = {"chunks": CHUNKS, "concurrency": CONCURRENCY, "delay_s": DELAY_S,
              "ideal_s": IDEAL_S, "target_s": TARGET_S, "map_step_wall_s": round(step, 3),
              "run_wall_s": round(total, 3), "ratio_to_ideal": round(step / IDEAL_S, 3),
              "bare_litellm_wall_s": round(bare, 3),
              "ratio_to_bare_litellm": round(step / bare, 3),
              "calls": result.summary["calls"], "requests_served": stats["served"],
              "peak_in_flight": stats["peak"],
              "verdict": verdict,
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count()}}
    print(f"{'chunks':>7} {'conc':>5} {'ideal s':>8} {'litellm s':>10} {'map s':>7} {'run s':>7} "
          f"{'x ideal':>8} {'x litellm':>10}")
    print(f"{CHUNKS:>7} {CONCURRENCY:>5} {IDEAL_S:>8.2f} {bare:>10.2f} {step:>7.2f} {total:>7.2f} "
          f"{step / IDEAL_S:>8.2f} {step / bare:>10.2f}")
    print(f"peak requests in flight at the server: {stats['peak']}")
    print(f"target: map step <= {TARGET_S:.3f} s: {verdict}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
