import numpy as np
import pytest

from genrec_lib.evaluation.stats import bootstrap_ci, holm, paired_bootstrap_ci, paired_test


def test_bootstrap_interval_covers_the_mean_at_the_right_width():
    values = np.random.default_rng(0).normal(0.3, 0.1, size=400)
    mean, low, high = bootstrap_ci(values, n_boot=4000, seed=1)
    assert mean == pytest.approx(values.mean())
    # A normal-theory 95% interval has half-width 1.96 sd / sqrt(n) = .0098.
    assert (high - low) / 2 == pytest.approx(1.96 * values.std(ddof=1) / 20, rel=0.1)
    assert low < mean < high
    assert bootstrap_ci(values, seed=1) == bootstrap_ci(values, seed=1)


def test_coverage_of_the_bootstrap_interval_is_close_to_nominal():
    rng = np.random.default_rng(2)
    covered = [lo <= 0.5 <= hi for _, lo, hi in (bootstrap_ci(rng.random(100), n_boot=500, seed=s) for s in range(200))]
    assert 0.88 <= np.mean(covered) <= 0.99
    # normal data with a known mean, at two levels: an interval too narrow or too wide (or one that ignores
    # ``level``) misses one of the two bands
    for level, band in ((0.95, (0.90, 0.99)), (0.5, (0.40, 0.60))):
        intervals = [bootstrap_ci(rng.normal(0.3, 0.1, 60), n_boot=500, level=level, seed=s) for s in range(200)]
        covered = [lo <= 0.3 <= hi for _, lo, hi in intervals]
        assert band[0] <= np.mean(covered) <= band[1], (level, np.mean(covered))


def test_bootstrap_ci_is_scipys_bca_interval():
    from scipy import stats

    values = np.random.default_rng(7).exponential(0.2, 150)  # skewed, as per-user NDCG is
    mean, low, high = bootstrap_ci(values, n_boot=999, level=0.9, seed=3)
    bca = stats.bootstrap((values,), np.mean, n_resamples=999, confidence_level=0.9, method="BCa",
                          rng=np.random.default_rng(3)).confidence_interval
    assert (low, high) == pytest.approx((bca.low, bca.high), abs=1e-12)
    percentile = stats.bootstrap((values,), np.mean, n_resamples=999, confidence_level=0.9, method="percentile",
                                 rng=np.random.default_rng(3)).confidence_interval
    assert high - percentile.high > 1e-4  # BCa moves a right-skewed mean's interval up, percentile does not
    assert paired_bootstrap_ci(values, values / 2, n_boot=999, level=0.9, seed=3) == pytest.approx(
        bootstrap_ci(values / 2, n_boot=999, level=0.9, seed=3), abs=1e-12)


def test_degenerate_input_gives_a_finite_interval():
    import warnings

    from genrec_lib.evaluation.stats import unpaired_bootstrap_ci

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # BCa's nan and scipy's DegenerateDataWarning are handled inside
        assert bootstrap_ci(np.full(40, 0.25)) == pytest.approx((0.25, 0.25, 0.25))
        assert bootstrap_ci([0.7]) == (0.7, 0.7, 0.7)  # one user: nothing to resample
        a = np.random.default_rng(0).random(50)
        assert paired_bootstrap_ci(a, a.copy()) == (0.0, 0.0, 0.0)
        assert unpaired_bootstrap_ci(np.ones(20), np.zeros(30)) == (1.0, 1.0, 1.0)
        mean, low, high = bootstrap_ci(np.r_[1.0, np.zeros(149)])  # one hit among 150 users
        assert 0 <= low <= mean <= high < 0.05
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci(a, level=95)
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_ci(a, n_boot=0)


def test_paired_test_of_identical_inputs_is_one_and_detects_a_shift():
    a = np.random.default_rng(3).random(200)
    assert paired_test(a, a) == 1.0 and paired_test(a, a, "wilcoxon") == 1.0
    b = a + 0.05 + np.random.default_rng(4).normal(0, 0.01, 200)
    assert paired_test(a, b) < 1e-10 and paired_test(a, b, "wilcoxon") < 1e-10
    noise = np.random.default_rng(5).normal(0, 0.01, 200)
    assert paired_test(a, a + noise) > 0.01  # no true difference: no tiny p-value


def test_paired_interval_is_narrower_than_the_unpaired_difference():
    rng = np.random.default_rng(6)
    difficulty = rng.random(300)
    a, b = difficulty + 0.02, difficulty + rng.normal(0, 0.02, 300)
    diff, low, high = paired_bootstrap_ci(a, b, seed=0)
    assert low < diff < high and low > 0
    _, a_low, a_high = bootstrap_ci(a, seed=0)
    assert high - low < (a_high - a_low) / 3


def test_holm_adjustment():
    adjusted = holm([0.01, 0.04, 0.03, 0.5])
    assert np.allclose(adjusted, [0.04, 0.09, 0.09, 0.5])
    assert np.all(holm([0.5, 0.9]) <= 1.0)


@pytest.mark.parametrize("bad", [[], [[1, 2]], [0.1, np.nan]])
def test_bad_input_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="per-user"if np.asarray(bad).ndim != 1 or len(bad) == 0 else "NaN"):
        bootstrap_ci(bad)


def test_paired_inputs_must_align():
    with pytest.raises(ValueError, match="same users"):
        paired_test([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="t, wilcoxon, sign"):
        paired_test([0.1, 0.2], [0.3, 0.1], method="median")


def test_sign_test_is_exact_binomial():
    # 9 wins, 1 loss, 2 ties: two-sided binomial p = 2 * P(X >= 9 | n=10, 1/2) = 22/1024
    a = np.array([1.0] * 9 + [0.0] + [0.5, 0.5])
    b = np.array([0.0] * 9 + [1.0] + [0.5, 0.5])
    assert paired_test(a, b, method="sign") == pytest.approx(22 / 1024)
    assert paired_test(b, a, method="sign") == pytest.approx(22 / 1024)
    assert paired_test(a, a, method="sign") == 1.0


# --- two independent samples, rank agreement ------------------------------------------------

def test_unpaired_bootstrap_difference_of_means():
    from genrec_lib.evaluation.stats import unpaired_bootstrap_ci

    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 1.0, 400), rng.normal(0.0, 1.0, 300)
    diff, low, high = unpaired_bootstrap_ci(a, b, seed=1)
    assert diff == pytest.approx(a.mean() - b.mean())
    assert low < diff < high and low > 0.6 and high < 1.4
    # Identical groups: the interval covers 0.
    _, low0, high0 = unpaired_bootstrap_ci(a, a.copy(), seed=1)
    assert low0 < 0 < high0
    # coverage of a known difference (0.5) in a small simulation, at two levels
    for level, band in ((0.95, (0.88, 0.99)), (0.5, (0.38, 0.62))):
        intervals = [unpaired_bootstrap_ci(rng.normal(1, 1, 60), rng.exponential(0.5, 40), n_boot=500, level=level,
                                           seed=s) for s in range(150)]
        covered = [lo <= 0.5 <= hi for _, lo, hi in intervals]
        assert band[0] <= np.mean(covered) <= band[1], (level, np.mean(covered))


def test_two_sample_bootstrap_with_any_statistic():
    from genrec_lib.evaluation.stats import two_sample_bootstrap_ci

    a, b = np.arange(10.0), np.arange(10.0) + 100
    value, low, high = two_sample_bootstrap_ci(a, b, lambda x, y: np.median(y) - np.median(x), n_boot=200)
    assert value == pytest.approx(100.0) and low <= value <= high
    with pytest.raises(ValueError, match="non-empty"):
        two_sample_bootstrap_ci([], b, lambda x, y: 0.0)
    with pytest.raises(ValueError, match="at least 2 values"):
        two_sample_bootstrap_ci([1.0], b, lambda x, y: 0.0)
    # each sample resampled on its own, as unpaired_bootstrap_ci does (same draws, same BCa interval)
    from genrec_lib.evaluation.stats import unpaired_bootstrap_ci

    rng = np.random.default_rng(1)
    x, y = rng.exponential(1.0, 40), rng.exponential(1.0, 25)
    assert two_sample_bootstrap_ci(x, y, lambda u, v: u.mean() - v.mean(), n_boot=300, seed=2) == pytest.approx(
        unpaired_bootstrap_ci(x, y, n_boot=300, seed=2), abs=1e-12)


def test_rank_correlation():
    from genrec_lib.evaluation.stats import rank_correlation

    assert rank_correlation([1, 2, 3, 4], [10, 20, 30, 40])[0] == pytest.approx(1.0)
    assert rank_correlation([1, 2, 3, 4], [4, 3, 2, 1], method="spearman")[0] == pytest.approx(-1.0)
    # One swapped pair among 6: tau = (5 - 1) / 6.
    assert rank_correlation([1, 2, 3, 4], [1, 2, 4, 3])[0] == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match="kendall"):
        rank_correlation([1, 2], [1, 2], method="pearson")
