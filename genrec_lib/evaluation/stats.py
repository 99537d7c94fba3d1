"""Uncertainty and significance for per-user metrics.

Every metric the evaluator reports is a mean over users, so its uncertainty comes from
which users happened to be sampled. These helpers take the per-user arrays of
:class:`~genrec_lib.evaluation.ranking.EvalResult` (``result.per_user["ndcg@10"]``):

- :func:`bootstrap_ci`: a bootstrap interval (BCa, ``scipy.stats.bootstrap``) for one model's mean;
- :func:`paired_bootstrap_ci`: the same for the mean difference of two models scored on
  the same users (pairing removes the users' shared difficulty from the noise);
- :func:`paired_test`: a paired t-test or Wilcoxon signed-rank test of that difference;
- :func:`holm`: Holm's step-down correction when several comparisons are made at once;
- :func:`unpaired_bootstrap_ci` and :func:`two_sample_bootstrap_ci`: a difference (or any
  statistic) of two *independent* samples, e.g. two user groups (chapter 17);
- :func:`bootstrap_interval`: the interval behind all of these, for any statistic;
- :func:`rank_correlation`: Kendall's tau or Spearman's rho between two orderings of the
  same models (chapter 16).

Used by chapters 10-17.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats as _stats

METHODS = ("t", "wilcoxon", "sign")


def _as_1d(values, name: str = "values") -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or len(array) == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of per-user values, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds NaN or infinite values; drop or fix those users first")
    return array


def _paired(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_1d(a, "a"), _as_1d(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same users in the same order, got {len(a)} and {len(b)} values")
    return a, b


def bootstrap_interval(data: tuple, statistic, n_boot: int = 2000, level: float = 0.95, seed: int = 0,
                       paired: bool = False, vectorized: bool = True, method: str = "BCa") -> tuple[float, float]:
    """(low, high): ``scipy.stats.bootstrap``'s interval of ``statistic(*data)``, resampling
    the users ``n_boot`` times (each sample of ``data`` on its own unless ``paired``), the
    core of every interval here. A ``vectorized`` statistic takes ``axis`` (``np.mean``).

    ``method="BCa"`` (Efron and Tibshirani 1993, ch. 14) moves the percentile interval's two
    quantiles to correct for the bias and the skew of the bootstrap distribution;
    ``"percentile"`` takes the plain quantiles. BCa is undefined where that distribution is
    degenerate (every user has the same value) or holds undefined draws (``nan``, e.g. a kappa
    of a constant resample): there the interval is the percentile interval of the defined
    draws (``(m, m)`` for constant data).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if min(len(x) for x in data) < 2:
        raise ValueError(f"bootstrapping needs at least 2 values in each sample, got {[len(x) for x in data]}")
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):  # 0/0 in BCa on constant data
        warnings.simplefilter("ignore", _stats.DegenerateDataWarning)
        result = _stats.bootstrap(data, statistic, n_resamples=n_boot, confidence_level=level, method=method,
                                  paired=paired, vectorized=vectorized, rng=np.random.default_rng(seed),
                                  batch=max(1, 2_000_000 // sum(len(x) for x in data)))  # memory stays small
    low, high = result.confidence_interval
    if np.isfinite(low) and np.isfinite(high):
        return float(low), float(high)
    draws = result.bootstrap_distribution[np.isfinite(result.bootstrap_distribution)]  # (<= n_boot,)
    if len(draws) == 0:
        return float("nan"), float("nan")
    low, high = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def _difference_of_means(a, b, axis=-1):
    return a.mean(axis) - b.mean(axis)


def bootstrap_ci(values, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Mean of per-user ``values`` with a BCa bootstrap interval (``scipy.stats.bootstrap``).

    Users are resampled with replacement ``n_boot`` times (vectorised). Constant values
    give ``(m, m, m)``; a single user gives ``(m, m, m)`` too (there is nothing to resample).

    Returns:
        ``(mean, low, high)``.
    """
    values = _as_1d(values)
    mean = float(values.mean())
    if len(values) == 1:
        return mean, mean, mean
    return (mean, *bootstrap_interval((values,), np.mean, n_boot, level, seed))


def paired_bootstrap_ci(a, b, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Mean difference ``a - b`` over the same users, with a BCa bootstrap interval (users resampled).

    Returns:
        ``(mean difference, low, high)``.
    """
    a, b = _paired(a, b)
    return bootstrap_ci(a - b, n_boot=n_boot, level=level, seed=seed)


def paired_test(a, b, method: str = "t") -> float:
    """Two-sided p-value that ``a`` and ``b`` (per-user values of two models) have equal means.

    ``method="t"``: paired t-test; ``method="wilcoxon"``: Wilcoxon signed-rank test
    (zero differences dropped); ``method="sign"``: exact two-sided sign test (binomial with
    p = 1/2 on the users whose difference is not zero), for small samples.
    Identical inputs give ``p = 1``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
    a, b = _paired(a, b)
    diff = a - b
    if np.all(diff == 0):
        return 1.0
    if method == "t":
        if np.all(diff == diff[0]):  # a constant non-zero difference: no variance, certain
            return 0.0
        return float(_stats.ttest_rel(a, b).pvalue)
    if method == "sign":
        return float(_stats.binomtest(int((diff > 0).sum()), int((diff != 0).sum()), 0.5).pvalue)
    return float(_stats.wilcoxon(a, b, zero_method="wilcox").pvalue)


def holm(pvalues) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (same order as given), capped at 1."""
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1 or np.any((p < 0) | (p > 1)) or np.any(np.isnan(p)):
        raise ValueError("holm needs a 1-D array of p-values in [0, 1]")
    m = len(p)
    order = np.argsort(p)
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


# --- two independent samples, rank agreement (chapters 16-17) -------------------------------

def two_sample_bootstrap_ci(a, b, statistic, n_boot: int = 1000, level: float = 0.95,
                            seed: int = 0) -> tuple[float, float, float]:
    """``statistic(a, b)`` of two *independent* samples, with a BCa bootstrap interval.

    Each sample is resampled with replacement on its own (the samples hold different
    users, e.g. two user groups, or members and non-members of a training set):
    ``scipy.stats.bootstrap`` with ``paired=False``, whose BCa acceleration jackknifes each
    sample in turn. ``statistic`` takes two 1-D arrays and returns a number; it is called
    once per resample (and once per left-out value for the acceleration).

    Returns:
        ``(statistic on the data, low, high)``.
    """
    a, b = _as_1d(a, "a"), _as_1d(b, "b")
    return (float(statistic(a, b)), *bootstrap_interval((a, b), statistic, n_boot, level, seed, vectorized=False))


def unpaired_bootstrap_ci(a, b, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Difference of means ``mean(a) - mean(b)`` of two independent groups, with a BCa bootstrap
    interval (each group resampled on its own, vectorised)."""
    a, b = _as_1d(a, "a"), _as_1d(b, "b")
    return (float(a.mean() - b.mean()), *bootstrap_interval((a, b), _difference_of_means, n_boot, level, seed))


def rank_correlation(x, y, method: str = "kendall") -> tuple[float, float]:
    """Agreement of two orderings of the same models: Kendall's tau or Spearman's rho, and its p-value."""
    x, y = _paired(x, y)
    if method == "kendall":
        result = _stats.kendalltau(x, y)
    elif method == "spearman":
        result = _stats.spearmanr(x, y)
    else:
        raise ValueError(f"unknown method {method!r}; choose 'kendall' or 'spearman'")
    return float(result.statistic), float(result.pvalue)
