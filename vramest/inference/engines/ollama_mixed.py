"""Ollama over different GPUs of one machine (`--gpu "RTX 3090,RTX 3060 12GB" --engine ollama`).

Ollama, not llama.cpp, decides which GPUs a model uses and how many layers each gets, then
hands llama.cpp the counts as `--tensor-split`; the buffers on each GPU are llama.cpp's
(`llamacpp_startup`, as in ollama.py). Three rules by release, each read from ollama/ollama:

* before 0.12.11 the scheduler tries the GPU with the most free memory alone, then all of them
  (server/sched.go pickBestFullFitByLibrary), and the estimator deals the layers out to the GPUs
  in turn from the last layer down, dropping a GPU once full (llm/memory.go EstimateGPULayers);
* 0.12.11 to 0.2x pack the layers onto the fewest GPUs, largest first, balanced by the smallest
  share of each GPU's free memory that still holds them (llm/server.go assignLayers, greedyFit);
* from 0.30 upstream llama-server runs: one GPU when the prediction is within 80% of its free
  memory (server/sched.go bestSingleGPUFit), else all, split by free memory, `-ngl auto`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from vramest.frozen import TYPE_CHECKING, frozen, replace
from vramest.inference.engines import ollama
from vramest.inference.engines.ollama import SRC, Version
from vramest.inference.engines.registry import StartupRequest
from vramest.inference.engines.startup import LlamaCppStartup
from vramest.units import format_bytes

if TYPE_CHECKING:
    from vramest.hardware.database import Device
    from vramest.inference.estimate import Estimate

LAYOUT_FROM: Version = ollama.OWN_ESTIMATOR_UNTIL  # llm/server.go createLayout (v0.12.11)
# llm/server.go NewLlamaServer (v0.11.2): an estimate that places no layer starts the runner
# "on the CPU", with no --tensor-split and no CUDA_VISIBLE_DEVICES; where the CUDA backend sits
# in lib/ollama itself (Dockerfile "COPY --from=cuda-12 dist/lib/ollama /lib/ollama", v0.9.3
# to v0.11.10; lib/ollama/cuda_v12 before and after) that runner still loads it, sees every GPU
# and puts num_gpu layers on them
CPU_RUNNER_SEES_GPUS: tuple[Version, Version] = ((0, 9, 3), (0, 11, 11))
SINGLE_GPU_SHARE = 0.8  # server/sched.go bestSingleGPUFit (v0.30.0): predicted <= 80% of free
Counts = tuple[int, ...]  # layers per GPU (the output layer counted on the GPU that holds it)


@frozen
class Sizes:
    """What Ollama's placement weighs, in bytes: one block with its KV, the output layer,
    the graph and the fixed reserve kept on each GPU it uses."""

    block: int
    output: int
    graph: int
    reserve: int


def estimator_counts(budgets: Sequence[int], blocks: int, sizes: Sizes,
                     limit: int | None = None) -> Counts:
    """llm/memory.go EstimateGPULayers (v0.11.3): GPUs in the order given (most free memory
    first); a GPU takes part only with room for the graph, the reserve and two layers; block i
    (from the last down) goes to the (i mod j)-th of the j GPUs still with space, one without
    room for it leaves the list; then the output layer to the (count mod j)-th."""
    b = sizes.block
    alloc = [sizes.reserve for _ in budgets]
    counts = [0 for _ in budgets]
    room = [i for i, free in enumerate(budgets) if free >= sizes.graph + sizes.reserve + b]
    for i in range(blocks - 1, -1, -1):
        if limit is not None and sum(counts) >= limit:  # num_gpu: the rest stay on the CPU
            break
        for j in range(len(room), 0, -1):
            g = room[i % j]
            if budgets[g] > alloc[g] + sizes.graph + b:
                alloc[g] += b
                counts[g] += 1
                break
            del room[i % j]
    placed = sum(counts)
    if limit is not None and placed >= limit:
        return tuple(counts)
    for j in range(len(room) if sizes.output else 0, 0, -1):
        g = room[placed % j]
        if budgets[g] > alloc[g] + sizes.graph + sizes.output:
            counts[g] += 1
            break
    return tuple(counts)


def _greedy(layers: Sequence[int], free: Sequence[float], capacity: float) -> int:
    """llm/server.go greedyFit (v0.12.11): from the last layer down onto the last GPU, spilling
    to the one before when capacity x its free memory is used up; how many layers it placed."""
    device, space, placed = len(free) - 1, free[-1] * capacity, 0
    for size in reversed(layers):
        while size > space:
            device -= 1
            if device < 0:
                return placed
            space = free[device] * capacity
        space -= size
        placed += 1
    return placed


def _best_fit(layers: Sequence[int], free: Sequence[float]) -> Counts:
    """llm/server.go findBestFit: the smallest capacity factor that still places as many
    layers as the whole free memory does, so the GPUs share the layers by their free memory."""
    most = _greedy(layers, free, 1.0)
    low, high = 0.0, 1.0
    while high - low > 1e-6:
        mid = (low + high) / 2
        low, high = (low, mid) if _greedy(layers, free, mid) == most else (mid, high)
    counts = [0] * len(free)
    device, space = len(free) - 1, free[-1] * high
    for size in reversed(layers[len(layers) - most:]):
        while size > space:
            device -= 1
            space = free[device] * high
        space -= size
        counts[device] += 1
    return tuple(counts)


def layout_counts(budgets: Sequence[int], blocks: int, sizes: Sizes,
                  limit: int | None = None) -> Counts:
    """llm/server.go assignLayers (v0.12.11): the fewest GPUs (most free memory first) that hold
    every layer, each GPU's free memory less its reserve and graph; failing that, all of them,
    and without the output layer if that places more blocks."""
    free = [max(0, u - sizes.reserve - sizes.graph) for u in budgets]
    layers = [sizes.block] * blocks + [sizes.output]
    if limit is not None:  # num_gpu: greedyFit stops after that many, from the last layer
        layers = layers[len(layers) - min(limit, len(layers)):]
    best: Counts = (0,) * len(budgets)
    for _ in range(2):
        for used in range(1, len(free) + 1):
            counts = _best_fit(layers, free[:used]) + (0,) * (len(free) - used)
            if sum(counts) > sum(best):
                best = counts
            if sum(counts) == len(layers):
                return counts
        layers = layers[:-1]
    return best


@frozen
class MixedPlacement:
    """Where Ollama puts the model over the GPUs, in the order Ollama numbers them (CUDA0 has
    the most free memory)."""

    order: tuple[int, ...]  # indices into the GPUs as --gpu names them
    counts: Counts  # layers per GPU in that order
    startup: ollama.OllamaStartup  # its buffers split over the GPUs used
    rule: str


def place(est: Estimate, given: Mapping[str, object], devices: Sequence[Device],
          usable: Sequence[int]) -> MixedPlacement:
    """Ollama's choice of GPUs and layers per GPU, with llama.cpp's buffers for it."""
    options = ollama.ENGINE.parse(given)
    order = tuple(sorted(range(len(devices)), key=lambda i: -usable[i]))
    budgets = [usable[i] - int(options.get("gpu_overhead", 0))  # type: ignore[call-overload]
               for i in order]
    total = sum(d.addressable_bytes for d in devices)  # num_ctx follows the GPUs' sum
    base = {**options, "gpus_total_bytes": total, "budgets": tuple(budgets)}
    first = devices[order[0]]
    whole = ollama.compute(StartupRequest(est, base, first, 1, None))  # num_ctx, parallel...
    if whole.num_parallel > 1 and "num_parallel" not in options:
        # auto parallel (0.2-0.9): that many contexts if the model then fits whole on the GPUs
        # (server/sched.go pickBestFullFitByLibrary tries it, then 1)
        trial = _place(est, {**base, "num_parallel": whole.num_parallel}, devices, order,
                       budgets, whole)
        if sum(trial.counts) >= whole.layers_total:
            return trial
        whole = ollama.compute(StartupRequest(est, {**base, "num_parallel": 1}, first, 1, None))
    return _place(est, {**base, "num_parallel": whole.num_parallel}, devices, order, budgets,
                  whole)


def _place(est: Estimate, options: Mapping[str, object], devices: Sequence[Device],
           order: tuple[int, ...], budgets: Sequence[int],
           whole: ollama.OllamaStartup) -> MixedPlacement:
    version = whole.version
    first = devices[order[0]]
    blocks = whole.layers_total - 1
    if version >= ollama.LLAMA_SERVER_FROM:
        return _llama_server(est, options, devices, order, budgets, whole)
    requested = options.get("num_gpu")
    if version < LAYOUT_FROM and requested is None:
        counts = _counts(version, budgets[:1], blocks, _sizes(est, whole, version, multi=False))
        if sum(counts) == whole.layers_total:
            rule = (f"the model fits whole on {first.name} alone, so Ollama uses that GPU only "
                    f"({SRC.format('0.11.3', 'server/sched.go')} pickBestFullFitByLibrary)")
            return _built(est, options, devices, order, counts + (0,) * (len(order) - 1), rule)
    sizes = _sizes(est, whole, version, multi=True)
    limit = requested if isinstance(requested, int) else None
    counts = _counts(version, budgets, blocks, sizes, limit)
    seen_from, seen_until = CPU_RUNNER_SEES_GPUS
    if limit and seen_from <= version < seen_until and not any(counts):
        rule = (f"Ollama's estimate places no layer on any GPU, so it starts the runner as on "
                f"the CPU ({SRC.format('0.11.2', 'llm/server.go')} NewLlamaServer), without "
                f"--tensor-split but with num_gpu {limit} as --n-gpu-layers: the runner splits "
                f"them over every GPU by free memory ({SRC.format('0.11.2', 'ml/backend/ggml/ggml.go')}"
                " New)")
        return _built(est, options, devices, order, (1,) * len(order), rule, gpu_layers=limit,
                      shares=tuple(float(b) for b in budgets))
    if limit is not None:  # the estimate stops at num_gpu; -ngl is num_gpu itself
        return _built(est, options, devices, order, counts, _ngl_rule(version, limit),
                      gpu_layers=limit)
    if version < LAYOUT_FROM:
        rule = ("Ollama's estimator deals the layers to the GPUs in turn from the last layer, "
                "each GPU less 457 MiB, one layer and the graph "
                f"({format_bytes(sizes.graph)}) ({SRC.format('0.11.3', 'llm/memory.go')} "
                "EstimateGPULayers), and passes the counts as --tensor-split")
    else:
        rule = ("Ollama packs the layers onto the fewest GPUs, largest first, shared by free "
                f"memory less 457 MiB and the graph ({format_bytes(sizes.graph)}) "
                f"({SRC.format('0.12.11', 'llm/server.go')} assignLayers, greedyFit)")
    return _built(est, options, devices, order, counts, rule)


def _ngl_rule(version: Version, requested: int) -> str:
    tag, path = (("0.11.3", "llm/server.go") if version < LAYOUT_FROM
                 else ("0.12.11", "llm/server.go"))
    return (f"num_gpu {requested} is passed as --n-gpu-layers, split over the GPUs in the "
            f"ratio of Ollama's own layer estimate (--tensor-split) ({SRC.format(tag, path)})")


def _counts(version: Version, budgets: Sequence[int], blocks: int, sizes: Sizes,
            limit: int | None = None) -> Counts:
    if version < LAYOUT_FROM:
        return estimator_counts(budgets, blocks, sizes, limit)
    return layout_counts(budgets, blocks, sizes, limit)


def _sizes(est: Estimate, s: ollama.OllamaStartup, version: Version, *, multi: bool) -> Sizes:
    """One block with its KV, the output layer, the graph and the reserve as Ollama weighs
    them: its own GraphSize before 0.12.11 (the partial-offload graph on several GPUs), the
    runner's measured graph (llama.cpp's compute buffer) after."""
    ctx, batch = s.context_tokens, s.num_batch
    block = ollama._layer_buffer(est, ctx, batch, s.num_parallel, s.kv_cache_type)
    one = s.full.devices[0] if s.full.devices else None
    output = 0
    if s.full.devices:
        blocks_only = _buffers(est, s, s.layers_total - 1, None, 1)
        output = s.full.devices[0].model_bytes - sum(d.model_bytes for d in blocks_only.devices)
    # memoryLastLayer: the output layer, the vision tower (in the difference above, placed
    # with the output layer by _buffers) and its graph
    output += _vision(est, version)[1]
    llama_graph = one.compute_bytes if one is not None else 0
    if version >= LAYOUT_FROM:
        return Sizes(block, output, llama_graph, ollama.MINIMUM_MEMORY)
    graph = ollama._estimator_graph(est.model.shape, ctx, batch, s.num_parallel,
                                    s.kv_cache_type, 2 if multi else 1, version=version)
    return Sizes(block, output, llama_graph if graph is None else graph,
                 ollama.MINIMUM_MEMORY + block)


def _vision(est: Estimate, version: Version) -> tuple[int, int]:
    """A vision model's tower weights (16 bit) and picture graph, which Ollama's engine keeps
    with the output layer (ollama.py); (0, 0) for a text model."""
    graph = ollama._vision_graph(est, version)
    return (est.model.shape.extra_params * 2, graph) if graph else (0, 0)


def _buffers(est: Estimate, s: ollama.OllamaStartup, gpu_layers: int,
             split: tuple[float, ...] | None, gpus: int) -> LlamaCppStartup:
    from vramest.inference.engines.startup import LlamaCppOptions, llamacpp_startup

    ctx = s.context_tokens
    b = llamacpp_startup(est, LlamaCppOptions(
        n_gpu_layers=gpu_layers, n_ctx=ctx, n_ubatch=min(s.num_batch, ctx),
        flash_attn=s.flash_attention, cache_type_k=s.kv_cache_type, cache_type_v=s.kv_cache_type,
        n_gpus=gpus, tensor_split=split))
    weights, graph = _vision(est, s.version)
    if graph and b.devices:
        b = ollama._vision_with_output(b, weights, graph, gpu_layers >= s.layers_total,
                                       s.layers_total - 1, ollama._tower_bytes(est))
    return b


def _built(est: Estimate, options: Mapping[str, object], devices: Sequence[Device],
           order: tuple[int, ...], counts: Counts, rule: str,
           gpu_layers: int | None = None,
           shares: tuple[float, ...] | None = None) -> MixedPlacement:
    """llama.cpp's buffers for Ollama's counts: the GPUs that got layers, CUDA0 first, with
    --tensor-split the counts (llama.cpp then puts the output layer on the last of them), or
    `shares` where the runner splits by those, and --n-gpu-layers their sum, or num_gpu where
    given."""
    used = [i for i, n in enumerate(counts) if n]
    layers = sum(counts) if gpu_layers is None else gpu_layers
    s = ollama.compute(StartupRequest(est, {**options, "num_gpu": layers},
                                      devices[order[0]], 1, None))
    split = tuple(float(counts[i]) if shares is None else shares[i] for i in used)
    gpus = max(1, len(used))
    buffers = _buffers(est, s, layers, split if gpus > 1 else None, gpus)
    placed = tuple(d.layers for d in buffers.devices)
    if layers >= s.layers_total and buffers.devices:  # the output layer, on the last GPU
        placed = (*placed[:-1], placed[-1] + 1)
    actual = [0] * len(counts)
    for i, n in zip(used or [0], placed, strict=False):
        actual[i] = n
    full = buffers if layers >= s.layers_total else _whole(est, s, order, options)
    rules = tuple(r for r in s.rules if not r.startswith("num_gpu "))
    startup = replace(s, offloaded=min(layers, s.layers_total), buffers=buffers, full=full,
                      gpus=gpus, rules=(*rules, rule), placed=gpu_layers is not None,
                      estimated_full=None)
    return MixedPlacement(order, tuple(actual), startup, rule)


def _whole(est: Estimate, s: ollama.OllamaStartup, order: tuple[int, ...],
           options: Mapping[str, object]) -> LlamaCppStartup:
    """Every layer on every GPU, shared by free memory: what "fits" is judged on when
    Ollama leaves layers on the CPU (each GPU then shows how far it is from holding its share)."""
    budgets = options.get("budgets")
    split = tuple(float(b) for b in budgets) if isinstance(budgets, tuple) else None
    return _buffers(est, s, s.layers_total, split, len(order))


def _llama_server(est: Estimate, options: Mapping[str, object], devices: Sequence[Device],
                  order: tuple[int, ...], budgets: Sequence[int],
                  whole: ollama.OllamaStartup) -> MixedPlacement:
    """From 0.30: one GPU when llama.cpp's whole-model need is within 80% of its free memory,
    else every GPU with llama.cpp's own split by free memory and the most layers that fit."""
    need = ollama.per_gpu_need(whole.full)
    first = devices[order[0]]
    if need <= SINGLE_GPU_SHARE * budgets[0] and options.get("num_gpu") is None:
        rule = (f"the model's predicted {format_bytes(need)} is within 80% of {first.name}'s "
                f"free memory, so Ollama runs it there alone "
                f"({SRC.format('0.30.0', 'server/sched.go')} bestSingleGPUFit)")
        counts = (whole.layers_total,) + (0,) * (len(order) - 1)
        return _built(est, options, devices, order, counts, rule)
    split = tuple(float(b) for b in budgets)

    def fits(layers: int) -> bool:
        b = _buffers(est, whole, layers, split, len(budgets))
        return all(d.total(b.cuda_context_bytes) <= u for d, u in zip(b.devices, budgets,
                                                                        strict=False))

    requested = options.get("num_gpu")
    layers = int(requested) if isinstance(requested, int) else next(
        (n for n in range(whole.layers_total, -1, -1) if fits(n)), 0)
    b = _buffers(est, whole, layers, split, len(budgets))
    counts = tuple(d.layers for d in b.devices) + (0,) * (len(budgets) - len(b.devices))
    if layers >= whole.layers_total and b.devices:  # the output layer goes with the last GPU
        counts = (*counts[:-1], counts[-1] + 1)
    rule = (f"every GPU, llama-server splitting the layers by free memory with -ngl auto "
            f"({SRC.format('0.30.0', 'server/sched.go')} bestGPUGroupByAvailableMemory, "
            f"{SRC.format('0.30.0', 'llm/llama_server.go')})")
    s = ollama.compute(StartupRequest(est, {**options, "num_gpu": layers}, first, 1, None))
    full = b if layers >= s.layers_total else _whole(est, s, order, options)
    rules = tuple(r for r in s.rules if not r.startswith("num_gpu "))
    startup = replace(s, offloaded=layers, buffers=b, full=full, gpus=len(budgets),
                      rules=(*rules, rule), placed=False, estimated_full=None)
    return MixedPlacement(order, counts, startup, rule)



def fits_whole(est: Estimate, options: Mapping[str, object], devices: Sequence[Device],
               usable: Sequence[int], band: float) -> bool:
    """Whether Ollama puts every layer on these GPUs with each one's error band to spare."""
    p = place(est, options, devices, usable)
    b = p.startup.buffers
    used = [i for i, n in zip(p.order, p.counts, strict=True) if n]
    return p.startup.fully_offloaded and all(
        d.total(b.cuda_context_bytes) * (1 + band) <= usable[i]
        for i, d in zip(used, b.devices, strict=False))


def advice(est: Estimate, options: Mapping[str, object], devices: Sequence[Device],
           usable: Sequence[int], p: MixedPlacement, band: float) -> tuple[str, ...]:
    """Ollama's own knobs, each tried through the placement over these GPUs: the longest
    num_ctx that puts every layer on them, and a q8_0 KV cache."""
    s = p.startup
    out = []
    if not s.fully_offloaded:
        out.append(f"as it is, Ollama runs it with {s.offloaded} of {s.layers_total} layers on "
                   "the GPUs and the rest on the CPU (see the speed)")

    def fits(changed: Mapping[str, object]) -> bool:
        return fits_whole(est, {**options, **changed}, devices, usable, band)

    step = 256
    if fits({"num_ctx": step}) and not fits({"num_ctx": s.num_ctx}):
        low, high = 1, -(-s.num_ctx // step)
        while high - low > 1:
            mid = (low + high) // 2
            low, high = (mid, high) if fits({"num_ctx": mid * step}) else (low, mid)
        low *= step
        out.append(f"num_ctx {low} (--engine-option num_ctx={low}; OLLAMA_CONTEXT_LENGTH={low} "
                   "or /set parameter num_ctx {low}): the longest context Ollama puts whole on "
                   "these GPUs with the error band to spare".replace("{low}", str(low)))
    if s.kv_cache_type == "f16" and s.version >= ollama.KV_TYPES_FROM:
        need_fa = "" if s.flash_attention else " with OLLAMA_FLASH_ATTENTION=1"
        q8 = fits({"kv_cache_type": "q8_0", "flash_attention": True})
        out.append(f"OLLAMA_KV_CACHE_TYPE=q8_0{need_fa}: half the KV cache"
                   + (", and it fits" if q8 else ""))
    out.append("another GPU in --gpu: Ollama splits the layers over it too")
    return tuple(out)
