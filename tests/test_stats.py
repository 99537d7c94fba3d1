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


def test_two_sample_bootstrap_with_any_statistic():
    from genrec_lib.evaluation.stats import two_sample_bootstrap_ci

    a, b = np.arange(10.0), np.arange(10.0) + 100
    value, low, high = two_sample_bootstrap_ci(a, b, lambda x, y: np.median(y) - np.median(x), n_boot=200)
    assert value == pytest.approx(100.0) and low <= value <= high
    with pytest.raises(ValueError, match="non-empty"):
        two_sample_bootstrap_ci([], b, lambda x, y: 0.0)


def test_rank_correlation():
    from genrec_lib.evaluation.stats import rank_correlation

    assert rank_correlation([1, 2, 3, 4], [10, 20, 30, 40])[0] == pytest.approx(1.0)
    assert rank_correlation([1, 2, 3, 4], [4, 3, 2, 1], method="spearman")[0] == pytest.approx(-1.0)
    # One swapped pair among 6: tau = (5 - 1) / 6.
    assert rank_correlation([1, 2, 3, 4], [1, 2, 4, 3])[0] == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match="kendall"):
        rank_correlation([1, 2], [1, 2], method="pearson")
