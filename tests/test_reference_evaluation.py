"""The evaluator agrees with an independent re-evaluation from the exported TSV files.

``benchmarks/reference_eval.py`` is plain numpy and shares no code with
``genrec_lib.evaluation``: here it rebuilds each user's input (the loo rule: strictly
before the target's timestamp), the items to mask, and the held-out items from the files
``genrec data export`` writes, ranks the model's scores and computes the metrics. Ties are
handled exactly (expected value over a uniformly random tie-break), so the library's one
seeded draw must fall within four standard deviations of it; for EASE, which has no ties,
that is an exact match.
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from genrec_lib import cli
from genrec_lib.data import load_split
from genrec_lib.evaluation import evaluate
from genrec_lib.models import UserBatch, get_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import reference_eval as ref  # noqa: E402

METRICS = ("ndcg@10", "recall@10", "hit@10", "mrr@10", "precision@10")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folders = {}
    for protocol in ("random", "loo"):
        out = tmp_path_factory.mktemp(protocol)
        assert cli.main(["data", "export", "--protocol", protocol, "--seed", "2020", "--out", str(out)]) == 0
        folders[protocol] = ref.read_tsv_split(out)
    return folders


@pytest.fixture(scope="module")
def fitted():
    cache = {}

    def get(name, protocol):
        if (name, protocol) not in cache:
            split = load_split("ml-100k", protocol, 2020)
            cache[name, protocol] = (split, get_model(name).fit(split))
        return cache[name, protocol]

    return get


def _from_files(parts: dict, protocol: str, split):
    """Input, seen and held-out matrices of the test stage, built from the TSVs alone,
    in the library's dense user/item order (so that the model can score them)."""
    users = {u: i for i, u in enumerate(split.dataset.user_ids)}
    items = {v: i for i, v in enumerate(split.dataset.item_ids)}
    shape = (split.n_users, split.n_items)
    known = pd.concat([parts["train"], parts["valid"]])
    inputs = ref.strict_input(known, parts["test"]) if protocol == "loo" else known
    return (ref.dense(inputs, users, items, shape), ref.dense(known, users, items, shape),
            ref.dense(parts["test"], users, items, shape))


@pytest.mark.parametrize("protocol", ["random", "loo"])
@pytest.mark.parametrize("name", ["pop", "ease"])
def test_evaluator_matches_an_independent_numpy_evaluation(exported, fitted, name, protocol):
    split, model = fitted(name, protocol)
    history, seen, targets = _from_files(exported[protocol], protocol, split)
    if protocol == "loo":  # the rule has teeth here: some users lose same-second items
        assert (history.sum(1) < seen.sum(1)).sum() > 100
    with torch.no_grad():
        scores = model.score(UserBatch(users=torch.arange(split.n_users), history=torch.from_numpy(history).float(),
                                       seen=torch.from_numpy(seen).float())).numpy()
    results = {}
    for convention, mask in (("masked", seen), ("unmasked", np.zeros_like(seen))):
        expected = ref.expected_metrics(scores, mask, targets, k=10)
        got = results[convention] = evaluate(model, split, "test", ks=(10,), mask_seen=mask is seen).metrics
        for metric in METRICS:
            mean, per_user, bound = expected[metric]
            if np.isnan(per_user).any():  # hit/mrr of users whose several held-out items tie
                continue
            assert abs(got[metric] - mean) <= bound + 1e-6, \
                f"{name} {protocol} {convention} {metric}: {got[metric]:.6f} vs {mean:.6f} ± {bound:.6f}"
            if name == "ease":
                assert bound < 1e-6  # no ties: an exact check
    # Seen items crowd the top 10 when they are not removed.
    assert results["unmasked"]["ndcg@10"] < 0.8 * results["masked"]["ndcg@10"]


def test_reference_evaluator_handles_ties_exactly():
    scores = np.array([[3.0, 1.0, 1.0, 1.0, 0.0]])
    targets = np.array([[False, True, False, False, False]])
    seen = np.array([[True, False, False, False, False]])
    result = ref.expected_metrics(scores, seen, targets, k=2)
    # Masked: the target ties with two others for ranks 1..3; hit@2 = 2/3.
    assert result["hit@2"][0] == pytest.approx(2 / 3)
    assert result["ndcg@2"][0] == pytest.approx((1 + 1 / np.log2(3)) / 3)
    unmasked = ref.expected_metrics(scores, np.zeros_like(seen), targets, k=2)
    assert unmasked["hit@2"][0] == pytest.approx(1 / 3)  # ranks 2..4
