"""Trace mode: run a model's real transformers code at full size on fake tensors and measure
the peak of live tensor bytes per phase (load, prefill, decode), beside the analytic estimate.

torch's FakeTensorMode gives every tensor a shape, dtype and device but no storage, so a 70B
model "loads" in a fraction of a second and a few hundred MB of process memory; the
`LiveBytesTracker` (vramest/tracing/tracking.py) counts what every live tensor would hold.

This module imports torch and transformers only inside the functions that trace, so the
stored-trace comparison (`trace_accuracy_report`, `analytic_peak`) works without them.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from vramest.errors import InputError
from vramest.frozen import TYPE_CHECKING, field, frozen
from vramest.units import format_bytes
from vramest.validation import TRACE_DIR

PHASES = ("load", "prefill", "decode")
TRACE_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
TRACE_ATTENTION = ("sdpa", "eager")
DEFAULT_DECODE_STEPS = 2
# Prefill forwards one trace runs (each a full-model forward on fake tensors): every real
# chunking fits (2048-token chunks up to a 512k prompt), --prefill-chunk 1 --ctx 1M does not.
MAX_PREFILL_FORWARDS = 256
# vision-language models whose pictures a trace can feed (image tokens placed in the prompt)
TRACE_VISION_FAMILIES = ("gemma3",)
# encoder-decoders whose encoder reads token ids (Whisper's reads audio features)
SEQ2SEQ_TEXT = ("bart", "t5", "mt5", "umt5")
MATH_FALLBACK = ("the math fallback, which materialises the scores (CUDA's memory-efficient "
                 "kernel would not)")
if TYPE_CHECKING:
    from typing import Any

    from vramest.model.shapes import ModelShape as ShapeLike

INSTALL_HINT = ("trace mode needs torch and transformers: pip install 'vramest[calibrate]' "
                "(or `make install-dev`).")


class UnsupportedAttention(InputError):
    """The installed transformers has no such attention implementation for this model."""


@frozen
class PhaseResult:
    """The peak of one phase: total live tensor bytes and what they were."""

    name: str
    peak_bytes: int
    params_bytes: int
    kv_cache_bytes: int
    activations_bytes: int
    peak_op: str
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "peak_bytes": self.peak_bytes,
                "params_bytes": self.params_bytes, "kv_cache_bytes": self.kv_cache_bytes,
                "activations_bytes": self.activations_bytes, "peak_op": self.peak_op,
                "seconds": round(self.seconds, 3)}


@frozen
class TraceRun:
    """What tracing one model measured, before any comparison with the estimate."""

    phases: tuple[PhaseResult, ...]
    device: str  # the device whose kernels the trace used ("cpu" or "cuda")
    attention_kernel: str  # the attention operator(s) that ran, and what that implies
    fake: bool
    seconds: float
    rss_bytes: int

    def phase(self, name: str) -> PhaseResult | None:
        return next((p for p in self.phases if p.name == name), None)


@frozen
class TraceResult:
    """A trace of a catalog model and the analytic estimate for the same settings."""

    model: str
    dtype: str
    ctx: int
    batch: int
    attention: str
    prefill_chunk: int
    decode_steps: int
    run: TraceRun
    memory: dict[str, int]  # the estimate's `memory` object (weights, kv_cache, ...)
    analytic_peak_bytes: int  # weights + KV (as transformers stores it) + activations
    notes: tuple[str, ...] = field(default=())
    images: int = 0

    def to_json(self) -> dict[str, Any]:
        prefill = self.run.phase("prefill")
        out: dict[str, Any] = {
            "model": self.model,
            "settings": {"dtype": self.dtype, "ctx": self.ctx, "batch": self.batch,
                         "attention": self.attention, "prefill_chunk": self.prefill_chunk,
                         "decode_steps": self.decode_steps,
                         **({"images": self.images} if self.images else {})},
            "device": self.run.device,
            "attention_kernel": self.run.attention_kernel,
            "phases": {p.name: p.to_json() for p in self.run.phases},
            "rss_bytes": self.run.rss_bytes,
            "seconds": round(self.run.seconds, 3),
            "memory": self.memory,
            "analytic_peak_bytes": self.analytic_peak_bytes,
            "notes": list(self.notes),
        }
        if prefill is not None:
            out["difference"] = {
                "bytes": self.analytic_peak_bytes - prefill.peak_bytes,
                "pct": round(100 * (self.analytic_peak_bytes - prefill.peak_bytes)
                             / prefill.peak_bytes, 3),
                "compares": "analytic weights + KV as transformers holds it after prefill + "
                            "activations vs the traced prefill peak; overhead is not a tensor",
            }
        return out


# --- torch-free: the analytic side ---------------------------------------------------------
def analytic_peak(model: str, dtype: str, ctx: int, batch: int, attention: str,
                  prefill_chunk: int | None = None,
                  images: int = 0) -> tuple[int, dict[str, int]]:
    """The estimate's peak of tensor bytes comparable with a trace, and its `memory` object.

    Weights + KV cache + activations (no runtime overhead: it is not a tensor), with the KV
    cache as transformers holds it at the end of a prefill (`transformers_prefill_kv_bytes`).
    `images` pictures per sequence at the vision tower's own size.
    """
    from vramest.api import estimate
    from vramest.model.precisions import kv_format

    request = None
    if images:
        from vramest.model.catalog import default_catalog
        from vramest.model.vision import ImageRequest, native_side

        side = native_side(default_catalog().find(model).config)
        request = ImageRequest(images, side, side)
        if prefill_chunk is not None and prefill_chunk >= ctx:
            prefill_chunk = None  # the whole prompt, images included
    est = estimate(model=model, dtype=dtype, ctx=ctx, batch=batch, attention=attention,
                   prefill_chunk=prefill_chunk, images=request)
    memory = est.memory
    kv_bytes = transformers_prefill_kv_bytes(est.model.shape, kv_format(est.settings.kv_dtype).
                                             bytes_per_element, est.settings.ctx,
                                             est.settings.prefill_chunk, est.settings.batch)
    if request is None:
        return memory.weights.bytes + kv_bytes + memory.activations.bytes, memory.to_json()
    # transformers runs the vision tower before the first layer writes the cache: the tower's
    # peak meets the weights alone, the text forward's meets the KV it has written
    text = estimate(model=model, dtype=dtype, ctx=est.settings.ctx, batch=batch,
                    attention=attention, prefill_chunk=prefill_chunk).memory.activations.bytes
    return (memory.weights.bytes + max(kv_bytes + text, memory.activations.bytes),
            memory.to_json())


def transformers_prefill_kv_bytes(shape: ShapeLike, bytes_per_element: float, ctx: int,
                                  chunk: int, batch: int) -> int:
    """KV bytes transformers' DynamicCache holds right after a prefill of `ctx` tokens.

    The estimate's KV is what serving engines keep; transformers differs in one way: a
    sliding-window layer keeps a *view* of its last window - 1 tokens, so the storage of the
    whole last chunk's keys and values stays allocated until the next update. (MLA models: the
    installed transformers caches the compressed latent + rope key, as the estimate assumes.)
    """
    from vramest.inference.memory import kv_elements_per_token
    from vramest.model.shapes import LAYER_FULL, LAYER_SLIDING

    state = transformers_state_bytes(shape, bytes_per_element) * batch
    if shape.architecture == "encoder-decoder":  # self + cross KV, no sliding layers
        return round(kv_elements_per_token(shape, ctx) * bytes_per_element * batch)
    kinds = shape.kinds()
    kv_layers = kinds.count(LAYER_FULL) + kinds.count(LAYER_SLIDING)
    if not kv_layers:
        return state
    width = kv_elements_per_token(shape, 1) / kv_layers
    last_chunk = ctx - chunk * ((ctx - 1) // chunk)
    window = shape.sliding_window or ctx
    sliding_tokens = min(ctx - last_chunk, window - 1) + last_chunk
    elements = width * (kinds.count(LAYER_FULL) * ctx + kinds.count(LAYER_SLIDING) * sliding_tokens)
    return round(elements * bytes_per_element * batch) + state


def transformers_state_bytes(shape: ShapeLike, bytes_per_element: float) -> int:
    """A recurrent model's state per sequence as transformers' LinearAttentionLayer holds it:
    the conv window is all `conv_kernel` inputs (engines keep kernel - 1), and the SSM state
    comes out of the reference scan in fp32 (fake-tensor traces of Mamba-2 and Nemotron-H)."""
    if not shape.state_layers:
        return 0
    conv_dim = shape.conv_state // (shape.conv_kernel - 1)
    window = shape.conv_kernel * conv_dim
    if shape.family == "rwkv":  # RwkvModel's token shifts are the last input alone
        window = shape.conv_state
    return round(shape.state_layers * (window * bytes_per_element + shape.ssm_state * 4))


# --- tracing (torch) -----------------------------------------------------------------------
def trace(model: str, dtype: str = "bf16", ctx: int = 4096, batch: int = 1, attn: str = "sdpa",
          phases: Sequence[str] = PHASES, *, prefill_chunk: int | None = None,
          decode_steps: int = DEFAULT_DECODE_STEPS, images: int = 0) -> TraceResult:
    """Trace a catalog model at full size on fake tensors, and estimate the same settings.

    `phases` are run in order up to the last one named (decode needs a prefill first).
    `images`: pictures per sequence at the vision tower's own size (a vision-language model:
    the tower runs over them and their tokens join the `ctx` text tokens).
    """
    from vramest.model.catalog import default_catalog

    entry = default_catalog().find(model)
    if images:
        if str(entry.config.get("model_type")) not in TRACE_VISION_FAMILIES:
            raise InputError(f"Trace mode runs pictures through Gemma 3's vision tower only; "
                             f"{entry.id} traces its text model (without --images).")
        notes: tuple[str, ...] = ()
        config = dict(entry.config)
        total = ctx + images * _image_tokens(config)
    else:
        config, notes = model_config(entry.config, entry.id)
        total = ctx
    chunk = min(prefill_chunk or total, total)
    run = trace_config(config, dtype=dtype, ctx=total, batch=batch, attn=attn, phases=phases,
                       prefill_chunk=chunk, decode_steps=decode_steps, images=images)
    peak, memory = analytic_peak(entry.id, dtype, ctx, batch, attn, chunk, images)
    return TraceResult(model=entry.id, dtype=dtype, ctx=ctx, batch=batch, attention=attn,
                       prefill_chunk=chunk, decode_steps=decode_steps, run=run, memory=memory,
                       analytic_peak_bytes=peak, notes=notes, images=images)


def _image_tokens(config: Mapping[str, Any]) -> int:
    """Tokens one picture at the tower's own size adds (vramest/model/vision.py's rule)."""
    from vramest.model.vision import image_tokens, native_side

    side = native_side(config)
    return image_tokens(config, side, side).per_image


def model_config(config: Mapping[str, Any], name: str) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The (text) model config to build, and notes on what the trace leaves out."""
    text = config.get("text_config")
    if isinstance(text, Mapping):
        return dict(text), (f"{name} is multimodal: the trace runs its text model only; the "
                            "estimate's weights include the vision tower.",)
    return dict(config), ()


def trace_config(config: Mapping[str, Any], *, dtype: str = "bf16", ctx: int = 4096,
                 batch: int = 1, attn: str = "sdpa", phases: Sequence[str] = PHASES,
                 prefill_chunk: int | None = None, decode_steps: int = DEFAULT_DECODE_STEPS,
                 fake: bool = True, images: int = 0) -> TraceRun:
    """Build the model a config.json describes and trace load → prefill → decode.

    `fake=False` runs the same code on real CPU tensors (small models only): the calibration
    harness and the tests compare the two.
    """
    unknown = [p for p in phases if p not in PHASES]
    if unknown or not phases:
        raise InputError(f"Unknown phase {', '.join(unknown) or '(none)'}; accepted: "
                         f"{', '.join(PHASES)}.")
    if dtype not in TRACE_DTYPES:
        raise InputError(f"Trace mode runs unquantized models: --dtype {dtype!r} is not one of "
                         f"{', '.join(TRACE_DTYPES)}.")
    if attn not in TRACE_ATTENTION:
        raise InputError(f"Trace mode runs --attn {' or '.join(TRACE_ATTENTION)}, not {attn!r} "
                         "(flash-attention kernels need a GPU).")
    chunk = min(prefill_chunk or ctx, ctx)
    forwards = -(-ctx // chunk)
    if forwards > MAX_PREFILL_FORWARDS:  # --prefill-chunk 1 --ctx 1M would trace for days
        raise InputError(f"--prefill-chunk {chunk} splits the {ctx}-token prompt into {forwards} "
                         f"forwards; a trace runs at most {MAX_PREFILL_FORWARDS}: give a chunk "
                         f"of at least {-(-ctx // MAX_PREFILL_FORWARDS)} tokens.")
    last = max(PHASES.index(p) for p in phases)
    torch, transformers = _import_torch()
    from vramest.tracing.tracking import KV_CACHE, PARAMS, LiveBytesTracker

    hf_config = _hf_config(transformers, config)
    torch_dtype = getattr(torch, TRACE_DTYPES[dtype])
    from vramest.model.encoders import ENCODER_FAMILIES

    if str(config.get("model_type", "")) in ENCODER_FAMILIES:
        return _trace_encoder(torch, transformers, config, hf_config, torch_dtype, ctx=ctx,
                              batch=batch, attn=attn, last=last, fake=fake)
    if str(config.get("model_type", "")) in SEQ2SEQ_TEXT:
        return _trace_seq2seq(torch, transformers, hf_config, torch_dtype, ctx=ctx,
                              batch=batch, attn=attn, last=last, fake=fake,
                              untied_head=config.get("tie_word_embeddings") is False)
    started = time.perf_counter()
    device = "cpu"  # a CPU-only torch cannot fake CUDA; see _trace_device
    results: list[PhaseResult] = []
    with _fake_mode(torch, fake), _grouped_mm_fallback(fake and dtype != "bf16"):
        tracker = LiveBytesTracker()
        with tracker, torch.no_grad():
            phase_start = time.perf_counter()
            model = _build(transformers, hf_config, torch_dtype, attn, multimodal=images > 0)
            tracker.label(_state_tensors(model), PARAMS)
            results.append(_load_phase(tracker, phase_start))
            if last >= 1:
                from transformers import DynamicCache

                cache: Any = (_ReturnedState() if _takes_state(model)
                              else DynamicCache(config=model.config))
                tracker.watch(KV_CACHE, lambda: _cache_tensors(cache))
                tracker.reset_peak()
                phase_start = time.perf_counter()
                pictures = _pictures(torch, config, hf_config, batch, images, torch_dtype)
                next_ids, logits = _prefill(torch, model, cache, batch, ctx, chunk, pictures)
                results.append(_phase("prefill", tracker, phase_start))
                if last >= 2:
                    tracker.reset_peak()
                    phase_start = time.perf_counter()
                    for _ in range(decode_steps):
                        next_ids, logits = _step(model, cache, next_ids, logits)
                    results.append(_phase("decode", tracker, phase_start))
                del logits, next_ids, cache
            del model
    kernel = _attention_kernel(tracker.ops_seen, attn, device)
    return TraceRun(phases=tuple(r for r in results if r.name in phases), device=device,
                    attention_kernel=kernel, fake=fake, seconds=time.perf_counter() - started,
                    rss_bytes=_peak_rss_bytes())


def _trace_encoder(torch: Any, transformers: Any, config: Mapping[str, Any], hf_config: Any,
                   torch_dtype: Any, *, ctx: int, batch: int, attn: str, last: int,
                   fake: bool) -> TraceRun:
    """An encoder (an embedding or rerank batch): load, then one forward over batch × ctx.

    It keeps no cache and generates nothing, so there is no decode phase."""
    from vramest.tracing.tracking import PARAMS, LiveBytesTracker

    started = time.perf_counter()
    archs = config.get("architectures")
    cls = getattr(transformers, str(archs[0]), None) if isinstance(archs, list) and archs else None
    results: list[PhaseResult] = []
    with _fake_mode(torch, fake):
        tracker = LiveBytesTracker()
        with tracker, torch.no_grad():
            phase_start = time.perf_counter()
            try:
                if cls is not None:
                    model = cls._from_config(hf_config, dtype=torch_dtype,
                                             attn_implementation=attn)
                else:
                    model = transformers.AutoModel.from_config(
                        hf_config, dtype=torch_dtype, attn_implementation=attn)
            except ValueError as exc:
                raise UnsupportedAttention(f"transformers {transformers.__version__} cannot "
                                           f"build {hf_config.model_type!r} with {attn} "
                                           f"attention: {str(exc).splitlines()[0]}") from exc
            model = model.eval()
            tracker.label(_state_tensors(model), PARAMS)
            results.append(_load_phase(tracker, phase_start))
            if last >= 1:
                tracker.reset_peak()
                phase_start = time.perf_counter()
                ids = torch.zeros(batch, ctx, dtype=torch.long)
                out = model(input_ids=ids)
                del out, ids
                results.append(_phase("prefill", tracker, phase_start))
            del model
    return TraceRun(phases=tuple(results), device="cpu",
                    attention_kernel=_attention_kernel(tracker.ops_seen, attn, "cpu"), fake=fake,
                    seconds=time.perf_counter() - started, rss_bytes=_peak_rss_bytes())


def _trace_seq2seq(torch: Any, transformers: Any, hf_config: Any, torch_dtype: Any, *,
                   ctx: int, batch: int, attn: str, last: int, fake: bool,
                   untied_head: bool = False) -> TraceRun:
    """An encoder-decoder: load; then the encoder over `ctx` input tokens and the decoder over
    `ctx` tokens in one forward (a decoder prompt as long as the input), keeping the self- and
    cross-attention caches and the last position's logits, as generate() would at that point.

    `untied_head`: the checkpoint stores its own lm_head (T5 v1.1, Flan-T5: their config says
    tie_word_embeddings false and the safetensors hold lm_head.weight), which transformers 5's
    T5Config ties to the embedding regardless; the trace gives the head its own tensor again so
    that it holds what loading the checkpoint's files holds."""
    from transformers import DynamicCache, EncoderDecoderCache

    from vramest.tracing.tracking import KV_CACHE, PARAMS, LiveBytesTracker

    started = time.perf_counter()
    results: list[PhaseResult] = []
    with _fake_mode(torch, fake):
        tracker = LiveBytesTracker()
        with tracker, torch.no_grad():
            phase_start = time.perf_counter()
            model = transformers.AutoModelForSeq2SeqLM.from_config(
                hf_config, dtype=torch_dtype, attn_implementation=attn).eval()
            head = model.get_output_embeddings()
            if untied_head and head is not None and \
                    head.weight is model.get_input_embeddings().weight:
                head.weight = torch.nn.Parameter(torch.empty_like(head.weight),
                                                 requires_grad=False)
            tracker.label(_state_tensors(model), PARAMS)
            results.append(_load_phase(tracker, phase_start))
            if last >= 1:
                cache = EncoderDecoderCache(DynamicCache(config=hf_config),
                                            DynamicCache(config=hf_config))
                tracker.watch(KV_CACHE, lambda: [*_cache_tensors(cache.self_attention_cache),
                                                 *_cache_tensors(cache.cross_attention_cache)])
                tracker.reset_peak()
                phase_start = time.perf_counter()
                ids = torch.zeros(batch, ctx, dtype=torch.long)
                encoded = model.get_encoder()(input_ids=ids)
                # the decoder, then the head on the last position only: the conditional-
                # generation class computes logits for every decoder position
                out = model.get_decoder()(input_ids=ids,
                                          encoder_hidden_states=encoded.last_hidden_state,
                                          past_key_values=cache, use_cache=True)
                last_hidden = out.last_hidden_state[:, -1:, :]
                logits = model.lm_head(last_hidden)[:, -1, :].to(copy=True, dtype=torch.float32)
                del out, ids, last_hidden
                results.append(_phase("prefill", tracker, phase_start))
                del logits, encoded, cache
            del model
    return TraceRun(phases=tuple(results), device="cpu",
                    attention_kernel=_attention_kernel(tracker.ops_seen, attn, "cpu"), fake=fake,
                    seconds=time.perf_counter() - started, rss_bytes=_peak_rss_bytes())


def _import_torch() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise InputError(INSTALL_HINT) from exc
    return torch, transformers


def supported_families(transformers: Any) -> list[str]:
    """Catalog families the installed transformers can build."""
    from vramest.model.catalog import default_catalog

    known = set(transformers.models.auto.configuration_auto.CONFIG_MAPPING_NAMES)
    return sorted({e.family for e in default_catalog().entries if e.family in known})


def _hf_config(transformers: Any, config: Mapping[str, Any]) -> Any:
    values = {k: v for k, v in config.items() if k not in ("model_type", "architectures",
                                                            "auto_map", "quantization_config")}
    model_type = str(config.get("model_type", ""))
    known = transformers.models.auto.configuration_auto.CONFIG_MAPPING_NAMES
    if model_type not in known:
        raise InputError(f"The installed transformers {transformers.__version__} does not "
                         f"implement {model_type or 'this architecture'!r} (trust_remote_code "
                         f"stays off); trace mode supports: "
                         f"{', '.join(supported_families(transformers))}.")
    return transformers.AutoConfig.for_model(model_type, **values)


def _build(transformers: Any, hf_config: Any, torch_dtype: Any, attn: str, *,
           multimodal: bool = False) -> Any:
    auto = (transformers.AutoModelForImageTextToText if multimodal
            else transformers.AutoModelForCausalLM)
    # fake tensors hold no data for a truncated-normal init to draw into (SigLIP's towers)
    no_init: Any = contextlib.nullcontext()
    if multimodal:
        from transformers.initialization import no_init_weights

        no_init = no_init_weights()
    try:
        with no_init:
            model = auto.from_config(hf_config, dtype=torch_dtype, attn_implementation=attn)
        if multimodal:
            model.tie_weights()  # no_init_weights skips the tying as well
    except ValueError as exc:
        if "attention implementation" in str(exc):
            other = next(a for a in TRACE_ATTENTION if a != attn)
            raise UnsupportedAttention(
                f"transformers {transformers.__version__} does not implement {attn} attention "
                f"for {hf_config.model_type!r}; try --attn {other}.") from exc
        raise InputError(f"transformers cannot build a causal LM for {hf_config.model_type!r}: "
                         f"{str(exc).splitlines()[0]}") from exc
    return model.eval()


def _state_tensors(model: Any) -> Iterator[Any]:
    yield from model.parameters()
    yield from model.buffers()


def _cache_tensors(cache: Any) -> Iterator[Any]:
    """The cache's per-sequence state; 0-d bookkeeping (transformers 5.25's position counter
    `cumulative_length_linear`, 8 bytes per recurrent layer) is not KV or state."""
    import torch

    for layer in getattr(cache, "layers", ()):
        for value in vars(layer).values():
            if isinstance(value, torch.Tensor) and value.dim():
                yield value
            elif isinstance(value, dict):  # recurrent layers: conv and SSM states by index
                yield from (v for v in value.values() if isinstance(v, torch.Tensor))


@frozen
class _Pictures:
    """A vision-language prompt's pictures: their pixels and where their tokens sit."""

    pixel_values: Any
    token_id: int
    per_image: int  # image tokens of one picture (the markers around them are text tokens)
    count: int


def _pictures(torch: Any, config: Mapping[str, Any], hf_config: Any, batch: int, images: int,
              torch_dtype: Any) -> _Pictures | None:
    """Gemma 3: `mm_tokens_per_image` image tokens per picture, pixels at the tower's size."""
    if not images or str(config.get("model_type")) not in TRACE_VISION_FAMILIES:
        return None
    side = int(hf_config.vision_config.image_size)
    pixels = torch.zeros(batch * images, 3, side, side, dtype=torch_dtype)
    return _Pictures(pixels, int(hf_config.image_token_index),
                     int(hf_config.mm_tokens_per_image), images)


def _prefill(torch: Any, model: Any, cache: Any, batch: int, ctx: int,
             chunk: int, pictures: _Pictures | None = None) -> tuple[Any, Any]:
    """The prompt in chunks, keeping the last position's logits in fp32 as generate() does.
    Pictures go in with the first chunk: each one's marker, image tokens and end marker."""
    logits = None
    done = 0
    while done < ctx:
        size = min(chunk, ctx - done)
        ids = torch.zeros(batch, size, dtype=torch.long)
        extra: dict[str, Any] = {}
        if pictures is not None and done == 0:
            span = pictures.per_image + 2
            for i in range(pictures.count):
                ids[:, i * span + 1:(i + 1) * span - 1] = pictures.token_id
            extra["pixel_values"] = pictures.pixel_values
        with _placeholder_check_off(model, fake=pictures is not None):
            out = model(input_ids=ids, **_cache_kwarg(model, cache, ids), use_cache=True,
                        logits_to_keep=1, **extra)
        _keep_state(out, cache)
        logits = out.logits[:, -1, :].to(copy=True, dtype=torch.float32)
        del out, ids
        done += size
    assert logits is not None
    return logits.argmax(dim=-1, keepdim=True), logits


@contextlib.contextmanager
def _placeholder_check_off(model: Any, *, fake: bool) -> Iterator[None]:
    """Gemma 3 checks that the image tokens match the image features by counting them, which
    needs tensor data a fake tensor has not; the trace places exactly that many itself."""
    import sys
    from unittest import mock

    module = sys.modules.get(type(getattr(model, "model", model)).__module__)
    if not fake or module is None or not hasattr(module, "torch_compilable_check"):
        yield
        return
    with mock.patch.object(module, "torch_compilable_check", lambda *args, **kwargs: None):
        yield


class _ReturnedState:
    """RWKV-4 keeps no Cache object: each forward takes the previous `state` (five tensors) and
    returns the next in its output, which generate() carries to the following step. Held here
    between forwards, and read like a cache (`_cache_tensors`)."""

    def __init__(self) -> None:
        self.tensors: dict[int, Any] = {}
        self.layers = [self]  # one "layer" whose dict attribute holds every state tensor


def _takes_state(model: Any) -> bool:
    import inspect

    return "state" in inspect.signature(model.forward).parameters


def _keep_state(out: Any, cache: Any) -> None:
    if isinstance(cache, _ReturnedState):
        cache.tensors = dict(enumerate(getattr(out, "state", None) or ()))


def _cache_kwarg(model: Any, cache: Any, ids: Any) -> dict[str, Any]:
    """Recurrent models (Mamba-2, Nemotron-H) take the cache as `cache`, RWKV-4 its returned
    `state`, the rest `past_key_values`; a model given the wrong name builds its own, unwatched."""
    if isinstance(cache, _ReturnedState):
        if not cache.tensors:  # RwkvModel.forward's initial state, made here to be watched
            import torch

            shape = (ids.shape[0], model.config.hidden_size, model.config.num_hidden_layers)
            cache.tensors = {i: torch.zeros(*shape, dtype=model.dtype if i <= 1
                                            else torch.float32) for i in range(5)}
            cache.tensors[4] -= 1e30
        return {"state": list(cache.tensors.values())}
    import inspect

    names = inspect.signature(model.forward).parameters
    return {"past_key_values" if "past_key_values" in names else "cache": cache}


def _step(model: Any, cache: Any, next_ids: Any, logits: Any) -> tuple[Any, Any]:
    """One decode step; the previous step's fp32 logits stay live through it, as in generate()."""
    import torch

    out = model(input_ids=next_ids, **_cache_kwarg(model, cache, next_ids), use_cache=True,
                logits_to_keep=1)
    _keep_state(out, cache)
    logits = out.logits[:, -1, :].to(copy=True, dtype=torch.float32)
    del out
    return logits.argmax(dim=-1, keepdim=True), logits


def _phase(name: str, tracker: Any, started: float) -> PhaseResult:
    from vramest.tracing.tracking import ACTIVATIONS, KV_CACHE, PARAMS

    peak = tracker.peak
    return PhaseResult(name=name, peak_bytes=peak.bytes, params_bytes=peak.part(PARAMS),
                       kv_cache_bytes=peak.part(KV_CACHE),
                       activations_bytes=peak.part(ACTIVATIONS), peak_op=peak.op,
                       seconds=time.perf_counter() - started)


def _load_phase(tracker: Any, started: float) -> PhaseResult:
    """Parameters are named only once built: the load peak is the parameters + any transient."""
    from vramest.tracing.tracking import PARAMS

    peak = tracker.peak
    params = min(tracker.bytes_by_label()[PARAMS], peak.bytes)
    return PhaseResult(name="load", peak_bytes=peak.bytes, params_bytes=params, kv_cache_bytes=0,
                       activations_bytes=peak.bytes - params, peak_op=peak.op,
                       seconds=time.perf_counter() - started)


class _NoMode:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _fake_mode(torch: Any, fake: bool) -> Any:
    if not fake:
        return _NoMode()
    from torch._subclasses.fake_tensor import FakeTensorMode

    return FakeTensorMode()


@contextlib.contextmanager
def _grouped_mm_fallback(needed: bool) -> Iterator[None]:
    """Route MoE experts to transformers' grouped-mm fallback op in non-bf16 fake traces.

    torch's meta kernel for `_grouped_mm` accepts bf16 only (the CUDA kernel's constraint)
    although the CPU kernel runs fp32 too; transformers' fallback op allocates the same
    (tokens × top_k, out) output and has a fake implementation.
    """
    if not needed:
        yield
        return
    from unittest import mock

    try:
        from transformers.integrations import moe
    except ImportError:
        yield
        return
    if not hasattr(moe, "_can_use_grouped_mm"):
        yield
        return
    with mock.patch.object(moe, "_can_use_grouped_mm", lambda *args, **kwargs: False):
        yield


def _attention_kernel(ops_seen: Iterable[str], attn: str, device: str) -> str:
    fused = sorted(op for op in ops_seen if "scaled_dot_product" in op)
    if attn == "eager":
        return "eager: matmul + softmax, the scores are materialised"
    if fused:
        implied = ("a fused kernel that never materialises the scores, like CUDA's flash and "
                   "memory-efficient kernels" if any("flash" in op for op in fused) else
                   MATH_FALLBACK)
        return f"{device} sdpa via {', '.join(fused)}: {implied}"
    return f"{device} sdpa: no fused kernel accepted the inputs, {MATH_FALLBACK}"


def _peak_rss_bytes() -> int:
    """The process's peak resident set size (bytes)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


# --- stored traces (torch-free) ------------------------------------------------------------
@frozen
class StoredTrace:
    """One row of vramest/validation/traces/*.json: settings and the traced prefill peak."""

    model: str
    dtype: str
    ctx: int
    batch: int
    attention: str
    prefill_chunk: int
    attention_kernel: str
    prefill_peak_bytes: int
    params_bytes: int
    kv_cache_bytes: int
    activations_bytes: int
    images: int = 0  # pictures per sequence at the vision tower's size, beside ctx text tokens

    @property
    def label(self) -> str:
        chunk = f" chunk {self.prefill_chunk}" if self.prefill_chunk < self.ctx else ""
        pictures = f" + {self.images} image" if self.images else ""
        return (f"{self.model} {self.dtype} ctx {self.ctx}{pictures}{chunk} batch {self.batch} "
                f"{self.attention}")

    @property
    def comparable(self) -> bool:
        """False where the CPU trace took a kernel path a GPU would not (sdpa math fallback):
        the analytic model assumes sdpa runs a fused kernel."""
        return MATH_FALLBACK not in self.attention_kernel


@frozen
class TraceComparison:
    row: StoredTrace
    analytic_bytes: int

    @property
    def error(self) -> float:
        """Relative difference of the analytic peak from the traced peak."""
        return (self.analytic_bytes - self.row.prefill_peak_bytes) / self.row.prefill_peak_bytes


def load_traces(trace_dir: str | Path = TRACE_DIR) -> list[StoredTrace]:
    rows: list[StoredTrace] = []
    for path in sorted(Path(trace_dir).glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for item in data.get("traces", []):
            s, prefill = item["settings"], item["phases"]["prefill"]
            rows.append(StoredTrace(
                model=item["model"], dtype=s["dtype"], ctx=s["ctx"], batch=s["batch"],
                attention=s["attention"], prefill_chunk=s.get("prefill_chunk", s["ctx"]),
                attention_kernel=item.get("attention_kernel", ""),
                prefill_peak_bytes=prefill["peak_bytes"], params_bytes=prefill["params_bytes"],
                kv_cache_bytes=prefill["kv_cache_bytes"],
                activations_bytes=prefill["activations_bytes"], images=s.get("images", 0)))
    return rows


def compare_traces(rows: Iterable[StoredTrace]) -> list[TraceComparison]:
    """The analytic peak beside each comparable stored row (see `StoredTrace.comparable`)."""
    return [TraceComparison(row, analytic_peak(row.model, row.dtype, row.ctx, row.batch,
                                               row.attention, row.prefill_chunk, row.images)[0])
            for row in rows if row.comparable]


def trace_accuracy_report(trace_dir: str | Path = TRACE_DIR) -> list[str]:
    """Analytic vs traced prefill peak per stored row, then the median and worst error."""
    rows = load_traces(trace_dir)
    comparisons = compare_traces(rows)
    if not comparisons:
        return [f"no stored traces in {trace_dir}"]
    skipped = [r for r in rows if not r.comparable]
    width = max(len(c.row.label) for c in comparisons)
    lines = [f"{'trace (prefill peak)':{width}}  {'analytic':>11}  {'traced':>11}  {'error':>7}"]
    for c in comparisons:
        lines.append(f"{c.row.label:{width}}  {format_bytes(c.analytic_bytes):>11}  "
                     f"{format_bytes(c.row.prefill_peak_bytes):>11}  {100 * c.error:+6.2f}%")
    errors = [abs(c.error) for c in comparisons]
    worst = max(comparisons, key=lambda c: abs(c.error))
    lines.append(f"analytic vs trace: {len(comparisons)} rows, median |error| "
                 f"{100 * statistics.median(errors):.2f}%, worst {100 * worst.error:+.2f}% "
                 f"({worst.row.label})")
    if skipped:
        lines.append(f"not compared: {len(skipped)} rows where CPU sdpa fell back to the math "
                     f"path ({', '.join(sorted({r.model for r in skipped}))})")
    return lines
