"""Calibration across processes, GPUs and nodes, on torch.distributed: the worker that runs on
every rank under torchrun (`vramest calibrate --nproc-per-node N` starts torchrun, or run
`torchrun ... -m vramest calibrate` yourself).

Every rank measures; rank 0 writes. Per task, in the same order on every rank:
- the calibration models at one process per rank (TP=1, all ranks at once, so each rank sees
  the same sharing of the machine as in the TP runs): the single-device harness's own
  `measure_point` records, which fit the speed and memory constants as `vramest calibrate` does;
- collective micro-benchmarks per operation, message size and link class
  (vramest.calibration.distributed_collectives);
- the same models sharded over all ranks by transformers' tensor-parallel plan
  (torch.distributed.tensor.parallel, DTensor): prefill and decode speed, per-rank memory.
Rank 0 appends each task's record (every rank's figures gathered into it) to the profile's JSONL
the moment it is taken, holds the lock, resumes from what is there, and fits at the end
(vramest.calibration.harness.build_profile plus vramest.calibration.distributed_fit).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import signal
import socket
import statistics
import sys
import time
from pathlib import Path

from vramest.calibration.distributed_fit import OPERATIONS
from vramest.calibration.grid import GridPoint
from vramest.errors import InputError
from vramest.frozen import TYPE_CHECKING, frozen

if TYPE_CHECKING:
    from typing import Any

READY = "vramest-ready"  # printed by each node's first rank once the process group is up
ERROR = "vramest-error:"  # a rank's one-sentence reason for stopping
JSONL = "vramest-jsonl:"  # where rank 0 keeps the measurements
KILL_ENV = "VRAMEST_CALIBRATE_KILL"  # "RANK:KEY": that rank kills itself at that task (tests)
COLLECTIVE_TIMEOUT_S = 600

# (family, size, ((prompt, batch), ...)) per grid; gen tokens per grid
_MODELS = {
    "tiny": ((("llama", "xs", ((16, 1), (32, 1))), ("qwen2", "xs", ((16, 1),))), 3),
    "quick": ((("llama", "xs", ((48, 1), (128, 2))), ("llama", "s", ((64, 1),)),
               ("qwen2", "xs", ((48, 1), (128, 2))), ("mistral", "xs", ((48, 1),))), 8),
    "default": ((("llama", "xs", ((32, 1), (256, 1), (64, 4))),
                 ("llama", "s", ((32, 1), (256, 1), (64, 4))), ("llama", "m", ((128, 1),)),
                 ("qwen2", "xs", ((32, 1), (256, 1), (64, 4))), ("qwen2", "s", ((128, 1),)),
                 ("mistral", "xs", ((32, 1), (256, 1))), ("mistral", "s", ((128, 1),))), 12),
}
_OPS_TINY = ("all_reduce", "send_recv")


def under_torchrun() -> bool:
    """Whether this process is a rank that torchrun (or another launcher) started."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR"))


@frozen
class DistOptions:
    profile_path: Path | None  # None: the default path, decided on rank 0
    cache_dir: Path
    grid_name: str = "default"  # tiny / quick / default
    max_minutes: float | None = None
    fresh: bool = False
    link: str | None = None  # the interconnect as the user states it
    fit_evaluations: int = 500
    timed_repeats: int = 3
    timing_budget_s: float = 1.5
    roof_seconds: float = 0.6


@frozen
class Task:
    key: str
    kind: str  # single / collective / tp
    point: GridPoint | None = None
    op: str = ""
    link: str = ""
    nbytes: int = 0


@dataclasses.dataclass
class Where:
    """What a rank is doing, for the sentence if it has to stop."""

    task: str = "start-up"
    jsonl: Path | None = None


@dataclasses.dataclass
class Rank:
    """This process in the world."""

    rank: int
    world: int
    local_rank: int
    node: int
    backend: Any  # vramest.calibration.device.Backend
    pg_backend: str


def model_points(grid_name: str, dtypes: tuple[str, ...]) -> list[GridPoint]:
    rows, gen = _MODELS[grid_name]
    return [GridPoint(family, size, dtype, prompt, batch, gen)
            for family, size, shapes in rows for dtype in dtypes for prompt, batch in shapes]


def tp_divides(point: GridPoint, tp: int) -> bool:
    """Heads, KV heads and the MLP split evenly over `tp` ranks (what the plan needs)."""
    from vramest.calibration.models import model_config

    config = model_config(point.family, point.size)
    return all(int(config.get(k, tp)) % tp == 0 for k in (
        "num_attention_heads", "num_key_value_heads", "intermediate_size"))


def plan(grid_name: str, dtypes: tuple[str, ...], world: int, link_names: list[str],
         ops: tuple[str, ...]) -> list[Task]:
    from vramest.calibration.distributed_collectives import SIZES

    points = model_points(grid_name, dtypes)
    tasks = [Task(p.key, "single", p) for p in points]
    tasks += [Task(f"collective/{op}/{link}/x{world}/{n}", "collective", op=op, link=link, nbytes=n)
              for link in link_names for op in ops for n in SIZES[grid_name]]
    tp_points = [p for p in points if tp_divides(p, world)]
    if grid_name == "tiny":  # the tests: one TP run is enough
        tp_points = tp_points[:1]
    tasks += [Task(f"tp{world}/{p.key}", "tp", p) for p in tp_points]
    return tasks


# --- the worker ---------------------------------------------------------------------------------
def run_worker(device_choice: str, options: DistOptions) -> int:
    """One rank's whole run; returns its exit status. A rank that stops prints one sentence
    (`vramest-error: ...`) the launcher shows."""
    try:
        import torch
        import torch.distributed as dist
    except ImportError:
        raise InputError("calibrate needs torch and transformers: pip install "
                         "'vramest[calibrate]' (or `make install-dev`).") from None
    from vramest.calibration.device import rank_backend, select_backend

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    node = int(os.environ.get("GROUP_RANK", "0"))
    where = Where()
    try:
        if world < 2:
            raise InputError("A distributed calibration needs two or more processes "
                             "(--nproc-per-node 2 or more, or --nnodes 2 or more).")
        backend, pg_backend = rank_backend(select_backend(device_choice).kind, local_rank)
        dist.init_process_group(pg_backend, timeout=datetime.timedelta(seconds=COLLECTIVE_TIMEOUT_S),
                                device_id=torch.device(backend.torch_device)
                                if backend.kind == "cuda" else None)
        dist.barrier()
        if local_rank == 0:
            print(READY, flush=True)
        me = Rank(rank, world, local_rank, node, backend, pg_backend)
        _run(me, options, where)
        return 0
    except InputError as exc:
        print(f"{ERROR} {exc}", flush=True)
        return 2
    except Exception as exc:
        kept = f"; the measurements taken so far are kept in {where.jsonl}" if where.jsonl else ""
        text = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        print(f"{ERROR} rank {rank} of {world} stopped at {where.task} ({type(exc).__name__}: "
              f"{text}){kept}; run the same command again to resume.", flush=True)
        return 3
    finally:
        if dist.is_initialized():
            with contextlib.suppress(Exception):  # a broken group: nothing left to tidy
                dist.destroy_process_group()


def _broadcast(value: Any) -> Any:
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _gather(value: Any, me: Rank) -> list[Any] | None:
    import torch.distributed as dist

    out: list[Any] | None = [None] * me.world if me.rank == 0 else None
    dist.gather_object(value, out, dst=0)
    return out


def _run(me: Rank, options: DistOptions, where: Where) -> None:
    import torch.distributed as dist

    from vramest.calibration.distributed_collectives import make_links, supported
    from vramest.calibration.harness import _quiet
    from vramest.calibration.store import (
        append_record,
        profile_lock,
        read_records,
        write_json_atomic,
    )

    _quiet()
    infos = _all_gather_info(me, options)
    nodes = [i["node"] for i in infos]
    links = make_links(me.rank, nodes)
    dtypes = ("bf16",) if me.backend.kind == "cuda" else ("fp32",)
    wanted = _OPS_TINY if options.grid_name == "tiny" else OPERATIONS
    support = {op: supported(op, links[0], me.rank, me.backend) for op in wanted}
    ops = tuple(op for op in wanted if support[op] == "ok")

    # rank 0: the lock, the JSONL, what is done; everyone: the same answer
    lock = contextlib.ExitStack()
    state: dict[str, Any] = {}
    if me.rank == 0:
        try:
            path = options.profile_path or _default_path(me.backend.fingerprint(), me.world)
            lock.enter_context(profile_lock(path))
            state = _open_jsonl(path, options, me, infos, links, support)
        except InputError as exc:
            state = {"error": str(exc)}
    state = _broadcast(state)
    if "error" in state:
        lock.close()
        raise InputError(state["error"])
    path, jsonl = Path(state["path"]), Path(state["jsonl"])
    if me.rank == 0:
        print(f"{JSONL} {jsonl}", flush=True)
        for op, why in support.items():
            if why != "ok":
                print(f"{op} is left out: {me.pg_backend} cannot run it here ({why})", flush=True)
    where.jsonl = jsonl
    with lock:
        if not state["has_roofs"]:
            roofs = me.backend.measure_roofs(dtypes, options.roof_seconds)  # every rank at once
            if me.rank == 0:
                append_record(jsonl, {"kind": "roofs", **roofs.to_json()})
        tasks = plan(options.grid_name, dtypes, me.world, [k.name for k in links], ops)
        stopped = _measure(me, options, tasks, set(state["done"]), links, jsonl, where)
        if me.rank == 0:
            profile = build_distributed_profile(read_records(jsonl), path, options,
                                                time.perf_counter() - state["started"], stopped)
            write_json_atomic(path, profile)
            _print_summary(path)
        dist.barrier()


def _default_path(fingerprint: dict[str, Any], world: int) -> Path:
    from vramest.commands.calibrate import default_profile_path

    base = default_profile_path(fingerprint)
    return base.with_name(f"{base.stem}-x{world}.json")


def _all_gather_info(me: Rank, options: DistOptions) -> list[dict[str, Any]]:
    import torch.distributed as dist

    from vramest.calibration.device import nvml_interconnect

    info = {"rank": me.rank, "node": me.node, "local_rank": me.local_rank,
            "host": socket.gethostname(),
            "interconnect": nvml_interconnect(me.local_rank) if me.backend.kind == "cuda" else None}
    out: list[Any] = [None] * me.world
    dist.all_gather_object(out, info)
    return out


def topology(me: Rank, infos: list[dict[str, Any]], links: list[Any], stated: str | None
             ) -> dict[str, Any]:
    nodes = sorted({i["node"] for i in infos})
    per_node = me.world // max(1, len(nodes))
    detected = sorted({i["interconnect"] for i in infos if i["interconnect"]})
    if detected:
        same_node, source = "+".join(detected), "NVML"
    elif stated:
        same_node, source = stated, "stated by the user (--link)"
    else:
        same_node, source = "unknown", "not detected (no NVML) and not stated (--link)"
    if me.backend.kind == "cpu" and not stated:
        same_node, source = "shared memory / loopback", "gloo between processes of one host"
    return {"world_size": me.world, "nodes": len(nodes),
            ("gpus_per_node" if me.backend.kind == "cuda" else "procs_per_node"): per_node,
            "backend": me.pg_backend, "link_classes": [k.name for k in links],
            "interconnect": {"same_node": same_node, "source": source,
                             **({"across_nodes": stated or "unknown"} if len(nodes) > 1 else {})},
            "hosts": sorted({i["host"] for i in infos})}


def _open_jsonl(path: Path, options: DistOptions, me: Rank, infos: list[dict[str, Any]],
                links: list[Any], support: dict[str, str]) -> dict[str, Any]:
    """Rank 0, under the lock: the JSONL with its headers; the keys already measured."""
    from vramest.calibration.grid import QUANT_DTYPES
    from vramest.calibration.store import append_record, done_keys, measurements_path, read_records

    jsonl = measurements_path(path)
    if options.fresh and jsonl.exists():
        jsonl.unlink()
    records = read_records(jsonl)
    fingerprint = me.backend.fingerprint()
    topo = {**topology(me, infos, links, options.link),
            "collectives_left_out": {op: why for op, why in support.items() if why != "ok"}}
    header = next((r for r in records if r.get("kind") == "device"), None)
    if header is None:
        append_record(jsonl, {"kind": "device", "fingerprint": fingerprint, "topology": topo})
        append_record(jsonl, {"kind": "quantization_support", "formats": {
            d: "not tried (distributed calibration)" for d in QUANT_DTYPES}})
    else:
        was = header.get("topology") or {}
        same = all(header["fingerprint"].get(k) == fingerprint.get(k)
                   for k in ("kind", "name", "memory_bytes")) and \
            (was.get("world_size"), was.get("nodes")) == (topo["world_size"], topo["nodes"])
        if not same:
            raise InputError(f"{jsonl} holds measurements of {header['fingerprint'].get('name')} "
                             f"with {was.get('world_size')} processes on {was.get('nodes')} "
                             f"node(s), not of this {fingerprint['name']} with {topo['world_size']} "
                             f"on {topo['nodes']}; use --fresh or another --out.")
    return {"path": str(path), "jsonl": str(jsonl), "done": sorted(done_keys(records)),
            "has_roofs": any(r.get("kind") == "roofs" for r in records),
            "started": time.perf_counter()}


def _measure(me: Rank, options: DistOptions, tasks: list[Task], done: set[str], links: list[Any],
             jsonl: Path, where: Where) -> str:
    """Measure the tasks not yet in the JSONL; returns why it stopped ("complete" or "time
    budget"), the same on every rank."""
    from vramest.calibration.harness import Progress
    from vramest.calibration.store import append_record

    pending = [t for t in tasks if t.key not in done]
    progress = Progress(total=len(tasks), stream=sys.stdout) if me.rank == 0 else None
    if progress:
        progress.done = len(tasks) - len(pending)
    started = time.perf_counter()
    budget_s = None if options.max_minutes is None else options.max_minutes * 60
    loaded: dict[str, Any] = {}
    for task in pending:
        stop = budget_s is not None and time.perf_counter() - started > budget_s
        if _broadcast(stop if me.rank == 0 else None):
            if progress:
                progress.finish(f"time budget of {options.max_minutes:g} min reached; "
                                f"{len(tasks) - progress.done} tasks left for a resumed run")
            return "time budget"
        if progress:
            progress.show(task.key)
        where.task = task.key
        _maybe_die(me.rank, task.key)
        mine = _measure_task(me, options, task, links, loaded)
        gathered = _gather(mine, me)
        if me.rank == 0 and gathered is not None:
            record = _combine(task, gathered)
            record.update(kind="point", key=task.key, taken=datetime.datetime.now(
                datetime.timezone.utc).isoformat(timespec="seconds"))
            append_record(jsonl, record)
            if progress:
                progress.done += 1
    loaded.clear()
    me.backend.release_memory()
    if progress:
        progress.finish("measured")
    return "complete"


def _maybe_die(rank: int, key: str) -> None:
    """Fault injection for the tests: `VRAMEST_CALIBRATE_KILL=RANK:KEY` kills that rank, as a
    crash or an OOM killer would, right before it measures that task."""
    target = os.environ.get(KILL_ENV, "")
    if target and target == f"{rank}:{key}":
        os.kill(os.getpid(), signal.SIGKILL)


def _measure_task(me: Rank, options: DistOptions, task: Task, links: list[Any],
                  loaded: dict[str, Any]) -> dict[str, Any]:
    from vramest.calibration import measure
    from vramest.calibration.distributed_collectives import time_operation

    if task.kind == "collective":
        link = next(k for k in links if k.name == task.link)
        timing = time_operation(task.op, task.nbytes, link, me.rank, me.backend)
        return {"status": "ok", "seconds": timing.seconds, "median_seconds": timing.median_seconds}
    import torch.distributed as dist

    point = task.point
    assert point is not None
    tp = task.kind == "tp"
    model_key = f"{task.kind}/{point.model_key}"
    try:
        if model_key not in loaded:
            loaded.clear()
            me.backend.release_memory()
            if me.local_rank == 0:  # each node's first rank builds the saved model once
                from vramest.calibration.models import saved_model_dir

                saved_model_dir(point.family, point.size, options.cache_dir)
            dist.barrier()
            loaded[model_key] = measure.load_model(point, me.backend, options.cache_dir,
                                                   tensor_parallel=tp)
        record = measure.measure_point(point, loaded[model_key], me.backend,
                                       options.timed_repeats, options.timing_budget_s)
        if tp:
            record["local_params_bytes"] = _local_parameter_bytes(loaded[model_key].model)
        return record
    except Exception as exc:
        if _is_communication_error(exc):
            raise
        oom = me.backend.is_out_of_memory(exc)
        loaded.clear()
        me.backend.release_memory()
        text = str(exc).splitlines()[0][:300] if str(exc) else ""
        return {"status": "oom" if oom else "error", "reason": f"{type(exc).__name__}: {text}"}


def _is_communication_error(exc: BaseException) -> bool:
    import torch.distributed as dist

    kinds = tuple(k for k in (getattr(dist, "DistError", None),) if k is not None)
    text = str(exc).lower()
    return isinstance(exc, kinds) or any(s in text for s in (
        "connection", "gloo", "nccl", "peer", "timed out", "broken pipe"))


def _local_parameter_bytes(model: Any) -> int:
    """Bytes of this rank's own shards (a DTensor's local tensor; a replicated tensor whole)."""
    total = 0
    for tensor in (*model.parameters(), *model.buffers()):
        local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
        total += local.numel() * local.element_size()
    return int(total)


def _combine(task: Task, gathered: list[dict[str, Any]]) -> dict[str, Any]:
    """Rank 0's record with every rank's figures; the slowest rank's speed."""
    failed = [g for g in gathered if g.get("status") != "ok"]
    if failed:
        return {"status": failed[0]["status"], "reason": failed[0].get("reason", ""),
                "point": _point_json(task)}
    if task.kind == "collective":
        return {"status": "ok", "point": _point_json(task), "seconds": gathered[0]["seconds"],
                "median_seconds": gathered[0]["median_seconds"]}
    record = dict(gathered[0])
    record["point"] = _point_json(task)
    record["ranks"] = [_rank_figures(r, g) for r, g in enumerate(gathered)]
    slowest = min(gathered, key=lambda g: g["speed"]["decode_tokens_per_s"])
    record["speed"] = {**record["speed"],
                       "decode_tokens_per_s": slowest["speed"]["decode_tokens_per_s"],
                       "prefill_tokens_per_s": min(g["speed"]["prefill_tokens_per_s"]
                                                   for g in gathered),
                       "of": "the slowest rank"}
    return record


def _point_json(task: Task) -> dict[str, Any]:
    if task.kind == "collective":
        ranks = int(task.key.split("/x")[1].split("/")[0])
        return {"task": "collective", "op": task.op, "link": task.link, "bytes": task.nbytes,
                "ranks": ranks}
    assert task.point is not None
    out = task.point.to_json()
    if task.kind == "tp":
        out.update(task="tp", tp=int(task.key.split("/")[0][2:]))
    return out


def _rank_figures(rank: int, record: dict[str, Any]) -> dict[str, Any]:
    memory = record["memory"]
    decode = memory.get("decode", {})
    reserved = max((memory.get(p, {}).get("allocator_max_reserved") or 0)
                   for p in ("load", "prefill", "decode"))
    used = memory.get("device_used_after")
    out = {"rank": rank, "prefill_tokens_per_s": record["speed"]["prefill_tokens_per_s"],
           "decode_tokens_per_s": record["speed"]["decode_tokens_per_s"],
           "local_params_bytes": record.get("local_params_bytes"),
           "rss": decode.get("rss"), "peak_rss": memory.get("peak_rss")}
    if reserved:
        out.update(allocator_max_reserved=reserved,
                   allocator_max_allocated=max((memory.get(p, {}).get("allocator_max_allocated")
                                                or 0) for p in ("load", "prefill", "decode")),
                   device_used_after=used,
                   non_torch_bytes=None if used is None else used - reserved)
    return out


# --- rank 0: the profile --------------------------------------------------------------------------
def build_distributed_profile(records: list[dict[str, Any]], path: Path, options: DistOptions,
                              seconds: float, stopped: str = "complete") -> dict[str, Any]:
    """The single-device fit of the TP=1 points (vramest.calibration.harness.build_profile), plus
    topology, the collectives' fits, the per-rank overhead and the TP held-out errors."""
    from vramest.calibration.distributed_fit import (
        allreduce_constants,
        fit_collectives,
        tp_heldout,
        tp_records,
    )
    from vramest.calibration.fit import SHIPPED, Calibrated, roofs_device
    from vramest.calibration.harness import RunOptions, build_profile
    from vramest.calibration.store import measurements_path

    jsonl = measurements_path(path)
    single = [r for r in records if (r.get("point") or {}).get("task") not in ("collective", "tp")]
    run_options = RunOptions(profile_path=path, cache_dir=options.cache_dir,
                             grid=lambda f, q: [], grid_name=f"distributed-{options.grid_name}",
                             fit_evaluations=options.fit_evaluations)
    profile = build_profile(single, path, jsonl, run_options, stopped, seconds)
    header = next(r for r in records if r.get("kind") == "device")
    kind = header["fingerprint"]["kind"]
    collectives = fit_collectives(records)
    collective_constants = allreduce_constants(collectives)
    roofs = next(r for r in records if r.get("kind") == "roofs")
    device = roofs_device(header["fingerprint"]["name"], kind, header["fingerprint"]["memory_bytes"],
                          roofs)
    after = {}
    for group, values in profile["precision_constants"].items():
        calibrated = Calibrated(SHIPPED.constants.with_values(
            {**profile["constants"], **{k: v for k, v in values.items() if "." not in k},
             **collective_constants}), SHIPPED.engine)
        from vramest.frozen import replace

        calibrated = Calibrated(calibrated.constants, replace(
            SHIPPED.engine, step_overhead_s=values["hf.step_overhead_s"],
            layer_overhead_s=values["hf.layer_overhead_s"]))
        after[group] = calibrated
    heldout, tp_residuals = tp_heldout(records, device, SHIPPED, after)
    overhead = per_rank_overhead(records, kind)
    if kind == "cuda" and overhead.get("tp_extra_bytes", 0) > 0:
        profile["constants"]["nccl_buffer_bytes"] = int(overhead["tp_extra_bytes"])
    profile["heldout_error"].update(heldout)
    profile.update(topology=header.get("topology"), collectives=collectives,
                   collective_constants=collective_constants, per_rank_overhead=overhead,
                   tp_residuals=tp_residuals, tp_points=len(tp_records(records)),
                   grid=f"distributed-{options.grid_name}")
    profile["notes"] = [*profile.get("notes", []),
                        "distributed: every rank ran the single-process points at once (one "
                        "process per rank, as in the TP runs); the TP runs are transformers' "
                        "tensor-parallel plan on torch.distributed (DTensor); their speed is the "
                        "slowest rank's",
                        "collectives: time = alpha_s + bytes / beta_bytes_per_s, bytes = the "
                        "tensor each rank passes in, slowest rank, median of repeats; "
                        "allreduce_latency_s and allreduce_bus_bytes_s (beta x 2(N-1)/N) feed "
                        "the estimate's tensor-parallel all-reduce time on this device",
                        "tp_prefill / tp_decode: TP runs predicted with the shipped constants "
                        "(before) and with the fitted ones and collectives (after); no TP run "
                        "takes part in a fit"]
    return profile


def per_rank_overhead(records: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """Memory a rank holds beyond its tensors, at TP=N and with one process per rank (TP=1):
    on CUDA NVML's used minus the allocator's reserved (the CUDA context, NCCL's buffers, other
    libraries); on a CPU the process RSS minus the rank's parameter bytes. The difference is
    what tensor parallelism adds per rank (NCCL buffers on CUDA)."""
    from vramest.calibration.distributed_fit import tp_records

    def gaps(rows: list[dict[str, Any]]) -> list[int]:
        out = []
        for row in rows:
            if kind == "cuda":
                if row.get("non_torch_bytes") is not None:
                    out.append(int(row["non_torch_bytes"]))
            elif row.get("rss") and row.get("params"):
                out.append(int(row["rss"] - row["params"]))
        return out

    tp_rows = [{**r, "params": r.get("local_params_bytes")} for rec in tp_records(records)
               for r in rec.get("ranks", [])]
    single_rows = []
    for rec in records:
        if rec.get("kind") != "point" or rec.get("status") != "ok" or (rec.get("point") or {}).get(
                "task") in ("collective", "tp", "train") or "ranks" not in rec:
            continue
        params = rec["memory"]["load"].get("params_bytes")
        single_rows += [{**r, "params": params} for r in rec["ranks"]]
    tp_gaps, single_gaps = gaps(tp_rows), gaps(single_rows)
    out: dict[str, Any] = {
        "what": "NVML used - torch reserved per rank" if kind == "cuda" else
        "process RSS - the rank's parameter bytes, per rank",
        "tp_bytes": int(statistics.median(tp_gaps)) if tp_gaps else None,
        "single_bytes": int(statistics.median(single_gaps)) if single_gaps else None,
        "samples": len(tp_gaps)}
    if tp_gaps and single_gaps:
        out["tp_extra_bytes"] = out["tp_bytes"] - out["single_bytes"]
    return out


def _print_summary(path: Path) -> None:
    from vramest.calibration.profile import load_profile
    from vramest.calibration.report import render_report

    print("\n".join(render_report(load_profile(path))), flush=True)
