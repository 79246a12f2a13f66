"""Collective micro-benchmarks on torch.distributed (NCCL on CUDA, gloo on a CPU; the same code):
all-reduce, all-gather, reduce-scatter, all-to-all and send/recv over message sizes, timed per
link class. Every rank of the world calls every function here in the same order.

A timing: a barrier, then `k` back-to-back operations (k chosen so a repeat lasts about 10 ms,
which amortises the skew the barrier leaves between ranks), the device synchronised, divided by
k; the slowest rank's figure (all-reduce MAX); the fastest of the repeats (see time_operation).
`bytes` is the size of the tensor each rank passes in (see vramest.calibration.distributed_fit).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from vramest.calibration.device import Backend
from vramest.frozen import TYPE_CHECKING, frozen

if TYPE_CHECKING:
    from typing import Any

KIB, MIB = 1024, 1024**2
SIZES = {"tiny": (16 * KIB, 256 * KIB, 1 * MIB),
         "quick": (4 * KIB, 64 * KIB, 256 * KIB, 1 * MIB, 4 * MIB),
         "default": (4 * KIB, 32 * KIB, 256 * KIB, 1 * MIB, 4 * MIB, 16 * MIB, 64 * MIB)}
TARGET_REPEAT_S = 0.01
MAX_INNER = 64
REPEATS = 15


@frozen
class Link:
    """A group of ranks joined by one class of link, and the pair that times send/recv."""

    name: str  # same_node / across_nodes
    ranks: tuple[int, ...]
    group: Any  # a torch ProcessGroup holding `ranks` (None for the whole world)
    pair: tuple[int, int] | None


def make_links(rank: int, nodes: list[int]) -> list[Link]:
    """`nodes[r]` is rank r's node. One node: every rank is same_node. Several: the world is
    across_nodes; each node's ranks form a same_node group (each rank times its own node's,
    concurrently). send/recv: the first two ranks of a node; rank 0 and the first rank of the
    next node. Every rank creates every group (torch requires it)."""
    import torch.distributed as dist

    world = tuple(range(len(nodes)))
    node_ids = sorted(set(nodes))
    if len(node_ids) == 1:
        return [Link("same_node", world, None, (0, 1) if len(world) > 1 else None)]
    links = []
    per_node = {n: tuple(r for r in world if nodes[r] == n) for n in node_ids}
    groups = {n: dist.new_group(list(ranks)) for n, ranks in per_node.items()}
    mine = nodes[rank]
    if all(len(r) >= 2 for r in per_node.values()):
        first = per_node[node_ids[0]]
        links.append(Link("same_node", per_node[mine], groups[mine], (first[0], first[1])))
    links.append(Link("across_nodes", world, None, (0, per_node[node_ids[1]][0])))
    return links


def _op(name: str, nbytes: int, ranks: int, device: str, group: Any
        ) -> Callable[[], Any] | None:
    """The operation at this size (None: not a collective of the group: send/recv)."""
    import torch
    import torch.distributed as dist

    numel = max(ranks, nbytes // 4)
    numel -= numel % ranks
    data = torch.ones(numel, dtype=torch.float32, device=device)
    if name == "all_reduce":
        return lambda: dist.all_reduce(data, group=group)
    if name == "all_gather":
        out = torch.empty(numel * ranks, dtype=torch.float32, device=device)
        return lambda: dist.all_gather_into_tensor(out, data, group=group)
    if name == "reduce_scatter":
        out = torch.empty(numel // ranks, dtype=torch.float32, device=device)
        return lambda: dist.reduce_scatter_tensor(out, data, group=group)
    if name == "all_to_all":
        out = torch.empty_like(data)
        return lambda: dist.all_to_all_single(out, data, group=group)
    raise ValueError(name)


def _send_recv(nbytes: int, device: str, rank: int, pair: tuple[int, int]) -> Callable[[], Any]:
    """Ping-pong between the pair; one call is a round trip (two one-way messages)."""
    import torch
    import torch.distributed as dist

    data = torch.ones(max(1, nbytes // 4), dtype=torch.float32, device=device)
    a, b = pair

    def run() -> None:
        if rank == a:
            dist.send(data, b)
            dist.recv(data, b)
        elif rank == b:
            dist.recv(data, a)
            dist.send(data, a)
    return run


@frozen
class Timing:
    seconds: float  # the fastest repeat: what the fit uses
    median_seconds: float


def time_operation(op: str, nbytes: int, link: Link, rank: int, backend: Backend,
                   repeats: int = REPEATS) -> Timing:
    """Seconds of one operation (send/recv: one way) on this link, the slowest rank's; every
    rank of the world calls this, ranks outside the link's group (or pair) idle. The fastest of
    the repeats is kept (the median beside it): other processes sharing the host only ever add
    time, so the fastest repeat is the link's own figure and the one that reproduces."""
    import torch.distributed as dist

    device = backend.torch_device
    in_group = rank in link.ranks
    if op == "send_recv":
        work = _send_recv(nbytes, device, rank, link.pair) if link.pair else None
        per_call = 2
    else:
        work = _op(op, nbytes, len(link.ranks), device, link.group) if in_group else None
        per_call = 1

    def timed(k: int) -> float:
        dist.barrier()
        backend.synchronize()
        start = time.perf_counter()
        for _ in range(k):
            if work is not None:
                work()
        backend.synchronize()
        return (time.perf_counter() - start) / k

    timed(1)  # warm-up: connections, buffers
    probe = _slowest(timed(1), device)
    inner = int(min(MAX_INNER, max(1, TARGET_REPEAT_S / max(probe, 1e-9))))
    inner = int(_slowest(float(inner), device))  # every rank loops the same number of times
    samples = [_slowest(timed(inner), device) / per_call for _ in range(repeats)]
    return Timing(min(samples), statistics.median(samples))


def _slowest(value: float, device: str) -> float:
    import torch
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def supported(op: str, link: Link, rank: int, backend: Backend) -> str:
    """"ok", or why this backend cannot run the operation (gloo lacks some collectives in some
    torch versions); every rank reaches the same answer."""
    try:
        if op != "send_recv" and rank in link.ranks:
            work = _op(op, 4 * len(link.ranks) * 16, len(link.ranks), backend.torch_device,
                       link.group)
            if work is not None:
                work()
        error = ""
    except (RuntimeError, NotImplementedError, ValueError) as exc:
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
    failed = _slowest(1.0 if error else 0.0, backend.torch_device)
    return "ok" if failed == 0 else (error or "not supported on another rank")
