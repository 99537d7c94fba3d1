"""Evaluation: full and sampled ranking, and pure metric functions."""

from genrec_lib.evaluation.metrics import METRICS, compute_metrics
from genrec_lib.evaluation.ranking import EvalResult, evaluate, masked_scores, recommend, topk_random_ties

__all__ = ["METRICS", "EvalResult", "compute_metrics", "evaluate", "masked_scores", "recommend", "topk_random_ties"]
