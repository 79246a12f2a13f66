"""The public serving estimate: resolve the model and GPU, then `serve`."""

from __future__ import annotations

from functools import lru_cache

from vramest.errors import InputError
from vramest.frozen import replace
from vramest.hardware.database import load_hardware
from vramest.inference.serving_extras import NO_EXTRAS, ServingExtras, for_model
from vramest.model.resolve import ModelInfo, resolve_model
from vramest.serving.engines import serving_engine, with_options
from vramest.serving.estimate import ServingEstimate, capacity, deployment, serve
from vramest.serving.lengths import parse_length_dist


def serving(*, model: str | None = None, params: str | None = None, dtype: str | None = None,
            kv_dtype: str | None = None, gpu: str, num_gpus: int = 1, pp: int = 1,
            engine: str = "vllm", input_len: int, output_len: int,
            concurrency: int | None = None, request_rate: float | None = None,
            max_num_batched_tokens: int | None = None, max_num_seqs: int | None = None,
            hardware_file: str | None = None,
            extras: ServingExtras = NO_EXTRAS, ep: int = 1,
            input_len_dist: str | None = None,
            output_len_dist: str | None = None) -> ServingEstimate:
    """Latency and throughput of one deployment under load (see `vramest.serving.simulate`)."""
    if concurrency is not None and request_rate is not None:
        raise InputError("Give --concurrency or --request-rate, not both.")
    if num_gpus < 1 or pp < 1 or num_gpus % pp:
        raise InputError(f"--num-gpus {num_gpus} must be a whole multiple of --pp {pp} "
                         "(tensor parallel = num-gpus / pp).")
    info = _resolve(model, params)
    device = load_hardware(hardware_file).find(gpu)
    eng = with_options(serving_engine(engine), max_num_batched_tokens=max_num_batched_tokens,
                       max_num_seqs=max_num_seqs)
    name = dtype or info.native_format or info.stored_format or "bf16"
    if dtype is None and name in ("fp32", "float32"):
        # serving engines load a float32 checkpoint in 16 bit unless told otherwise (vLLM's
        # dtype "auto": vllm/config/model.py, _get_and_verify_dtype)
        name = "bf16"
    tp = num_gpus // pp
    if info.shape.num_kv_heads and not info.shape.is_mla and info.shape.num_heads % tp:
        raise InputError(f"Tensor parallel {tp} does not divide the {info.shape.num_heads} "
                         "attention heads; choose --num-gpus / --pp that does.")
    if ep < 1 or tp % ep:
        raise InputError(f"--ep {ep} must divide the tensor-parallel size {tp} (expert "
                         "parallel groups are formed within it).")
    d = deployment(info, name, kv_dtype, device, tp, pp, eng, ep=ep)
    if extras:  # LoRA slots and speculative decoding: inference/serving_extras.py
        extras = for_model(extras, model, info.name)
        d = replace(d, extras=extras)
    cap = capacity(info, d.fmt.name, d.kv.name, device, num_gpus, eng, input_len + output_len,
                   extras=extras, pp=pp)
    return serve(d, eng, cap, input_len=input_len, output_len=output_len,
                 concurrency=concurrency, request_rate=request_rate,
                 input_dist=parse_length_dist(input_len_dist, "--input-len-dist"),
                 output_dist=parse_length_dist(output_len_dist, "--output-len-dist"))


@lru_cache(maxsize=32)  # resolving a catalog model walks its tensors: ~10 ms, 10× a simulation
def _resolve(model: str | None, params: str | None) -> ModelInfo:
    return resolve_model(params=params, model=model, family="llama", active_params=None,
                         overrides={})
