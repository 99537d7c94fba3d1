"""The headline numbers each notebook recorded meet the issues' floors.

These run after the notebooks (see the root conftest.py). A chapter whose notebook did not
run in this session is skipped; one that ran must have written fresh results.
"""

import json

import pytest

from genrec_lib.results import read, results_dir

# chapter -> {recorded name: floor}
FLOORS = {
    "02_protocols_metrics_baselines": {
        "pop.test.ndcg@10": 0.090, "itemknn.test.ndcg@10": 0.270,
        "bpr.test.ndcg@10": 0.280, "ease.test.ndcg@10": 0.310,
    },
    "03_variational_autoencoders": {"multvae.test.ndcg@10": 0.290, "multdae.test.ndcg@10": 0.280},
    "04_adversarial_recommenders": {"cfgan.test.ndcg@10": 0.275},
    "05_diffusion_recommenders": {"diffrec.test.ndcg@10": 0.305},
    "06_autoregressive_recommenders": {
        "sasrec.test.ndcg@10": 0.060, "sasrec.test.hit@10": 0.12,
        "bert4rec.test.ndcg@10": 0.055, "gru4rec.test.ndcg@10": 0.050,
    },
    "07_semantic_id_generative_retrieval": {"tiger.test.ndcg@10": 0.040},
}


@pytest.mark.results
@pytest.mark.parametrize("chapter", sorted(FLOORS))
def test_recorded_results_meet_floors(chapter, notebooks_run, session_start):
    if chapter not in notebooks_run:
        pytest.skip(f"notebook {chapter} did not run in this session")
    path = results_dir() / f"{chapter}.json"
    assert path.is_file(), f"{chapter} ran but recorded nothing in {path}"
    stamp = json.loads(path.read_text())["updated"]
    import time

    assert time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%S")) >= int(session_start) - 1, "stale results file"
    values = read(chapter)
    for name, floor in FLOORS[chapter].items():
        assert name in values, f"{chapter} did not record {name}"
        assert values[name] >= floor, f"{chapter}: {name} = {values[name]:.4f} < floor {floor}"
