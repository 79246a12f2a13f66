"""The public estimate: resolve the model, add up one replica's memory, place it on hardware.
The CLI is a thin layer on this."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from vramest.errors import InputError, require_text
from vramest.inference.constants import DEFAULTS, Constants
from vramest.inference.deploy import place
from vramest.inference.estimate import Estimate, estimate_for
from vramest.model.resolve import SHAPE_OVERRIDES, resolve_model
from vramest.units import MAX_SHAPE_SIZE, parse_positive_int


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
             profile: str | None = None, **shape_overrides: int | None) -> Estimate:
    """Estimate the memory a model needs for inference, and with `gpu` whether and how fast it
    runs there (or, with `compare_gpus`, the fewest cards of each common GPU). `profile`, a
    calibration profile (`vramest calibrate`), replaces the constants it fitted; with
    `gpu="local"` (or its device's name) speed uses the device figures it measured. Unset, the
    profile stored for this machine is used if there is one (as the CLI does); "none" keeps
    the shipped constants. The answer says which (`assumptions`, JSON `profile`).

    >>> estimate(params="70B", dtype="int4", ctx=8192).memory.total  # doctest: +SKIP
    """
    require_text(model=model, dtype=dtype, kv_dtype=kv_dtype, family=family, attention=attention,
                 gpu=gpu, engine=engine, hardware_file=hardware_file, profile=profile)
    engine = engine or "generic"
    unknown = set(shape_overrides) - set(SHAPE_OVERRIDES)
    if unknown:
        raise InputError(f"Unknown shape override(s) {', '.join(sorted(unknown))}; accepted: "
                         f"{', '.join(SHAPE_OVERRIDES)}.")
    shape_overrides = {name: None if value is None else parse_positive_int(
        value, what=name, maximum=MAX_SHAPE_SIZE) for name, value in shape_overrides.items()}
    info = resolve_model(params=params, model=model, family=family, active_params=active_params,
                         overrides=shape_overrides)
    calibration = None
    engine_costs: dict[str, dict[str, float]] = {}
    path, choice = _choose_profile(profile, constants is not None)
    if path is not None:
        from vramest.calibration.profile import load_profile

        loaded = load_profile(path)
        precision = dtype or info.native_format or info.stored_format
        constants, constants_source = loaded.apply(constants or DEFAULTS, precision), loaded.source
        calibration = loaded.calibration_json(precision)
        gpu, hardware_file = loaded.placement(gpu, hardware_file)
        engine_costs = loaded.engine_for(precision)
    result = estimate_for(info, dtype=dtype, ctx=ctx, batch=batch, kv_dtype=kv_dtype,
                          attention=attention, prefill_chunk=prefill_chunk,
                          constants=constants, constants_source=constants_source)
    extras = {**result.extras, "profile": {"path": path, "chosen": choice}}
    if calibration is not None:
        extras["calibration"] = calibration
    result = replace(result, extras=extras,
                     assumptions=(*result.assumptions, _PROFILE_NOTES[choice].format(path=path)))
    options = {k: v for k, v in (engine_options or {}).items() if v is not None}
    if gpu is None and not compare_gpus and not options and engine not in (
            "llamacpp", "llamacpp-cli", "vllm"):
        return result
    return place(result, gpu=gpu, num_gpus=num_gpus, pp=pp, reserve=reserve, max_ctx=max_ctx,
                 max_batch=max_batch, prompt=prompt, gen=gen, engine=engine,
                 hardware_file=hardware_file, engine_options=options, engine_costs=engine_costs,
                 compare_gpus=compare_gpus)




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
    from vramest.calibration.profile import find_matching_profile

    found = find_matching_profile()
    return (None, "none stored") if found is None else (str(found), "stored")
