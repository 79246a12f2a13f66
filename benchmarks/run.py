"""`make bench`: cold-start time of the headline command and in-process estimates per second.

Prints medians and ratios; nothing here asserts, since timings are noisy on shared machines.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

HEADLINE = ["--params", "70B", "--dtype", "int4", "--ctx", "8192"]
TRAINING = ["train", "--model", "llama-3.1-8b", "--method", "qlora", "--seq", "4096",
            "--grad-checkpointing"]  # no --gpu: the table of common GPUs is computed too


def _seconds(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def median_seconds(cmd: list[str], runs: int) -> float:
    return statistics.median(_seconds(cmd) for _ in range(runs))


def paired_ratio(cmd: list[str], baseline: list[str], runs: int) -> tuple[float, float, float]:
    """Median of cmd / baseline over runs taken in turn (issue #20's measure: a shared machine's
    load moves both of a pair alike), and each command's median seconds."""
    pairs = [(_seconds(baseline), _seconds(cmd)) for _ in range(runs)]
    return (statistics.median(b / a for a, b in pairs), statistics.median(b for _, b in pairs),
            statistics.median(a for a, _ in pairs))


def _rate(function: Callable[..., object], cases: Sequence[tuple[dict[str, object], str]],
          what: str, seconds: float) -> None:
    for kwargs, label in cases:
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            function(**kwargs)
            n += 1
        rate = n / (time.perf_counter() - start)
        print(f"in-process {what} per second ({label:7}): {rate:10.0f}")


def in_process_rate(seconds: float = 2.0) -> None:
    from vramest.api import estimate
    from vramest.training import estimate_training

    _rate(estimate, (
        ({"params": "70B", "dtype": "int4", "ctx": 8192}, "params"),
        ({"model": "deepseek-ai/DeepSeek-V3", "dtype": "q4_k_m"}, "catalog"),
        ({"params": "70B", "dtype": "int4", "ctx": 8192, "gpu": "h100"}, "headline+gpu"),
        ({"model": "llama-3.1-70b", "dtype": "fp8", "gpu": "h100", "num_gpus": 2}, "+gpu")),
        "estimates", seconds)
    varied_rate(estimate, seconds)
    _rate(estimate_training, (
        ({"model": "llama-3.1-8b", "method": "qlora", "seq": 4096, "gpu": "4090"}, "train"),
        ({"model": "llama-3.1-8b", "method": "qlora", "seq": 4096}, "+table")),
        "training estimates", seconds)


def varied_rate(estimate: Callable[..., object], seconds: float) -> None:
    """A search: every call a new context, batch or GPU count, so no answer is reused whole."""
    gpus = ("h100", "a100-80gb", "l40s", "4090")
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        estimate(params="70B", dtype="int4", ctx=1024 + n, batch=1 + n % 8, gpu=gpus[n % 4],
                 num_gpus=1 + n % 2)
        n += 1
    rate = n / (time.perf_counter() - start)
    print(f"in-process estimates per second (search, every point new): {rate:10.0f}")


def web_latency(runs: int = 40) -> None:
    """`vramest web`: one change of input, end to end over HTTP (median of repeated calls on a
    kept-alive connection, as the page makes them): /api/estimate is the CLI's JSON, /api/view
    the figures the page shows, /api/chart the chart drawn after them. Every call asks a new
    context and batch, so no answer (and no chart) is reused whole."""
    import http.client
    import threading

    from vramest.web.server import WebServer

    server = WebServer("127.0.0.1", 0, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    connection = http.client.HTTPConnection(*server.server_address[:2], timeout=30)
    fresh = 0
    try:
        for route in ("estimate", "view", "chart"):
            for query in ("params=70B&dtype=int4&gpu=h100", "model=llama-3.1-8b&dtype=int4"):
                times = []
                for i in range(runs + 3):
                    fresh += 1
                    start = time.perf_counter()
                    connection.request("GET", f"/api/{route}?{query}&ctx={8192 + fresh}"
                                              f"&batch={fresh}")
                    response = connection.getresponse()
                    response.read()
                    if response.status != 200:
                        raise SystemExit(f"/api/{route}?{query} answered {response.status}")
                    if i >= 3:  # the first calls import the modules
                        times.append(time.perf_counter() - start)
                print(f"vramest web /api/{route:8} median {statistics.median(times) * 1000:6.1f} ms"
                      f"  ({query}, {runs} calls)")
    finally:
        connection.close()
        server.shutdown()
        server.server_close()


def serving_search() -> None:
    """`vramest plan`'s search: candidates per second (issue 19 asks >= 10,000 in <= 10 s)."""
    from vramest.hardware.database import default_hardware
    from vramest.model.resolve import resolve_model
    from vramest.serving import serving
    from vramest.serving.plan import DEFAULT_GPUS, Bounds, plan

    info = resolve_model(params=None, model="meta-llama/Llama-3.1-70B", family="llama",
                         active_params=None, overrides={})
    devices = [default_hardware().find(g) for g in DEFAULT_GPUS]
    start = time.perf_counter()
    result = plan(info, info.shape.name, devices, input_len=1024, output_len=256,
                  bounds=Bounds(2.0, 0.05))
    took = time.perf_counter() - start
    print(f"vramest plan (Llama-3.1-70B, 6 GPU types): {result.candidates_evaluated:,} "
          f"candidates, {result.simulated:,} simulated in {took:.2f} s")
    _rate(serving, (({"model": "meta-llama/Llama-3.1-70B", "dtype": "fp8", "gpu": "h200",
                      "engine": "vllm", "input_len": 1024, "output_len": 1024,
                      "concurrency": 64}, "serving"),), "serving estimates", 1.0)


# what estimating itself needs from the standard library: math, json's C scanner for the shipped
# rows, re (records are vramest.frozen's, not dataclasses, which imports inspect; typing is for
# the type checker only; a plain command line is read without argparse). math and _json are
# shared libraries: about 0.5 ms each to load here.
STDLIB_FLOOR = ("math", "_json", "re")


def main() -> int:
    # an installed package has its bytecode compiled; time that, not the compiler
    subprocess.run([sys.executable, "-m", "compileall", "-q", "vramest"], check=True,
                   stdout=subprocess.DEVNULL)
    runs = 15
    ratio, cli, baseline = paired_ratio([sys.executable, "-m", "vramest", *HEADLINE],
                                        [sys.executable, "-c", "pass"], 4 * runs)
    print(f"python -c pass          median {baseline * 1000:7.1f} ms  ({4 * runs} paired runs)")
    print(f"vramest {' '.join(HEADLINE)}  median {cli * 1000:7.1f} ms")
    print(f"cold-start ratio (vramest / python, median of pairs)  {ratio:5.2f}x")
    # the floor: the standard-library modules the core is written with, imported and nothing run
    floor = median_seconds([sys.executable, "-c", f"import {', '.join(STDLIB_FLOOR)}"], runs)
    print(f"floor: python importing {', '.join(STDLIB_FLOOR)}  median {floor * 1000:7.1f} ms "
          f"({floor / baseline:.2f}x python)")
    train = median_seconds([sys.executable, "-m", "vramest", *TRAINING], runs)
    print(f"vramest {' '.join(TRAINING)}  median {train * 1000:7.1f} ms "
          f"({train / baseline:.2f}x python)")
    in_process_rate()
    web_latency()
    serving_search()
    return 0

if __name__ == "__main__":
    sys.exit(main())
