"""One training loop for every gradient-trained model in the book.

Seeded, early stopping on validation NDCG@10 (the best weights are restored), optional
tqdm progress, and device placement through Hugging Face Accelerate: on one machine it
picks CUDA when present, else the CPU; launched with ``accelerate launch`` on several
GPUs, each process trains on its share of every epoch's batches and DDP averages the
gradients, with no change to the model files.
"""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch

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


def _to_device(batch, device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def train(model, split: Split, progress: bool = False, device: str | torch.device | None = None) -> TrainingHistory:
    """Fit a :class:`~genrec_lib.models.base.TrainableRecommender` with early stopping.

    The model's attributes ``epochs``, ``patience``, ``eval_every`` and ``seed`` steer the
    loop; ``build``, ``training_batches`` and ``training_loss`` come from the model.
    """
    from accelerate import Accelerator

    from genrec_lib.evaluation.ranking import evaluate

    seed_everything(model.seed)
    cpu = device is not None and torch.device(device).type == "cpu"
    accelerator = Accelerator(cpu=cpu)
    model.build(split)
    model.to(accelerator.device)
    optimizer = model.configure_optimizer()
    net, optimizer = accelerator.prepare(model, optimizer)
    generator = torch.Generator().manual_seed(model.seed)
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
        for index, batch in enumerate(model.training_batches(split, generator)):
            if index % accelerator.num_processes != accelerator.process_index:
                continue
            loss = net(_to_device(batch, accelerator.device))
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimizer.step()
            total += float(loss.detach())
            count += 1
        record = {"epoch": epoch + 1, "loss": total / max(count, 1), "seconds": time.perf_counter() - epoch_start}
        if (epoch + 1) % model.eval_every == 0 or epoch + 1 == model.epochs:
            score = evaluate(model, split, "valid", ks=(10,), metrics=("ndcg",)).metrics[EARLY_STOPPING_METRIC]
            record["valid_" + EARLY_STOPPING_METRIC] = score
            if score > history.best_score:
                history.best_score, history.best_epoch = score, epoch + 1
                best_state = copy.deepcopy(accelerator.unwrap_model(net).state_dict())
                since_best = 0
            else:
                since_best += model.eval_every
        history.epochs.append(record)
        if progress and hasattr(epochs, "set_postfix"):
            epochs.set_postfix({k: round(v, 4) for k, v in record.items() if k != "epoch"})
        if since_best >= model.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    history.seconds = time.perf_counter() - start
    return history
