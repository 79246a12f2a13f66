"""Checking deployments: estimate each one, then judge it against its headroom, its speed floors
and, where given, the baseline."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from vramest.capacity.baseline import (
    DEFAULT_TOLERANCE,
    Baseline,
    Drift,
    compare,
    load_baseline,
    parse_tolerance,
)
from vramest.capacity.spec import (
    CapacitySpec,
    Deployment,
    SpecError,
    SpecProblem,
    load_spec,
    parse_spec,
)
from vramest.errors import InputError, short
from vramest.frozen import TYPE_CHECKING, frozen
from vramest.units import format_bytes

if TYPE_CHECKING:
    from typing import Any


@frozen
class Figures:
    """What a deployment was judged on."""

    gpu: str
    num_gpus: int
    tensor_parallel: int
    pipeline_parallel: int
    per_gpu_bytes: int
    usable_bytes: int
    headroom_bytes: int  # usable − per GPU
    required_headroom_bytes: int
    total_bytes: int  # the whole model's memory, before it is split over GPUs
    decode_tokens_per_s: float | None  # per sequence
    decode_tokens_per_s_total: float | None
    prefill_tokens_per_s: float | None
    time_to_first_token_s: float | None
    # vLLM: the sequences of max_model_len tokens its KV cache holds at once, and its tokens
    kv_cache_tokens: int | None = None
    max_concurrency: float | None = None
    # a training deployment: its speed per GPU, step time, host memory and the limits that fit
    train_tokens_per_s_per_gpu: float | None = None
    step_time_s: float | None = None
    host_bytes: int | None = None
    max_seq: int | None = None
    max_micro_batch: int | None = None

    @property
    def margin_bytes(self) -> int:
        """Headroom left beyond the required headroom (negative: short by that much)."""
        return self.headroom_bytes - self.required_headroom_bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "gpu": self.gpu, "num_gpus": self.num_gpus, "tensor_parallel": self.tensor_parallel,
            "pipeline_parallel": self.pipeline_parallel, "per_gpu_bytes": self.per_gpu_bytes,
            "usable_bytes": self.usable_bytes, "headroom_bytes": self.headroom_bytes,
            "required_headroom_bytes": self.required_headroom_bytes,
            "margin_bytes": self.margin_bytes, "total_bytes": self.total_bytes,
            "decode_tokens_per_s": self.decode_tokens_per_s,
            "decode_tokens_per_s_total": self.decode_tokens_per_s_total,
            "prefill_tokens_per_s": self.prefill_tokens_per_s,
            "time_to_first_token_s": self.time_to_first_token_s,
            "kv_cache_tokens": self.kv_cache_tokens, "max_concurrency": self.max_concurrency,
            "train_tokens_per_s_per_gpu": self.train_tokens_per_s_per_gpu,
            "step_time_s": self.step_time_s, "host_bytes": self.host_bytes,
            "max_seq": self.max_seq, "max_micro_batch": self.max_micro_batch,
        }


@frozen
class DeploymentResult:
    deployment: Deployment
    figures: Figures
    failures: tuple[str, ...]  # headroom and speed floors not met
    drift: tuple[Drift, ...] = ()  # every figure compared with the baseline
    notes: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.deployment.name

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why it fails: the floors not met, then the figures that drifted too far."""
        return self.failures + tuple(d.describe() for d in self.drift if d.exceeded)

    @property
    def passed(self) -> bool:
        return not self.reasons

    def to_json(self) -> dict[str, Any]:
        d = self.deployment
        return {
            "name": self.name, "passed": self.passed, "reasons": list(self.reasons),
            "figures": self.figures.to_json(),
            "requirements": {
                "headroom": d.headroom.describe(),
                "required_headroom_bytes": self.figures.required_headroom_bytes,
                "min_decode_tokens_per_s": d.min_decode_tokens_per_s,
                "max_time_to_first_token_s": d.max_time_to_first_token_s,
                "min_train_tokens_per_s": d.min_train_tokens_per_s,
            },
            "settings": d.settings_json(),
            "drift": [x.to_json() for x in self.drift],
            "notes": list(self.notes),
        }


@frozen
class CheckReport:
    source: str
    results: tuple[DeploymentResult, ...]
    tolerance: float = DEFAULT_TOLERANCE
    baseline: str | None = None

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> tuple[DeploymentResult, ...]:
        return tuple(r for r in self.results if not r.passed)

    def figures_by_name(self) -> dict[str, dict[str, Any]]:
        return {r.name: r.figures.to_json() for r in self.results}

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed, "spec": self.source,
            "summary": {"deployments": len(self.results), "failed": len(self.failed)},
            "baseline": self.baseline, "tolerance": self.tolerance,
            "deployments": [r.to_json() for r in self.results],
        }


def check(spec: str | os.PathLike[str] | Mapping[str, Any] | CapacitySpec, *,
          baseline: str | os.PathLike[str] | None = None,
          tolerance: str | float = DEFAULT_TOLERANCE) -> CheckReport:
    """Check every deployment of a spec (a file path, its parsed data, or a CapacitySpec).

    Raises SpecError (an InputError listing every problem) for an invalid spec, and InputError
    for an unreadable baseline; the report says which deployments pass and why the others fail.
    """
    tolerance_ = parse_tolerance(tolerance)
    capacity_spec = _as_spec(spec)
    accepted = load_baseline(baseline) if baseline is not None else None
    measured = measure_all(capacity_spec)
    results = tuple(judge(d, figures, accepted, tolerance_)
                    for d, figures in zip(capacity_spec.deployments, measured, strict=True))
    return CheckReport(source=capacity_spec.source, results=results, tolerance=tolerance_,
                       baseline=None if baseline is None else str(baseline))


def _as_spec(spec: str | os.PathLike[str] | Mapping[str, Any] | CapacitySpec) -> CapacitySpec:
    if isinstance(spec, CapacitySpec):
        return spec
    if isinstance(spec, Mapping):
        return parse_spec(spec, source="<spec>", base_dir=Path.cwd())
    if isinstance(spec, (str, os.PathLike)):
        return load_spec(spec)
    raise InputError(f"check() takes a spec file path, a mapping or a CapacitySpec, not "
                     f"{type(spec).__name__}.")


def measure_all(spec: CapacitySpec) -> tuple[Figures, ...]:
    """Estimate every deployment; estimator errors become spec problems, all of them at once."""
    figures: list[Figures] = []
    problems: list[SpecProblem] = []
    for deployment in spec.deployments:
        try:
            figures.append(measure(deployment))
        except InputError as exc:
            problems.append(SpecProblem(spec.source, f"deployment {short(deployment.name)}", None,
                                        str(exc)))
    if problems:
        raise SpecError(tuple(problems))
    return tuple(figures)


def measure(deployment: Deployment) -> Figures:
    """The memory per GPU and speed of one deployment, from `vramest.estimate()`."""
    if deployment.is_training:
        return measure_training(deployment)
    from vramest.api import estimate

    kwargs = deployment.estimate_kwargs()
    if deployment.profile is not None:
        kwargs["profile"] = deployment.profile
    result = estimate(**kwargs)
    plan, speed = result.fit, result.throughput
    if plan is None:  # estimate() always plans when a GPU is named
        raise InputError(f"No fit plan for GPU {short(deployment.gpu)}.")
    ttft = speed.time_to_first_token_s if speed is not None else None
    startup = getattr(result, "engine_report", None)
    kv_tokens = getattr(startup, "kv_cache_tokens", None)
    concurrency = getattr(startup, "max_concurrency", None)
    return Figures(
        gpu=plan.device.name, num_gpus=plan.num_gpus, tensor_parallel=plan.tp,
        pipeline_parallel=plan.pp, per_gpu_bytes=plan.per_gpu.total,
        usable_bytes=plan.usable_bytes, headroom_bytes=plan.headroom_bytes,
        required_headroom_bytes=deployment.headroom.required_bytes(plan.usable_bytes),
        total_bytes=result.memory.total,
        decode_tokens_per_s=speed.decode_tokens_per_s if speed is not None else None,
        decode_tokens_per_s_total=speed.decode_tokens_per_s_total if speed is not None else None,
        prefill_tokens_per_s=speed.prefill_tokens_per_s if speed is not None else None,
        time_to_first_token_s=ttft,
        kv_cache_tokens=kv_tokens if isinstance(kv_tokens, int) else None,
        max_concurrency=float(concurrency) if isinstance(concurrency, (int, float)) else None,
    )


def measure_training(deployment: Deployment) -> Figures:
    """The memory per GPU and speed of one training step, from `vramest.estimate_training()`."""
    from vramest.training import estimate_training

    est = estimate_training(**deployment.training_kwargs())
    fit, speed = est.fit, est.throughput
    if fit.usable_bytes is None or fit.device is None:  # a named GPU always gives a fit
        raise InputError(f"No fit for GPU {short(deployment.gpu)}.")
    headroom = fit.usable_bytes - fit.required_bytes
    return Figures(
        gpu=fit.device, num_gpus=est.settings.num_gpus, tensor_parallel=1, pipeline_parallel=1,
        per_gpu_bytes=fit.required_bytes, usable_bytes=fit.usable_bytes, headroom_bytes=headroom,
        required_headroom_bytes=deployment.headroom.required_bytes(fit.usable_bytes),
        total_bytes=fit.required_bytes * est.settings.num_gpus + est.host_bytes,
        decode_tokens_per_s=None, decode_tokens_per_s_total=None, prefill_tokens_per_s=None,
        time_to_first_token_s=None, train_tokens_per_s_per_gpu=speed.tokens_per_s_per_gpu,
        step_time_s=speed.step_time_s, host_bytes=est.host_bytes, max_seq=fit.max_seq,
        max_micro_batch=fit.max_micro_batch)


def judge(deployment: Deployment, figures: Figures, accepted: Baseline | None = None,
          tolerance: float = DEFAULT_TOLERANCE) -> DeploymentResult:
    """Pass or fail one deployment: the required headroom, the speed floors and the baseline."""
    failures = tuple(_floor_failures(deployment, figures))
    drift: tuple[Drift, ...] = ()
    notes: tuple[str, ...] = ()
    if accepted is not None:
        entry = accepted.get(deployment.name)
        if entry is None:
            notes = ("not in the baseline yet; --update-baseline adds it",)
        else:
            drift = compare(figures.to_json(), entry, tolerance)
    return DeploymentResult(deployment, figures, failures, drift, notes)


def _floor_failures(d: Deployment, f: Figures) -> list[str]:
    out = []
    if f.headroom_bytes < 0:
        out.append(f"does not fit: needs {format_bytes(f.per_gpu_bytes)} per GPU, "
                   f"{format_bytes(f.usable_bytes)} usable on {f.gpu} "
                   f"(short by {format_bytes(-f.headroom_bytes)})")
    elif f.margin_bytes < 0:
        out.append(f"headroom {format_bytes(f.headroom_bytes)} per GPU is below the required "
                   f"{format_bytes(f.required_headroom_bytes)} ({d.headroom.describe()})")
    if f.max_concurrency is not None and f.headroom_bytes >= 0 and f.max_concurrency < d.batch:
        out.append(f"vLLM's KV cache holds {f.kv_cache_tokens or 0:,} tokens: "
                   f"{f.max_concurrency:.2f} sequences at full context, fewer than batch {d.batch}")
    limits = (  # (figure, limit, is a floor, key, what is missing, the figure in words, unit)
        (f.decode_tokens_per_s, d.min_decode_tokens_per_s, True, "min_decode_tokens_per_s",
         "decode speed", "no memory bandwidth figure", "decode {:.1f} tok/s per sequence", ""),
        (f.train_tokens_per_s_per_gpu, d.min_train_tokens_per_s, True, "min_train_tokens_per_s",
         "training speed", "no compute figure", "training {:,.0f} tok/s per GPU", ""),
        (f.time_to_first_token_s, d.max_time_to_first_token_s, False,
         "max_time_to_first_token_s", "time to first token", "no compute figure",
         "time to first token {:.3g} s", " s"),
    )
    for value, limit, floor, key, what, missing, shown, unit in limits:
        if limit is None:
            continue
        if value is None:
            out.append(f"{what} cannot be estimated on {f.gpu} ({missing}), so {key} cannot be "
                       "checked")
        elif (value < limit) if floor else (value > limit):
            out.append(f"{shown.format(value)} is "
                       f"{'below the floor' if floor else 'above the ceiling'} of {limit:g}{unit}")
    return out
