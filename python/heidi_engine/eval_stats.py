"""Statistics for evaluation reports: pass@1 with a Wilson interval, unbiased pass@k.

The Wilson score interval (Wilson 1927) stays inside [0, 1] and keeps a sensible width
at 0/n and n/n, where the normal approximation collapses to a point. pass@k uses the
unbiased estimator of Chen et al. 2021 ("Evaluating Large Language Models Trained on
Code", the HumanEval paper): with n samples per task of which c pass,
``pass@k = 1 - C(n-c, k) / C(n, k)``, averaged over tasks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# Two-sided 95%: the 0.975 quantile of the standard normal distribution.
Z_95 = 1.959963984540054


def wilson_interval(passed: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval for ``passed`` successes in ``n`` trials ((0, 1) for n=0)."""
    if n < 0 or passed < 0 or passed > n:
        raise ValueError(f"need 0 <= passed <= n, got passed={passed}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = passed / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one task with ``n`` samples of which ``c`` passed (k <= n)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    # 1 - C(n-c, k) / C(n, k) as a product, which stays exact enough for large n.
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def mean_pass_at_k(counts: Sequence[tuple[int, int]], k: int) -> float:
    """pass@k over tasks, each given as (samples, passed)."""
    if not counts:
        return 0.0
    return sum(pass_at_k(n, c, k) for n, c in counts) / len(counts)


def intervals_overlap(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether two closed intervals ``(low, high)`` share a point."""
    return a[0] <= b[1] and b[0] <= a[1]


__all__ = ["Z_95", "intervals_overlap", "mean_pass_at_k", "pass_at_k", "wilson_interval"]
