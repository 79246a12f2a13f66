"""vLLM's CUDA-graph memory: which batch sizes a release captures, and what the graphs hold.

vLLM logs the memory its graphs took after capture ("Graph capturing finished in N secs, took X
GiB": `start_free_gpu_memory - end_free_gpu_memory` around capture_model, vllm/worker/
model_runner.py in the 0.6.4 wheel, vllm/v1/worker/gpu_model_runner.py in the 0.8.4 and 0.11.0
wheels; "CUDA graph pool memory: X GiB (actual)" in later ones). Every captured graph shares one
memory pool (capture goes from the largest size down "so that the smaller shapes can reuse the
memory pool allocated for the large shapes"), so the activations of the batch count once; what
grows with every captured graph is its own share of the pool and the driver's instantiated graph
(a node per kernel, so in proportion to the layers). vLLM's own estimator says the same in the
0.19.0 logs: "Estimated PIECEWISE CUDA graph memory: 138.00 MiB first-capture + (51-1) x 6.00
MiB per-graph" for Llama-3.1-8B (32 layers), 20.00 MiB per graph for Llama-3.3-70B (80 layers,
TP 2). Hence per GPU

    graphs x (vllm_graph_fixed_bytes + vllm_graph_layer_bytes x decoder layers on the GPU)

with the count of graphs from the release's capture sizes (`captured_graphs`), fitted to the
logged figures in validation/reference/vllm_cuda_graphs.csv (its README says which rows fit).
The all-reduce buffers at tensor parallelism come on top (startup.graph_peer_bytes).

MoE layers with shared experts cost more: from 0.12 vLLM runs the shared experts on an aux CUDA
stream beside the routed ones for batches of at most 256 tokens (PR #26440, "Dual stream
execution of shared_experts and selected_experts inside FusedMoE"; the 256 of PR #28406,
VLLM_SHARED_EXPERTS_STREAM_TOKEN_THRESHOLD; fused_moe/runner/shared_experts.py
MULTI_STREAM_OVERLAPPED), so every graph of those sizes forks and joins a second stream in each
such layer, with the shared-expert MLP's kernels on it. The logs show it: the three 0.19 MoE rows
with shared experts take 0.14-0.30 MiB more per graph and layer than the dense rule, the three
without 0.01-0.08 MiB. Hence, on top, graphs of <= 256 tokens x vllm_graph_shared_expert_
layer_bytes x the GPU's MoE layers with shared experts (fitted like the rest; MoE layers without
shared experts get no term: one for every MoE layer moved the check rows' median error from 20.7%
to 21.2%).
"""

from __future__ import annotations

from vramest.inference.constants import Constants

# V0 captures [1, 2, 4] + multiples of 8 up to the first of them >= max_num_seqs, for every
# pipeline stage's virtual engine (model_runner.py capture_model); the candidates end at 256
# before 0.6 (_BATCH_SIZES_TO_CAPTURE = [1, 2, 4] + [8 * i for i in range(1, 33)]) and at 8192
# from 0.6 (range(1, 1025) in the 0.6.4 wheel; PR #7894, "extend cuda graph size for H200",
# merged 2024-08-27)
V0_LARGE_LADDER_SINCE = (0, 6)
# V1 0.8-0.9: [1, 2, 4] + range(8, 513, 8), those <= max_num_batched_tokens, whatever
# max_num_seqs (config.py _set_cudagraph_sizes in the 0.8.4 wheel; cuda_graph_sizes [512] in
# 0.9.2's); from 0.10 up to min(2 x max_num_seqs, 512) (scheduler.py in the 0.10.0 wheel:
# "cuda_graph_sizes = [min(self.max_num_seqs * 2, 512)]")
V1_SEQS_LADDER_SINCE = (0, 10)
# from 0.11 the default cudagraph_mode is FULL_AND_PIECEWISE (config/__init__.py in the 0.11.0
# wheel): piecewise graphs for every size and full graphs for the decode sizes <= max_num_seqs
# (gpu_model_runner.py capture_model: "x <= max_num_tokens" with max_num_seqs x
# uniform_decode_query_len); pooling models keep PIECEWISE, and so do models with chunked local
# attention (Llama 4: ChunkedLocalAttentionBuilder.get_cudagraph_support returns NEVER; the
# 0.19.0 Scout log in vllm_cuda_graphs.csv captures "PIECEWISE=51", no FULL): piecewise_only
FULL_DECODE_GRAPHS_SINCE = (0, 11)
# from 0.12 the sizes step by 16 above 256 (config/vllm.py in the 0.12.0 wheel: "Step size 16
# for larger batch sizes"): 51 sizes up to 512 instead of 67, as the 0.19.0 logs count them
V1_STEP16_LADDER_SINCE = (0, 12)
# shared experts on the aux stream for batches of <= 256 tokens (PRs #26440 and #28406, both
# merged by November 2025; 0.12.0 is the first release taken to have both)
SHARED_EXPERTS_STREAM_SINCE = (0, 12)
SHARED_EXPERTS_STREAM_TOKENS = 256


def capture_sizes(engine: str, release: tuple[int, ...], max_num_seqs: int,
                  batched_tokens: int) -> list[int]:
    """The batch sizes (V0: sequences; V1: tokens) one release captures a graph for."""
    if engine == "v0":
        top = 1024 if release >= V0_LARGE_LADDER_SINCE else 32
        candidates = [1, 2, 4, *(8 * i for i in range(1, top + 1))]
        limit = next((x for x in candidates if x >= max_num_seqs), candidates[-1])
        return [x for x in candidates if x <= limit]
    limit = 512 if release < V1_SEQS_LADDER_SINCE else min(2 * max_num_seqs, 512)
    limit = min(limit, batched_tokens)
    if release >= V1_STEP16_LADDER_SINCE:
        sizes = [x for x in (1, 2, 4) if x <= limit]
        sizes += list(range(8, min(limit + 1, 256), 8)) + list(range(256, limit + 1, 16))
        return sizes
    return [x for x in (1, 2, 4, *range(8, 513, 8)) if x <= limit]


def captured_graphs(engine: str, release: tuple[int, ...], max_num_seqs: int,
                    batched_tokens: int, pp: int = 1, piecewise_only: bool = False) -> int:
    """How many graphs one GPU captures: V0 one per size for each pipeline virtual engine; V1
    the piecewise graphs of every size, and from 0.11 a full graph per decode size too."""
    sizes = capture_sizes(engine, release, max_num_seqs, batched_tokens)
    if engine == "v0":
        return len(sizes) * pp
    full = 0 if piecewise_only or release < FULL_DECODE_GRAPHS_SINCE else \
        sum(1 for x in sizes if x <= max_num_seqs)
    return len(sizes) + full


def aux_stream_graphs(engine: str, release: tuple[int, ...], max_num_seqs: int,
                      batched_tokens: int, piecewise_only: bool = False) -> int:
    """How many of one GPU's graphs run the shared experts on the aux stream: those of at most
    256 tokens, piecewise and full, from 0.12 (none before, and none in V0)."""
    if engine == "v0" or release < SHARED_EXPERTS_STREAM_SINCE:
        return 0
    sizes = [x for x in capture_sizes(engine, release, max_num_seqs, batched_tokens)
             if x <= SHARED_EXPERTS_STREAM_TOKENS]
    full = 0 if piecewise_only or release < FULL_DECODE_GRAPHS_SINCE else \
        sum(1 for x in sizes if x <= max_num_seqs)
    return len(sizes) + full


def one_gpu_graph_bytes(constants: Constants, graphs: int, layers: float,
                        aux_graphs: int = 0, shared_expert_layers: float = 0) -> int:
    """The graphs' memory on one GPU, before any all-reduce buffers: `layers` are the decoder
    layers that GPU runs (num_layers / pp), `shared_expert_layers` those of them that are MoE
    layers with shared experts, run on the aux stream in `aux_graphs` of the graphs."""
    return round(graphs * (constants.vllm_graph_fixed_bytes
                           + constants.vllm_graph_layer_bytes * layers)
                 + aux_graphs * shared_expert_layers
                 * constants.vllm_graph_shared_expert_layer_bytes)
