"""The one model interface every recommender in the book implements, and the registry.

A model is fitted on a :class:`~genrec_lib.data.Split` and then scores *all* items for a
batch of users (:class:`~genrec_lib.models.batch.UserBatch`, re-exported here). The
evaluator masks seen items and takes the top K;
models never rank by themselves, so general and sequential models share one evaluator.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch import nn

from genrec_lib.data import Split
from genrec_lib.models.batch import UserBatch


class Recommender(nn.Module):
    """Base class: ``fit(split)`` then ``score(batch)`` -> (B, n_items), higher is better.

    Subclasses that learn by gradient descent implement :meth:`training_batches` and
    :meth:`training_loss` and inherit :meth:`fit` from :class:`TrainableRecommender`.
    """

    #: registry key, e.g. ``"ease"``; set by :func:`register`.
    name: str = ""
    #: length of the padded sequences the evaluator passes in; ``None`` for non-sequential models.
    max_seq_len: int | None = None

    def fit(self, split: Split) -> "Recommender":
        raise NotImplementedError

    def score(self, batch: UserBatch) -> torch.Tensor:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        for tensor in list(self.parameters()) + list(self.buffers()):
            return tensor.device
        return torch.device("cpu")


class TrainableRecommender(Recommender):
    """A recommender trained by the shared loop in :mod:`genrec_lib.training`.

    Subclasses implement:

    - ``build(split)``: create parameters now that sizes are known (called by ``fit``);
    - ``training_batches(split, generator)``: yield one epoch of batches (tuples or dicts of tensors);
    - ``training_loss(batch)``: a scalar loss for one batch.

    ``forward(batch)`` returns the training loss so that data-parallel wrappers (DDP via
    Accelerate) see every gradient computation.
    """

    #: optimiser settings shared by the loop; subclasses override as dataclass-like attributes.
    epochs: int = 100
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 10
    eval_every: int = 1
    seed: int = 2020

    def build(self, split: Split) -> None:
        raise NotImplementedError

    def training_batches(self, split: Split, generator: torch.Generator) -> Iterator:
        raise NotImplementedError

    def training_loss(self, batch) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, batch) -> torch.Tensor:
        return self.training_loss(batch)

    def configure_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)

    def fit(self, split: Split, progress: bool = False, device: str | torch.device | None = None) -> "TrainableRecommender":
        """Train with the shared loop, early-stopping on validation NDCG@10."""
        from genrec_lib.evaluation.ranking import validation_step
        from genrec_lib.training import EARLY_STOPPING_METRIC, train

        self.history_ = train(self, split, validate=validation_step(split, EARLY_STOPPING_METRIC), progress=progress,
                              device=device, metric=EARLY_STOPPING_METRIC)
        return self


# --- registry -------------------------------------------------------------------------

MODELS: dict[str, type[Recommender]] = {}


def register(name: str) -> Callable[[type[Recommender]], type[Recommender]]:
    """Class decorator that makes a model available to ``genrec bench --model NAME``."""

    def wrap(cls: type[Recommender]) -> type[Recommender]:
        if name in MODELS and MODELS[name] is not cls:
            raise ValueError(f"model name {name!r} is registered twice")
        cls.name = name
        MODELS[name] = cls
        return cls

    return wrap


def get_model(name: str, **kwargs) -> Recommender:
    """Instantiate a registered model by name with its defaults (overridden by ``kwargs``)."""
    # No import needed: this module is only reached through the package ``genrec_lib.models``,
    # whose ``__init__`` imports (and so registers) every model before anyone can call this.
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}")
    return MODELS[name](**kwargs)


def check_positive(**values) -> None:
    """Raise a clear ValueError for any hyper-parameter that must be > 0 and is not."""
    for key, value in values.items():
        if not value > 0:
            raise ValueError(f"{key} must be > 0, got {value!r}")


def check_non_negative(**values) -> None:
    """Raise a clear ValueError for any hyper-parameter that must be >= 0 and is not."""
    for key, value in values.items():
        if not value >= 0:
            raise ValueError(f"{key} must be >= 0, got {value!r}")
