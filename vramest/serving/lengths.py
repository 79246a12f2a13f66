"""How request lengths spread around their mean: fixed, uniform, or exponential.

`--input-len` and `--output-len` stay the means; `--input-len-dist` and `--output-len-dist` say
how single requests scatter around them:

- `fixed` (the default): every request has the mean length, as benchmarks with a range ratio of
  0 send them.
- `uniform:R`: lengths uniform over mean × [1 − R, 1 + R], 0 ≤ R < 1 — what `vllm bench serve
  --random-range-ratio R` sends (vllm-project/vllm@f2e97dda, vllm/benchmarks/datasets.py,
  RandomDataset: "[input_len * (1 - range_ratio), input_len * (1 + range_ratio)]").
- `exponential`: exponential with that mean (coefficient of variation 1), the shape of chat
  traffic whose lengths have a long tail.

The scheduler model uses the mean for step composition and throughput, the spread of output
lengths for how fast requests that started together drift apart (`simulate.steady_state`), and
the input quantiles for the spread of TTFT.
"""

from __future__ import annotations

import math

from vramest.errors import InputError
from vramest.frozen import frozen

ACCEPTED = "fixed, uniform:R (0 <= R < 1) or exponential"


@frozen
class LengthDist:
    kind: str  # "fixed", "uniform" or "exponential"
    ratio: float = 0.0  # uniform: half the width over the mean

    @property
    def cv(self) -> float:
        """Standard deviation over the mean."""
        if self.kind == "uniform":
            return self.ratio / math.sqrt(3)
        return 1.0 if self.kind == "exponential" else 0.0

    def quantile(self, mean: float, q: float) -> float:
        """The length at quantile `q` (0 < q < 1) of requests whose mean length is `mean`."""
        if self.kind == "uniform":
            return mean * (1 - self.ratio + 2 * self.ratio * q)
        if self.kind == "exponential":
            return -mean * math.log1p(-q)
        return mean

    def label(self) -> str:
        return f"uniform:{self.ratio:g}" if self.kind == "uniform" else self.kind


FIXED = LengthDist("fixed")


def parse_length_dist(text: str | None, flag: str) -> LengthDist:
    if text is None:
        return FIXED
    value = text.strip().lower()
    if value in ("fixed", "exponential"):
        return LengthDist(value)
    if value.startswith("uniform:"):
        try:
            ratio = float(value.split(":", 1)[1])
        except ValueError:
            ratio = math.nan
        if 0 <= ratio < 1:
            return LengthDist("uniform", ratio)
    raise InputError(f"{flag} {text!r} is not a length distribution; accepted: {ACCEPTED}.")
