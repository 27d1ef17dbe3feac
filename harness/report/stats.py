"""Mean and 95 % confidence interval over seeds (Student t, n-1 degrees of freedom).

Seeds are few (1-3), so the normal quantile (1.96) would understate the interval badly:
with two seeds the t quantile is 12.706. One seed has no interval at all, and that is
shown as such rather than as "± 0".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

LEVEL = 0.95


def t_quantile(df: float, level: float = LEVEL) -> float:
    """Two-sided Student t quantile, e.g. t_{0.975, 1} = 12.706 for level 0.95."""
    # scipy comes with scikit-learn (a dependency of the harness)
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2.0, df))


@dataclass(frozen=True)
class Summary:
    """Mean over seeds with a two-sided confidence interval; ``half_width`` is None for n < 2."""

    n: int
    mean: float | None
    std: float | None = None  # sample standard deviation (ddof=1)
    half_width: float | None = None

    @property
    def low(self) -> float | None:
        return None if self.mean is None or self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.mean is None or self.half_width is None else self.mean + self.half_width


def summarize(values: Sequence[float | None], level: float = LEVEL) -> Summary:
    """Mean ± t_{(1+level)/2, n-1} · s/√n of the values that are present."""
    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(xs)
    if n == 0:
        return Summary(0, None)
    mean = sum(xs) / n
    if n == 1:
        return Summary(1, mean)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    return Summary(n, mean, std, t_quantile(n - 1, level) * std / math.sqrt(n))


def difference(a: Summary, b: Summary, level: float = LEVEL) -> Summary:
    """``a - b``. Welch's interval when both have spread; a one-seed (or constant) side
    counts as a fixed value, so the interval is the other side's own."""
    if a.mean is None or b.mean is None:
        return Summary(0, None)
    mean = a.mean - b.mean
    n = min(a.n, b.n) if a.n and b.n else 0
    var_a = (a.std or 0.0) ** 2 / a.n if a.n > 1 else 0.0
    var_b = (b.std or 0.0) ** 2 / b.n if b.n > 1 else 0.0
    if a.n > 1 and b.n > 1 and var_a + var_b > 0:
        df = (var_a + var_b) ** 2 / sum(v**2 / (s.n - 1) for v, s in ((var_a, a), (var_b, b)) if v > 0)
        return Summary(n, mean, None, t_quantile(df, level) * math.sqrt(var_a + var_b))
    if a.n > 1 and b.n > 1:  # both without spread: the interval is a point
        return Summary(n, mean, None, 0.0)
    # one side is a single value: it is taken as a constant
    return Summary(n, mean, None, a.half_width if a.n > 1 else b.half_width)


def mean(values: Sequence[float | None]) -> float | None:
    xs = [float(v) for v in values if v is not None]
    return sum(xs) / len(xs) if xs else None
