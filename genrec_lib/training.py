"""One training loop for every gradient-trained model in the book.

Seeded, early stopping on a validation score (the best weights are restored), optional
tqdm progress, and device placement through Hugging Face Accelerate: on one machine it
picks CUDA when present, else the CPU; launched with ``accelerate launch`` (or ``torchrun``)
on several processes, Accelerate's prepared ``DataLoader`` gives each process its share of
every epoch's batches (the same number of steps on every process, the last share padded
with the epoch's first batches), DDP averages the gradients, each process validates its
share of the users, ``gather_for_metrics`` collects the per-user scores, and the main
process decides on early stopping and broadcasts the decision.

The loop knows nothing of the evaluator: it receives the validation step as a callable
``validate(model, users) -> per-user scores`` (see
:func:`genrec_lib.evaluation.ranking.validation_step`, which
:meth:`~genrec_lib.models.base.TrainableRecommender.fit` passes).
"""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from genrec_lib.data import Split

EARLY_STOPPING_METRIC = "ndcg@10"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def default_device() -> torch.device:
    """CUDA when available, else the CPU (what Accelerate picks on one machine)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class TrainingHistory:
    """Per-epoch records of one run; ``best_epoch`` is the one whose weights were kept."""

    epochs: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_score: float = float("-inf")
    seconds: float = 0.0

    @property
    def seconds_per_epoch(self) -> float:
        return self.seconds / max(len(self.epochs), 1)


class _EpochBatches(IterableDataset):
    """One epoch of the model's own batches, drawn from the loop's seeded generator.

    Every process iterates the same sequence (same seed); Accelerate keeps each process's share.
    (The attribute is not called ``generator``: Accelerate would reseed such an attribute.)
    """

    def __init__(self, model, split: Split, rng: torch.Generator):
        self.model, self.split, self.rng = model, split, rng

    def __iter__(self):
        return iter(self.model.training_batches(self.split, self.rng))


def _only(items: list):
    """Collate for a loader of ready-made batches (batch_size=1): the batch itself."""
    return items[0]


#: Users per validation step; the evaluator's default batch, so one process sees the same batches as ``evaluate``.
VALIDATION_BATCH_SIZE = 1024

Validate = Callable[[torch.nn.Module, np.ndarray], np.ndarray]


def train(model, split: Split, validate: Validate | None = None, progress: bool = False,
          device: str | torch.device | None = None, metric: str = EARLY_STOPPING_METRIC) -> TrainingHistory:
    """Fit a :class:`~genrec_lib.models.base.TrainableRecommender` with early stopping.

    The model's attributes ``epochs``, ``patience``, ``eval_every`` and ``seed`` steer the
    loop; ``build``, ``training_batches`` and ``training_loss`` come from the model.

    Args:
        validate: ``validate(model, users)`` returns the early-stopping score of each of
            ``users`` (int array) as an array; the loop calls it on the users with held-out
            validation items, in batches, and early-stops on the mean. ``None``: no
            validation, the weights after the last epoch are kept.
        metric: the name under which the mean is recorded (``"valid_" + metric``).
    """
    from accelerate import Accelerator, DataLoaderConfiguration
    from accelerate.utils import broadcast

    seed_everything(model.seed)
    cpu = device is not None and torch.device(device).type == "cpu"
    # The model's batches are tuples or dicts of tensors of its own making: every process
    # draws them itself (no dispatching from the main process) and keeps its share.
    accelerator = Accelerator(cpu=cpu, dataloader_config=DataLoaderConfiguration(dispatch_batches=False))
    model.build(split)
    model.to(accelerator.device)
    optimizer = model.configure_optimizer()
    generator = torch.Generator().manual_seed(model.seed)
    # Each loader draws a seed per iteration; its own generator keeps those draws off the
    # global RNG, which the models' training losses use (dropout, noise).
    batches = DataLoader(_EpochBatches(model, split, generator), batch_size=1, collate_fn=_only,
                         generator=torch.Generator().manual_seed(model.seed))
    users = np.unique(split.held_out("valid").user)
    valid_users = DataLoader(torch.from_numpy(users), batch_size=VALIDATION_BATCH_SIZE,
                             generator=torch.Generator().manual_seed(model.seed))
    net, optimizer, batches, valid_users = accelerator.prepare(model, optimizer, batches, valid_users)
    history = TrainingHistory()
    best_state = None
    since_best = 0
    start = time.perf_counter()
    epochs = range(model.epochs)
    if progress and accelerator.is_local_main_process:
        from tqdm.auto import tqdm

        epochs = tqdm(epochs, desc=f"{model.name or type(model).__name__}", leave=False)
    for epoch in epochs:
        net.train()
        epoch_start = time.perf_counter()
        total, count = 0.0, 0
        for batch in batches:
            loss = net(batch)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimizer.step()
            total += float(loss.detach())
            count += 1
        if accelerator.num_processes > 1:
            total, count = accelerator.reduce(torch.tensor([total, count], dtype=torch.float64,
                                                           device=accelerator.device), "sum").tolist()
        record = {"epoch": epoch + 1, "loss": total / max(count, 1), "seconds": time.perf_counter() - epoch_start}
        validate_now = validate is not None and ((epoch + 1) % model.eval_every == 0 or epoch + 1 == model.epochs)
        if validate_now:
            parts = []
            for rows in valid_users:
                values = torch.as_tensor(validate(model, rows.cpu().numpy()), device=accelerator.device)
                parts.append(accelerator.gather_for_metrics(values).cpu())
            # The main process decides; every process receives the score and the decision.
            decision = torch.zeros(3, dtype=torch.float64, device=accelerator.device)
            if accelerator.is_main_process:
                score = float(torch.cat(parts).numpy().mean())
                improved = score > history.best_score
                stop = not improved and since_best + model.eval_every >= model.patience
                decision[:] = torch.tensor([score, improved, stop], dtype=torch.float64)
            if accelerator.num_processes > 1:
                decision = broadcast(decision, from_process=0)
            score, improved, stop = float(decision[0]), bool(decision[1]), bool(decision[2])
            record["valid_" + metric] = score
            if improved:
                history.best_score, history.best_epoch = score, epoch + 1
                best_state = copy.deepcopy(accelerator.unwrap_model(net).state_dict())
                since_best = 0
            else:
                since_best += model.eval_every
        history.epochs.append(record)
        if progress and hasattr(epochs, "set_postfix"):
            epochs.set_postfix({k: round(v, 4) for k, v in record.items() if k != "epoch"})
        if validate_now and stop:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    history.seconds = time.perf_counter() - start
    return history
