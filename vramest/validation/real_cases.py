"""Replay real deployments from public issue threads (validation/reference/real_cases.jsonl)
through the same estimate the CLI makes, and score the fit verdict and the figures users
reported.

Each case is a setup a user ran (model, precision, engine and its version and options, GPUs) and
what happened: it ran, vLLM refused to start, or it ran out of memory — sometimes with a figure
from the log (vLLM KV tokens/blocks/GiB, a llama.cpp buffer, a training peak). Cases the
estimator cannot express yet (an engine, GPU or model it does not know) are counted with the
reason, never dropped. The cases are split in two by a hash of their id: mechanisms are tuned on
`fit` and the figures reported on `heldout`. Run: python -m vramest.validation.real_cases
"""

from __future__ import annotations

import hashlib
import json
import re
import statistics
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

from vramest.errors import InputError
from vramest.frozen import TYPE_CHECKING, field, field_names, frozen
from vramest.units import GIB, MIB
from vramest.validation import REFERENCE_DIR

if TYPE_CHECKING:
    from typing import Any

DEFAULT_CASES = REFERENCE_DIR / "real_cases.jsonl"
_MAX_CASES_BYTES = 4 * 1024 * 1024
SPLITS = ("fit", "heldout")
OUTCOMES = ("worked", "oom", "refused")
# which kind of figure each reported metric is, for the median errors
FIGURE_KINDS = {"kv_cache_tokens": "vLLM KV", "num_gpu_blocks": "vLLM KV",
                "request_token_limit": "vLLM KV",
                "kv_cache_bytes": "vLLM KV", "weights_bytes": "vLLM weights",
                "max_total_num_tokens": "SGLang KV", "max_batch_total_tokens": "TGI KV",
                "compute_buffer_gpu_bytes": "llama.cpp buffers",
                "model_buffer_gpu_bytes": "llama.cpp buffers",
                "loading_peak_bytes": "transformers peak", "generate_peak_bytes": "transformers peak",
                "peak_bytes": "training peak",
                "decode_tokens_per_s": "tokens/s", "prefill_tokens_per_s": "tokens/s",
                # Ollama's "offloaded N/M layers to GPU": how many layers it put on the GPUs
                "layers_offloaded": "Ollama layers"}
_UNIT_BYTES = (("GiB", GIB), ("MiB", MIB), ("GB", 10**9))
# figures read from a report property that says what the engine's log line shows
_LOGGED = {"weights_bytes": "logged_weights_bytes"}
# vLLM made its V1 engine the default in 0.8.0 (release notes of v0.8.0,
# https://github.com/vllm-project/vllm/releases/tag/v0.8.0); earlier releases ran V0.
_VLLM_V1_SINCE = (0, 8)


def split_of(case_id: str) -> str:
    """The half a case belongs to: fixed by its id, so adding cases never moves old ones."""
    return SPLITS[hashlib.sha256(case_id.encode()).digest()[0] % 2]


@frozen
class Case:
    id: str
    url: str
    quote: str
    engine: str
    engine_version: str
    model: str
    gpu: str
    outcome: str
    split: str
    dtype: str | None = None
    kv_dtype: str | None = None
    num_gpus: int = 1
    pp: int = 1  # pipeline stages; num_gpus counts every GPU, num_gpus / pp in each stage
    ctx: int | None = None
    batch: int = 1
    prompt: int | None = None  # the request a speed figure is for
    gen: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    figure: dict[str, Any] | None = None
    model_as_stated: str = ""
    notes: str = ""

    @property
    def failed(self) -> bool:
        return self.outcome != "worked"


def load_cases(path: Path = DEFAULT_CASES) -> list[Case]:
    if path.stat().st_size > _MAX_CASES_BYTES:
        raise InputError(f"{path} is larger than {_MAX_CASES_BYTES} bytes; not a case file.")
    known = field_names(Case)
    cases = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError:
                raise InputError(f"{path}:{number} is not one JSON object.") from None
            cases.append(Case(**{k: v for k, v in raw.items() if k in known}))
    return cases


@frozen
class Replay:
    case: Case
    fits: bool | None = None  # the estimate's boolean verdict; None: not expressible
    verdict: str | None = None  # fits / tight / does-not-fit
    predicted: float | None = None  # the case's figure as predicted, in bytes or its count
    measured: float | None = None
    reason: str = ""  # why the case could not be expressed

    @property
    def agrees(self) -> bool | None:
        return None if self.fits is None else self.fits != self.case.failed

    @property
    def error(self) -> float | None:
        if self.predicted is None or not self.measured:
            return None
        return self.predicted / self.measured - 1


def _measured(figure: dict[str, Any]) -> float:
    unit = str(figure["unit"])
    scale = next((factor for name, factor in _UNIT_BYTES if unit.startswith(name)), 1)
    return float(figure["value"]) * scale


def _vllm_version(text: str) -> str | None:
    found = re.search(r"(\d+)\.(\d+)", text)
    if not found:
        return None
    return "v1" if (int(found[1]), int(found[2])) >= _VLLM_V1_SINCE else "v0"


def _engine_options(case: Case) -> dict[str, Any]:
    """The case's options, with the release it ran on as the engine version (its rules)."""
    from vramest.inference.engines.versions import parse_version

    options = dict(case.options)
    family = "llamacpp" if case.engine.startswith("llamacpp") else case.engine
    if family in ("vllm", "llamacpp", "hf") and case.engine_version and "version" not in options:
        words = case.engine_version.split()
        token = words[1] if family == "hf" and len(words) > 1 else words[0]  # "transformers 4.36"
        token = re.sub(r"(\d)x$", r"\g<1>0", token).replace(".x", ".0")  # 0.2x → 0.20
        try:
            parse_version(family, token)
        except InputError:
            if family == "vllm" and (version := _vllm_version(case.engine_version)):
                options["version"] = version
        else:
            options["version"] = token
    from vramest.inference.engines.aliases import ALIASES
    from vramest.inference.engines.aliases import OWN_ACCOUNTING as OWN_VERSIONED

    alias = ALIASES.get(case.engine)
    if alias is not None and alias.fork and case.engine_version and "version" not in options:
        token = case.engine_version.split()[0]  # KoboldCpp "1.50.1": its llama.cpp build
        if re.fullmatch(r"v?\d+(\.\d+){0,2}|b\d+", token):
            options["version"] = token

    if case.engine in OWN_VERSIONED and case.engine_version and "version" not in options \
            and _takes_version(case.engine):
        token = case.engine_version.split()[0]  # Ollama "0.3.10", "0.4.0-rc6", SGLang "0.4.6.post1"
        if re.fullmatch(r"v?\d+(\.\d+){0,2}(\.post\d+|-rc\d+)?", token):  # a date alone: the default
            options["version"] = token
    return options


def _takes_version(engine: str) -> bool:
    """Whether the engine's accounting has rules by release (ExLlamaV2's has one release)."""
    from vramest.inference.engines.registry import settings

    return "version" in settings(engine)


def replay(case: Case) -> Replay:
    """The estimate the CLI would make for this setup, and its verdict and figure. Replays are
    offline: a model outside the catalog is a gap to report, not a hub download."""
    from vramest.model.catalog import default_catalog
    from vramest.model.resolve import catalog_name

    catalog = default_catalog()
    if catalog_name(case.model) is None:  # the names the CLI takes offline, no more
        return Replay(case, reason=f"Unknown model {case.model!r} (not in the catalog); "
                      f"{catalog.suggest(case.model)}")
    try:
        if case.engine == "training":
            return _replay_training(case)
        return _replay_inference(case)
    except InputError as exc:
        return Replay(case, reason=str(exc))


def _replay_inference(case: Case) -> Replay:
    from vramest.api import estimate

    options = _engine_options(case)
    host = options.pop("host_memory", None)  # --host-memory: where host layers stream from
    est = estimate(model=case.model, dtype=case.dtype, kv_dtype=case.kv_dtype, ctx=case.ctx,
                   batch=case.batch, gpu=case.gpu, num_gpus=case.num_gpus, pp=case.pp,
                   engine=case.engine, engine_options=options, prompt=case.prompt,
                   gen=case.gen or 128, profile="none",  # shipped constants: not this machine's
                   host_memory=host)
    assert est.fit is not None  # a GPU was named
    predicted = measured = None
    if case.figure:
        metric = case.figure["metric"]
        source = est.throughput if metric.endswith("tokens_per_s") else est.engine_report
        # a quoted log line is the driver's: with pipeline stages, the first stage's weights
        value = getattr(source, _LOGGED.get(metric, metric), None)
        value = getattr(source, metric, None) if value is None else value
        if value is None:
            return Replay(case, est.fit.fits, est.fit.verdict,
                          reason=f"no {metric} in the {case.engine} estimate")
        predicted, measured = float(value), _measured(case.figure)
        if "torch" in str(case.figure["unit"]):
            # torch's allocator counters (max_memory_allocated) leave out what the runtime overhead
            # holds (CUDA context, library workspaces), as vramest.validation.accuracy compares them,
            # and blocks the caching allocator keeps reserved but free: transformers' growth room
            # for the concatenated KV cache (HFStartup.kv_growth_bytes, "stays reserved")
            predicted -= est.memory.overhead.bytes
            if metric == "generate_peak_bytes":
                predicted -= getattr(est.engine_report, "kv_growth_bytes", 0)
    return Replay(case, est.fit.fits, est.fit.verdict, predicted, measured)


def _replay_training(case: Case) -> Replay:
    from vramest.training import estimate_training

    est = estimate_training(model=case.model, gpu=case.gpu, num_gpus=case.num_gpus,
                            **case.training)
    predicted = measured = None
    if case.figure:
        # torch's allocator counters (max_memory_allocated, active peak) leave out the CUDA
        # context that nvidia-smi and the card's capacity include
        context = est.cuda_context_bytes if "torch" in str(case.figure["unit"]) else 0
        predicted, measured = float(est.fit.required_bytes - context), _measured(case.figure)
    return Replay(case, est.fit.fits, est.fit.verdict, predicted, measured)


def replay_all(cases: Iterable[Case]) -> list[Replay]:
    return [replay(case) for case in cases]


# --- scoring ----------------------------------------------------------------------------------
@frozen
class SplitScore:
    split: str
    failed_agree: int
    failed_scored: int
    worked_agree: int
    worked_scored: int
    tight: int
    wrong_but_tight: int  # boolean verdicts that were wrong but flagged 'tight'
    median_error: dict[str, tuple[float, int]]  # kind -> (median |error|, rows)
    not_expressible: dict[str, int]  # reason -> cases

    @property
    def failed_agreement(self) -> float:
        return self.failed_agree / self.failed_scored if self.failed_scored else float("nan")

    @property
    def worked_agreement(self) -> float:
        return self.worked_agree / self.worked_scored if self.worked_scored else float("nan")


def figure_kind(case: Case) -> str:
    """The kind of figure a case reports; a KV figure from a llama.cpp log (a buffer size)
    counts with llama.cpp's buffers, not with vLLM's KV budget."""
    metric = case.figure["metric"] if case.figure else ""
    if metric == "kv_cache_bytes" and _llamacpp_family(case.engine):
        return "llama.cpp buffers"
    return FIGURE_KINDS.get(metric, "other")


def _llamacpp_family(engine: str) -> bool:
    from vramest.inference.engines.aliases import ALIASES

    alias = ALIASES.get(engine)
    return engine.startswith("llamacpp") or (alias is not None and alias.engine == "llamacpp")


def _reason_class(reason: str) -> str:
    """Group the estimator's sentence into the kind of gap it names."""
    lowered = reason.lower()
    for needle, label in (("engine", "engine not modelled"), ("gpu", "GPU not in the database"),
                          ("device", "GPU not in the database"), ("model", "model not known"),
                          ("dtype", "precision not known"), ("precision", "precision not known")):
        if needle in lowered:
            return f"{label}: {reason}"
    return reason


def score(replays: Iterable[Replay], split: str) -> SplitScore:
    chosen = [r for r in replays if r.case.split == split]
    scored = [r for r in chosen if r.fits is not None]
    failed = [r for r in scored if r.case.failed]
    worked = [r for r in scored if not r.case.failed]
    errors: dict[str, list[float]] = defaultdict(list)
    for r in scored:
        if r.error is not None and r.case.figure:
            errors[figure_kind(r.case)].append(abs(r.error))
    return SplitScore(
        split, sum(bool(r.agrees) for r in failed), len(failed),
        sum(bool(r.agrees) for r in worked), len(worked),
        sum(r.verdict == "tight" for r in scored),
        sum(r.verdict == "tight" and r.agrees is False for r in scored),
        {kind: (statistics.median(values), len(values)) for kind, values in errors.items()},
        dict(Counter(_reason_class(r.reason) for r in chosen if r.fits is None)))


def report_lines(path: Path = DEFAULT_CASES) -> list[str]:
    cases = load_cases(path)
    replays = replay_all(cases)
    lines = [f"{len(cases)} cases from public threads ({path.name}); outcomes "
             + ", ".join(f"{k} {v}" for k, v in sorted(Counter(c.outcome for c in cases).items()))]
    for split in SPLITS:
        s = score(replays, split)
        lines.append(f"  [{split}] verdict agreement: OOM/refused side {s.failed_agree}/"
                     f"{s.failed_scored} ({s.failed_agreement:.0%}), worked side "
                     f"{s.worked_agree}/{s.worked_scored} ({s.worked_agreement:.0%}); "
                     f"{s.tight} verdicts 'tight', {s.wrong_but_tight} of the wrong ones among "
                     "them")
        for kind, (median, rows) in sorted(s.median_error.items()):
            lines.append(f"      median |error| {kind:18} {median:7.1%}  ({rows} figures)")
        for reason, count in sorted(s.not_expressible.items(), key=lambda kv: -kv[1]):
            lines.append(f"      not expressible ×{count}: {reason[:110]}")
    wrong = [r for r in replays if r.agrees is False]
    if wrong:
        lines.append("  verdicts still wrong:")
        for r in wrong:
            said = "fits" if r.fits else "does not fit"
            lines.append(f"    {r.case.split:7} {r.case.id:42} {r.case.outcome:8} estimate says "
                         f"{said} ({r.verdict or '-'})")
    figures = [r for r in replays if r.error is not None]
    if figures:
        lines.append("  figures (predicted vs reported):")
        for r in figures:
            lines.append(f"    {r.case.split:7} {r.case.id:42} {r.case.figure['metric']:24} "  # type: ignore[index]
                         f"{r.error:+8.1%}")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1 or (args and args[0].startswith("-")):
        print("usage: python -m vramest.validation.real_cases [CASES.jsonl] — replays the public "
              "cases (default: the shipped set) and prints verdict agreement and figure errors.",
              file=sys.stderr)
        return 0 if args and args[0] in ("-h", "--help") else 2
    path = Path(args[0]) if args else DEFAULT_CASES
    if not path.is_file():
        print(f"vramest: {path} is not a readable file; give a JSON-lines case file.",
              file=sys.stderr)
        return 2
    try:
        print("\n".join(report_lines(path)))
    except InputError as error:
        print(f"vramest: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
