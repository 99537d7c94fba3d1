import torch

from genrec_lib.models import get_model
from genrec_lib.training import default_device


def test_early_stopping_restores_the_best_epoch(tiny_split):
    model = get_model("bpr", epochs=40, eval_every=1, patience=3, learning_rate=5e-2, batch_size=32)
    model.fit(tiny_split)
    history = model.history_
    best = max(e["valid_ndcg@10"] for e in history.epochs)
    assert history.best_score == best
    assert len(history.epochs) <= 40
    from genrec_lib.evaluation import evaluate

    assert abs(evaluate(model, tiny_split, "valid", ks=(10,))["ndcg@10"] - best) < 1e-9


def test_device_is_chosen_automatically():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert default_device().type == expected
