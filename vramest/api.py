"""The public estimate: resolve the model, add up one replica's memory, place it on hardware.
The CLI is a thin layer on this."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType

from vramest.errors import InputError, require_text
from vramest.frozen import TYPE_CHECKING, NamedTuple, replace
from vramest.inference.constants import DEFAULTS, Constants
from vramest.inference.deploy import Deployment, place
from vramest.inference.estimate import DEFAULT_CTX, Estimate, estimate_for
from vramest.model.resolve import SHAPE_OVERRIDES, catalog_name, resolve_model
from vramest.units import MAX_SHAPE_SIZE, parse_positive_int, parse_tokens

if TYPE_CHECKING:  # loaded only when a request carries them: the common estimate never does
    from typing import Any

    from vramest.inference.lora import LoraServing
    from vramest.inference.speculative import Speculation
    from vramest.model.vision import ImageRequest


class ModelQuery(NamedTuple):
    """Which model: a catalog name, a config or model files, a hub id, or a parameter count."""

    params: str | int | None = None
    model: str | None = None
    family: str = "llama"  # the catalog series a bare parameter count borrows its shape from
    active_params: str | int | None = None
    overrides: tuple[tuple[str, int | None], ...] = ()  # shape overrides: (name, value)


class RunSettings(NamedTuple):
    """How one replica runs: precision, context, batch, attention, prefill chunk."""

    dtype: str | None = None  # default: the model's own
    kv_dtype: str | None = None  # default: the compute precision
    ctx: str | int | None = None
    batch: str | int = 1
    attention: str = "sdpa"
    prefill_chunk: str | int | None = None
    images: ImageRequest | None = None  # pictures in a vision-language model's context
    lora: LoraServing | None = None  # vLLM --enable-lora slots (inference/lora.py)
    speculation: Speculation | None = None  # a draft model or head (inference/speculative.py)


class EstimateRequest(NamedTuple):
    """One estimate, as asked: which model, how it runs, where it is deployed, and whose
    constants (a calibration profile, or the caller's own)."""

    model: ModelQuery
    run: RunSettings = RunSettings()
    deployment: Deployment = Deployment()
    profile: str | None = None
    constants: Constants | None = None
    constants_source: str = "defaults"


def estimate(*, params: str | int | None = None, model: str | None = None,
             dtype: str | None = None, ctx: str | int | None = None, batch: str | int = 1,
             kv_dtype: str | None = None, active_params: str | int | None = None,
             family: str = "llama", attention: str = "sdpa",
             prefill_chunk: str | int | None = None, constants: Constants | None = None,
             constants_source: str = "defaults", gpu: str | None = None,
             num_gpus: int | str = 1, pp: int | str = 1, reserve: str | float | None = None,
             max_ctx: bool = False, max_batch: bool = False, prompt: str | int | None = None,
             gen: str | int = 128, engine: str = "generic", hardware_file: str | None = None,
             compare_gpus: bool = False, engine_options: dict[str, Any] | None = None,
             profile: str | None = None, images: ImageRequest | None = None,
             lora: LoraServing | None = None, speculation: Speculation | None = None,
             host_memory: str | None = None, **shape_overrides: int | None) -> Estimate:
    """Estimate the memory a model needs for inference, and with `gpu` whether and how fast it
    runs there (or, with `compare_gpus`, the fewest cards of each common GPU). The keyword form
    of `run(EstimateRequest(...))`. `profile`, a calibration profile (`vramest calibrate`),
    replaces the constants it fitted; with `gpu="local"` (or its device's name) speed uses the
    device figures it measured. Unset, the profile stored for this machine is used if there is
    one (as the CLI does); "none" keeps the shipped constants. The answer says which
    (`assumptions`, JSON `profile`). `images` adds each picture's tokens to the context.
    `lora` (`vramest.inference.lora.lora_serving(...)`) adds vLLM's adapter slots;
    `speculation` (`vramest.inference.speculative.speculation(...)`) a proposer's memory and
    the decode speed at its acceptance rate.

    >>> estimate(params="70B", dtype="int4", ctx=8192).memory.total  # doctest: +SKIP
    """
    if engine_options is not None and not (isinstance(engine_options, dict) and all(
            isinstance(k, str) for k in engine_options)):
        raise InputError("engine_options must be a dict of option name → value, such as "
                         "{\"gpu_memory_utilization\": 0.9}, or None.")
    options = tuple((k, v) for k, v in (engine_options or {}).items() if v is not None)
    return run(EstimateRequest(
        ModelQuery(params, model, family, active_params, tuple(shape_overrides.items())),
        RunSettings(dtype, kv_dtype, ctx, batch, attention, prefill_chunk, images, lora,
                    speculation),
        Deployment(gpu, num_gpus, pp, reserve, max_ctx, max_batch, compare_gpus, hardware_file,
                   engine or "generic", options, prompt, gen, host_memory),
        profile, constants, constants_source))


def run(request: EstimateRequest) -> Estimate:
    """The estimate for a request: resolve the model, add up one replica's memory, and place it
    on hardware when the deployment asks for it. The same request gives the same (immutable)
    answer, so one that reads no file is answered once and remembered: a search or the web page
    asks for the same point again and again."""
    _check_types(request)
    path, choice = _choose_profile(request.profile, request.constants is not None)
    if path is None and _reads_no_file(request):
        try:
            hash(request)
        except TypeError:  # junk from the API: the uncached path says what is wrong
            return _run(request, path, choice)
        return _run_remembered(request, choice)
    return _run(request, path, choice)


def _check_types(request: EstimateRequest) -> None:
    """Text is text and constants are Constants: one sentence, not an AttributeError later."""
    query, settings, deployment = request.model, request.run, request.deployment
    require_text(model=query.model, dtype=settings.dtype, kv_dtype=settings.kv_dtype,
                 family=query.family, attention=settings.attention, gpu=deployment.gpu,
                 engine=deployment.engine, hardware_file=deployment.hardware_file,
                 host_memory=deployment.host_memory,
                 profile=request.profile, constants_source=request.constants_source)
    if settings.lora is not None or settings.speculation is not None:
        from vramest.inference.lora import LoraServing
        from vramest.inference.speculative import Speculation

        for name, value, kind in (("lora", settings.lora, LoraServing),
                                  ("speculation", settings.speculation, Speculation)):
            if value is not None and not isinstance(value, kind):
                raise InputError(f"{name} must be a {kind.__module__}.{kind.__name__} or None.")
    if request.constants is not None and not isinstance(request.constants, Constants):
        raise InputError("constants must be a vramest.inference.constants.Constants (DEFAULTS "
                         "with values replaced) or None.")


def _reads_no_file(request: EstimateRequest) -> bool:
    """A catalog name or a count, the shipped GPU table, no local device: nothing on disk that
    could change between two calls (a stored profile is looked up before, by its folder)."""
    model, gpu = request.model.model, request.deployment.gpu
    draft = getattr(request.run.speculation, "draft", None)
    if isinstance(draft, str) and catalog_name(draft) is None:
        return False  # a draft model read from files
    return (request.deployment.hardware_file is None
            and not (isinstance(gpu, str) and gpu.strip().lower() == "local")
            and (model is None or (isinstance(model, str) and catalog_name(model) is not None)))


@lru_cache(maxsize=4096)
def _run_remembered(request: EstimateRequest, choice: str) -> Estimate:
    return _run(request, None, choice)


def _run(request: EstimateRequest, path: str | None, choice: str) -> Estimate:
    query, settings, deployment = request.model, request.run, request.deployment
    if "=" in deployment.engine or "@" in deployment.engine:  # "vllm==0.6.3"
        from vramest.inference.engines.aliases import named_release

        engine, options = named_release(deployment.engine, deployment.engine_options)
        deployment = deployment._replace(engine=engine, engine_options=options)
    if deployment.engine != "generic" and (settings.ctx is not None or settings.batch != 1
                                           or settings.kv_dtype is not None):
        from vramest.inference.engines.run_flags import with_run_settings

        deployment = deployment._replace(engine_options=with_run_settings(
            deployment.engine, deployment.engine_options, settings.ctx, settings.batch,
            settings.kv_dtype))
    unknown = {name for name, _ in query.overrides} - set(SHAPE_OVERRIDES)
    if unknown:
        raise InputError(f"Unknown shape override(s) {', '.join(sorted(unknown))}; accepted: "
                         f"{', '.join(SHAPE_OVERRIDES)}.")
    overrides = {name: None if value is None else parse_positive_int(
        value, what=name, maximum=MAX_SHAPE_SIZE) for name, value in query.overrides}
    info = resolve_model(params=query.params, model=query.model, family=query.family,
                         active_params=query.active_params, overrides=overrides)
    library_note = ""
    if settings.dtype is None and info.library_default and info.native_format:
        from vramest.inference.engines.loaded_precision import checkpoint_instead

        own = resolve_model(model=info.name).native_format
        weights, library_note = checkpoint_instead(deployment.engine, info.native_format, own)
        info = replace(info, native_format=weights, library_default=weights != own)
    if settings.dtype is None and info.stored_format is None and \
            deployment.engine in ("ollama", "hf"):
        from vramest.inference.engines.loaded_precision import engine_precision

        by_engine = engine_precision(deployment.engine, dict(deployment.engine_options),
                                     info.native_format)
        if by_engine is not None:
            info = replace(info, native_format=by_engine[0])
            library_note = by_engine[1]
    constants, constants_source = request.constants, request.constants_source
    calibration = None
    engine_costs: dict[str, dict[str, float]] = {}
    if path is not None:
        from vramest.calibration.profile import load_profile

        loaded = load_profile(path)
        precision = settings.dtype or info.native_format or info.stored_format
        constants, constants_source = loaded.apply(constants or DEFAULTS, precision), loaded.source
        calibration = loaded.calibration_json(precision)
        gpu, hardware_file = loaded.placement(deployment.gpu, deployment.hardware_file)
        deployment = deployment._replace(gpu=gpu, hardware_file=hardware_file)
        engine_costs = loaded.engine_for(precision)
        collectives = loaded.collective_constants() if loaded.measured_device(gpu) else {}
        if collectives:
            constants = constants.with_values(collectives)
            calibration = {**calibration, "collectives": collectives}
    ctx, image_note = settings.ctx, ""
    if settings.images is not None:
        ctx, image_note = _with_images(query.model, info.shape.max_context, ctx, settings.images)
    dtype, dtype_note = settings.dtype, ""
    if dtype is None:
        from vramest.inference.engines.startup import engine_dtype

        dtype = engine_dtype(deployment.engine, info.native_format, info.shape.family)
        if dtype:
            dtype_note = (f"{deployment.engine} runs this float32 checkpoint in {dtype} (its "
                          "dtype 'auto'); --dtype changes it.")
    result = estimate_for(info, dtype=dtype, ctx=ctx, batch=settings.batch,
                          kv_dtype=settings.kv_dtype, attention=settings.attention,
                          prefill_chunk=settings.prefill_chunk, constants=constants,
                          constants_source=constants_source)
    if settings.images is not None:
        result = _with_vision_tower(result, query.model, settings.images)
    for note in (image_note, library_note, dtype_note):
        if note:
            result = replace(result, assumptions=(*result.assumptions, note))
    if settings.lora is not None or settings.speculation is not None:
        from vramest.inference.serving_extras import ServingExtras, apply_memory, for_model

        result = apply_memory(result, for_model(ServingExtras(settings.lora,
                                                              settings.speculation),
                                                query.model, info.name))
    extras = {**result.extras, "profile": {"path": path, "chosen": choice}}
    if calibration is not None:
        extras["calibration"] = calibration
    notes = [_PROFILE_NOTES[choice].format(path=path)]
    if calibration is not None and calibration.get("collectives"):
        c = calibration["collectives"]
        notes.append(f"Tensor-parallel all-reduce: latency {c['allreduce_latency_s'] * 1e6:.1f} us "
                     f"and bus bandwidth {c['allreduce_bus_bytes_s'] / 1e9:.3g} GB/s, fitted by "
                     f"`vramest calibrate --nproc-per-node` on this device ({calibration['path']}).")
    result = replace(result, extras=MappingProxyType(extras),  # read-only: answers are shared
                     assumptions=(*result.assumptions, *notes))
    if not deployment.needs_hardware:
        return result
    return place(result, deployment, engine_costs)


def _with_images(model: str | None, max_context: int | None, ctx: str | int | None,
                 images: ImageRequest) -> tuple[int, str]:
    """The context with the pictures' tokens added to the text's, and the sentence saying so."""
    from vramest.model.vision import fixed_size_tower, image_tokens, model_config

    counted = image_tokens(model_config(model), images.width, images.height)
    text = parse_tokens(ctx) if ctx is not None else min(DEFAULT_CTX, max_context or DEFAULT_CTX)
    added = images.count * counted.per_image
    tower = ("the vision tower's own activations are counted (its peak beside the text "
             "forward's)" if fixed_size_tower(model_config(model)) else
             "the vision tower's own activations are not counted (its patches follow each "
             "picture's size)")
    return text + added, (f"Images: {images.count} × {images.width}x{images.height} = {added} "
                          f"tokens added to the {text} text tokens ({counted.rule}); {tower}.")


def _with_vision_tower(result: Estimate, model: str | None, images: ImageRequest) -> Estimate:
    """Activations as the larger of the text forward and a fixed-size tower's own forward."""
    from vramest.inference.memory import with_vision_tower
    from vramest.model.precisions import weight_format
    from vramest.model.vision import fixed_size_tower, model_config, tower_pictures

    tower = fixed_size_tower(model_config(model))
    if tower is None:
        return result
    act = weight_format(result.settings.dtype).compute_bytes
    part = with_vision_tower(result.memory.activations, tower,
                             tower_pictures(model_config(model), images) * result.settings.batch,
                             act,
                             result.settings.attention, result.constants)
    return replace(result, memory=replace(result.memory, activations=part))


_PROFILE_NOTES = {
    "given": "Constants: the calibration profile {path}, as asked.",
    "stored": "Constants: the calibration profile stored for this machine, {path} (--profile "
              "none for the shipped ones).",
    "none": "Constants: the shipped defaults, as asked.",
    "none stored": "Constants: the shipped defaults; no calibration profile of this machine is "
                   "stored (`vramest calibrate` makes one).",
    "explicit": "Constants: as passed by the caller.",
}


def _choose_profile(profile: str | None, constants_given: bool) -> tuple[str | None, str]:
    """(the profile to load, how it was chosen): the CLI and the API choose alike."""
    if profile is not None:
        if profile.strip().lower() == "none":
            return None, "none"
        return profile, "given"
    if constants_given:  # a caller's own constants are not silently replaced
        return None, "explicit"
    found = _stored_profile(_profile_dir())
    return (None, "none stored") if found is None else (found, "stored")


def _profile_dir() -> str:
    """Where stored profiles live (calibration.profile.user_profile_dir, without pathlib: this
    runs on every estimate)."""
    env = os.environ.get("VRAMEST_PROFILE_DIR")
    if env:
        return env
    root = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(root, "vramest", "profiles")


def _stored_profile(folder: str) -> str | None:
    try:
        changed = os.stat(folder).st_mtime_ns  # a profile written or removed changes the folder
    except OSError:
        return None
    return _matching_profile(folder, changed)


@lru_cache(maxsize=8)
def _matching_profile(folder: str, _changed: int) -> str | None:
    from vramest.calibration.profile import find_matching_profile

    found = find_matching_profile(Path(folder))
    return None if found is None else str(found)
