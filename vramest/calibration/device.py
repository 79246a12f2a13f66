"""Everything device-specific: the only module that calls CUDA (and NVML) directly.

`Backend` gives the harness one interface on CPU and CUDA: synchronise, release memory, reset
and read the allocator's peaks, recognise an out-of-memory error, fingerprint the device and
measure its own roofs (matmul FLOP/s per dtype, memory bandwidth). Needs torch.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from functools import partial

from vramest.errors import InputError
from vramest.frozen import TYPE_CHECKING, frozen

if TYPE_CHECKING:
    from typing import Any

DEVICE_CHOICES = ("auto", "cpu", "cuda")
ROOF_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


@frozen
class Roofs:
    """This device's own ceilings, measured with torch: what the efficiencies are relative to."""

    bandwidth_bytes_s: float  # a large tensor copy: bytes read + written per second
    matmul_flops: dict[str, float]  # dtype → dense matmul FLOP/s
    threads: int

    def to_json(self) -> dict[str, Any]:
        return {"bandwidth_bytes_s": self.bandwidth_bytes_s, "matmul_flops": self.matmul_flops,
                "threads": self.threads}

    @staticmethod
    def from_json(data: dict[str, Any]) -> Roofs:
        return Roofs(float(data["bandwidth_bytes_s"]),
                     {str(k): float(v) for k, v in data["matmul_flops"].items()},
                     int(data["threads"]))


@frozen
class Backend:
    kind: str  # "cpu" or "cuda"
    index: int = 0  # the CUDA device (a distributed rank uses its local rank's)

    @property
    def torch_device(self) -> str:
        return f"cuda:{self.index}" if self.kind == "cuda" else "cpu"

    def synchronize(self) -> None:
        if self.kind == "cuda":
            import torch

            torch.cuda.synchronize()

    def release_memory(self) -> None:
        """Return what can be returned after a grid point (or after an out-of-memory error)."""
        import gc

        gc.collect()
        if self.kind == "cuda":
            import torch

            torch.cuda.empty_cache()

    def reset_peaks(self) -> None:
        if self.kind == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats()

    def allocator_peaks(self) -> dict[str, int]:
        """The allocator's peaks since the last reset (CUDA), or nothing (CPU: the tracker
        counts the tensors instead)."""
        if self.kind != "cuda":
            return {}
        import torch

        return {"max_allocated": int(torch.cuda.max_memory_allocated()),
                "max_reserved": int(torch.cuda.max_memory_reserved())}

    def device_used_bytes(self) -> int | None:
        """Memory in use on the whole device (NVML), which includes the CUDA context and
        libraries outside torch's allocator; on CPU, this process's resident set."""
        if self.kind == "cuda":
            return _nvml_used_bytes(self.index)
        return process_rss_bytes()

    def is_out_of_memory(self, exc: BaseException) -> bool:
        import torch

        if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
            return True
        text = str(exc)
        return isinstance(exc, RuntimeError) and ("can't allocate memory" in text
                                                  or "out of memory" in text.lower())

    def fingerprint(self) -> dict[str, Any]:
        import torch
        import transformers

        out: dict[str, Any] = {
            "kind": self.kind, "torch": torch.__version__, "transformers": transformers.__version__,
            "threads": torch.get_num_threads(), "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count() or 1, "platform": platform.platform(),
        }
        if self.kind == "cuda":
            props = torch.cuda.get_device_properties(self.index)
            out.update(name=str(props.name), memory_bytes=int(props.total_memory),
                       runtime=f"CUDA {torch.version.cuda}", driver=_nvml_driver(),
                       compute_capability=f"{props.major}.{props.minor}")
        else:
            out.update(name=f"{cpu_model()} ({_threads(torch.get_num_threads())})",
                       memory_bytes=ram_bytes(), runtime=f"CPU, {torch.backends.cpu.get_cpu_capability()}",
                       driver=None)
        return out

    def measure_roofs(self, dtypes: tuple[str, ...], seconds_each: float = 0.6) -> Roofs:
        """Matmul FLOP/s per dtype (square GEMMs) and copy bandwidth, medians of timed runs."""
        import torch

        device = self.torch_device
        size = 4096 if self.kind == "cuda" else 1024
        flops: dict[str, float] = {}
        for name in dtypes:
            dtype = getattr(torch, ROOF_DTYPES[name])
            a = torch.randn(size, size, device=device).to(dtype)
            b = torch.randn(size, size, device=device).to(dtype)
            seconds = self._median_seconds(partial(torch.mm, a, b), seconds_each)
            flops[name] = 2 * size**3 / seconds
            del a, b
        elements = (1 << 28 if self.kind == "cuda" else 1 << 26)  # 1 GiB / 256 MiB of fp32
        src = torch.ones(elements, device=device)
        dst = torch.empty_like(src)
        seconds = self._median_seconds(lambda: dst.copy_(src), seconds_each)
        bandwidth = 2 * src.numel() * src.element_size() / seconds
        self.release_memory()
        return Roofs(bandwidth, flops, torch.get_num_threads())

    def _median_seconds(self, work: Callable[[], Any], budget_s: float) -> float:
        work()
        self.synchronize()
        times: list[float] = []
        deadline = time.perf_counter() + budget_s
        while len(times) < 3 or (time.perf_counter() < deadline and len(times) < 50):
            start = time.perf_counter()
            work()
            self.synchronize()
            times.append(time.perf_counter() - start)
        return statistics.median(times)


def select_backend(choice: str = "auto") -> Backend:
    if choice not in DEVICE_CHOICES:
        raise InputError(f"Unknown --device {choice!r}; accepted: {', '.join(DEVICE_CHOICES)}.")
    import torch

    has_cuda = torch.cuda.is_available()
    if choice == "cuda" and not has_cuda:
        raise InputError("--device cuda: torch sees no CUDA device here (a CPU build of torch, "
                         "or no driver); use --device cpu.")
    return Backend("cuda" if choice == "cuda" or (choice == "auto" and has_cuda) else "cpu")


def oom_error_type() -> type[BaseException]:
    """The exception an out-of-memory raises (what tests simulate)."""
    import torch

    return torch.OutOfMemoryError


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def ram_bytes() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except ImportError:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def process_rss_bytes() -> int:
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        with open("/proc/self/statm", encoding="utf-8") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _nvml_used_bytes(index: int = 0) -> int | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(index)).used)
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no NVML, no driver: the figure is simply missing
        return None


def _nvml_driver() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            driver = pynvml.nvmlSystemGetDriverVersion()
            return driver.decode() if isinstance(driver, bytes) else str(driver)
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return None


def _threads(count: int) -> str:
    return "1 thread" if count == 1 else f"{count} threads"


# --- several processes (vramest.calibration.distributed) -------------------------------------
def rank_backend(kind: str, local_rank: int) -> tuple[Backend, str]:
    """The device of one distributed rank and its process-group backend: on CUDA the local
    rank's GPU (made current, so collectives and allocator figures are that GPU's) and NCCL;
    on a CPU, gloo."""
    if kind != "cuda":
        return Backend("cpu"), "gloo"
    import torch

    if local_rank >= torch.cuda.device_count():
        raise InputError(f"Local rank {local_rank} has no GPU: torch sees "
                         f"{torch.cuda.device_count()} here; use --nproc-per-node "
                         f"{torch.cuda.device_count()} or fewer.")
    torch.cuda.set_device(local_rank)
    return Backend("cuda", local_rank), "nccl"


def nvml_interconnect(index: int) -> str | None:
    """How this GPU reaches its peers, from NVML: "nvlink" when any NVLink is up, "pcie" when
    NVML answers and none is; None where NVML cannot tell (no driver, a CPU)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            for link in range(int(getattr(pynvml, "NVML_NVLINK_MAX_LINKS", 18))):
                try:
                    if pynvml.nvmlDeviceGetNvLinkState(handle, link):
                        return "nvlink"
                except pynvml.NVMLError:
                    break  # past the device's last link, or no NVLink at all
            return "pcie"
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return None
