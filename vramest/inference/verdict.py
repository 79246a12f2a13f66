"""Three-valued fit verdict: fits / tight / does-not-fit, from the error measured for the kind of
figure the verdict rests on.

A verdict with 0.3 GiB of headroom and one with 30 GiB are different answers. Each kind of
estimate has an error band — a high percentile (p90) of |predicted/measured - 1| over the rows of
the published measurements (vramest/validation/reference/memory.csv, scored by `make accuracy`) — and the
verdict is "tight" when the headroom is within that band on either side. The bands live here and
only here; `tests/test_real_cases.py` recomputes them from the reference rows, so a change in the
estimator or the data that widens the error fails until the band is re-derived.
"""

from __future__ import annotations

from vramest.frozen import frozen

FITS, TIGHT, DOES_NOT_FIT = "fits", "tight", "does-not-fit"
VERDICTS = (FITS, TIGHT, DOES_NOT_FIT)


@frozen
class ErrorBand:
    """The measured error of one kind of figure, as a share of the quantity it applies to."""

    kind: str  # engine / figure the band was measured on
    fraction: float  # p90 of |relative error| on the reference rows of that kind
    basis: str  # the quantity the fraction multiplies
    source: str

    def to_json(self, band_bytes: int) -> dict[str, object]:
        return {"bytes": band_bytes, "fraction": self.fraction, "kind": self.kind,
                "basis": self.basis, "source": self.source}


# p90 of |error| (nearest rank) per kind, measured with `make accuracy` on
# vramest/validation/reference/memory.csv at commit 7bce81a (2026-12-03). Device class: the rows span
# consumer and data-centre NVIDIA GPUs and Apple Metal; there are too few per class to split.
BANDS: dict[str, ErrorBand] = {
    "vllm": ErrorBand(
        "vllm kv-cache budget", 0.026, "the KV-cache memory vLLM is left with",
        "p90 of |error| = 1.6% over 14 vLLM start-up log rows (KV size, blocks, tokens, "
        "concurrency; memory.csv) with the per-release rules of vLLM issue #18's fixes and "
        "the RoPE caches in the weights (2.7% without them); plus "
        "the 1 pt the derivation allows, as 0.6.4's non-torch constant comes from the "
        "vllm-10517 rows themselves"),
    "llamacpp": ErrorBand(
        "llama.cpp buffers", 0.01, "the GPU buffers (model, KV, compute) and CUDA context",
        "p90 of |error| = 1.0% over 80 llama.cpp log rows (model, KV, compute, output buffers; "
        "memory.csv)"),
    "generic": ErrorBand(
        "transformers peak", 0.065, "memory per GPU",
        "p90 of |error| = 6.2% over 23 transformers peak rows (peak allocated and optimum's GPTQ "
        "benchmark; memory.csv), rounded up"),
    "training": ErrorBand(
        "training peak", 0.32, "the training step's peak per GPU",
        "p90 of |error| = 31.5% over 102 measured training peaks (training.csv, "
        "vramest.validation.training.peak_comparisons), rounded up"),
}
ENGINE_BANDS = {"vllm": "vllm", "llamacpp": "llamacpp", "llamacpp-cli": "llamacpp",
                "hf": "generic", "generic": "generic", "trtllm": "generic"}


def band_for(engine: str) -> ErrorBand:
    return BANDS[ENGINE_BANDS.get(engine, "generic")]


def verdict(headroom_bytes: int, band_bytes: int) -> str:
    """'tight' when the headroom is inside the error band on either side."""
    if abs(headroom_bytes) <= band_bytes:
        return TIGHT
    return FITS if headroom_bytes > 0 else DOES_NOT_FIT
