"""Shared fixtures: a tiny synthetic dataset with structure a model can learn, and ML-100K."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genrec_lib.data import Interactions, load_movielens, make_split


def make_tiny_interactions(n_users: int = 60, n_items: int = 40, per_user: int = 12, seed: int = 0) -> Interactions:
    """Users in two taste clusters, each drawing mostly from its own half of the catalogue,
    in a fixed order within each half (so sequential models have something to learn)."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(1, n_users + 1):
        half = user % 2
        pool = np.arange(half * n_items // 2, (half + 1) * n_items // 2) + 1
        start = rng.integers(len(pool))
        picks = [pool[(start + step) % len(pool)] for step in range(per_user)]
        for t, item in enumerate(picks):
            rows.append((user, int(item), int(rng.integers(1, 6)), 1_000_000 + 1000 * t + user))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    items = pd.DataFrame(
        {"title": [f"Item {i}" for i in range(1, n_items + 1)], "year": [2000] * n_items,
         "genres": [["Drama"] if i <= n_items // 2 else ["Comedy"] for i in range(1, n_items + 1)]},
        index=np.arange(1, n_items + 1),
    )
    users = pd.DataFrame({"age": 30, "gender": "F", "occupation": "other"}, index=np.arange(1, n_users + 1))
    return Interactions.from_frame(frame, items, users, "tiny")


@pytest.fixture
def tiny():
    return make_tiny_interactions()


@pytest.fixture
def tiny_split(tiny):
    return make_split(tiny, "random", seed=1)


@pytest.fixture
def tiny_loo(tiny):
    return make_split(tiny, "loo", seed=1)


@pytest.fixture
def assert_no_seen_item_recommended():
    """A check shared by the model tests: what the evaluator ranks never includes a seen item."""
    from genrec_lib.evaluation import recommend

    def check(model, split, stage="test", k=10):
        top = recommend(model, split, stage, k=k)
        seen = split.seen(stage).toarray()
        assert not np.take_along_axis(seen, top, axis=1).any()

    return check


@pytest.fixture
def bench_record(monkeypatch, tmp_path):
    """Run ``genrec bench --model NAME --set k=v ...`` on a small split; return its JSON record.

    Shared by the model tests: the registered name, the --set overrides, training,
    evaluation and the JSON writer all go through the real CLI; only the dataset is small.
    """
    import json

    import genrec_lib.data
    from genrec_lib import cli

    def run(name, split, protocol="random", **overrides):
        monkeypatch.setattr(genrec_lib.data, "load_split", lambda *args, **kwargs: split)
        out = tmp_path / f"{name}.json"
        settings = [arg for key, value in overrides.items() for arg in ("--set", f"{key}={value!r}")]
        assert cli.main(["bench", "--protocol", protocol, "--model", name, "--json", str(out), *settings]) == 0
        record = json.loads(out.read_text())
        assert record["model"] == name and record["protocol"] == protocol
        # every --set reached the record (JSON turns tuples into lists)
        assert {k: record["overrides"][k] for k in overrides} == json.loads(json.dumps(overrides))
        if "epochs" in overrides:  # the loop honoured the budget and kept an epoch it ran
            assert 1 <= record["best_epoch"] <= record["epochs"] <= overrides["epochs"]
        for stage in ("valid", "test"):  # metrics that must grow with K, and HR >= Recall
            m = record["metrics"][stage]
            for metric in ("recall", "hit", "mrr", "precision@k*k"):
                name_ = metric.split("@")[0]
                values = [m[f"{name_}@{k}"] * (k if metric.endswith("k*k") else 1) for k in cli.REPORT_KS]
                assert values == sorted(values), f"{stage} {name_}@K decreases with K: {values}"
            assert all(m[f"hit@{k}"] >= m[f"recall@{k}"] - 1e-9 for k in cli.REPORT_KS)
        return record

    return run


@pytest.fixture(scope="session")
def ml100k():
    return load_movielens("ml-100k")
