"""LLaRA: a language model that reads a sequential recommender's item embeddings as soft tokens.

Liao, Li, Yang, Wu, Yuan, Wang & He, "LLaRA: Large Language-Recommendation Assistant",
SIGIR 2024. https://arxiv.org/abs/2312.02445

A trained SASRec (:class:`~genrec_lib.models.sasrec.SASRec`, fitted on the training split)
knows each item as a vector ``m_i`` in R^{d_r} learned from the interactions alone. LLaRA
maps it into the language model's embedding space with a two-layer MLP, the *projector*,

    z_i = W_2 GELU(W_1 m_i + c_1) + c_2     in R^d,

and writes every item of a prompt in a *hybrid* form: the title's tokens followed by one
soft token whose input vector is ``z_i``,

    x_u = [instruction] title(i_1) <z_{i_1}> ... title(i_L) <z_{i_L}>.

LoRA adapters (:mod:`genrec_lib.models.llm.lora`) and the projector are trained together.
LLaRA's *curriculum* starts from text-only prompts (the soft token replaced by a
placeholder token, the projector frozen) and switches each batch to hybrid prompts with a
probability that grows linearly from 0 to 1 over training.

Here the candidates are scored as P5 with item tokens scores them
(:class:`~genrec_lib.models.llm.p5.P5`): the last hidden state ``h_t`` (read at item
``i_t``'s soft token) gives every item a logit

    s(u, i) = tau * h_t . (t_i + z_i) + b_i,

with ``t_i`` the mean input embedding of the title's tokens (fixed), ``z_i`` the same
projected embedding the prompt reads, a learned temperature ``tau`` and a bias ``b_i``
initialised to the centred log training count. One forward pass over a user's history
scores the whole catalogue; one pass over a training sequence trains the prediction at
every position (cross-entropy over the catalogue).

Deviations from the paper: SmolLM2-135M-Instruct with LoRA on the query and value
projections (LLaRA: Llama2-7B, LoRA on every projection); the candidates are not written
into the prompt and the answer is not generated as a title: candidates are ranked by the
next-item logits above (one forward pass per user instead of one generation per
candidate list, and a training signal at every position of a sequence); the output vector
of an item is its hybrid representation ``t_i + z_i``; a few hundred training sequences
(one epoch) instead of every sequence for several epochs; the curriculum's
placeholder is one learned vector; no cosine learning-rate schedule. ``mode="titles"``
(no soft tokens, output ``t_i``) and ``mode="frozen"`` (projector left at its random
initialisation) are the ablations.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from genrec_lib.data import Split
from genrec_lib.models.base import Recommender, check_positive, register
from genrec_lib.models.llm.items import item_names

SYSTEM = "Predict the next movie."
PROMPT = "Watched, oldest first:"
MODES = ("hybrid", "titles", "frozen")
#: The file beside the adapters that holds the projector, SASRec's item table, bias, temperature and placeholder.
STATE_FILE = "llara.safetensors"
#: Longest title (in tokens) a prompt shows; longer titles are cut.
MAX_TITLE_TOKENS = 12


class Projector(nn.Module):
    """LLaRA's two-layer MLP ``z = W_2 GELU(W_1 m + c_1) + c_2``: (..., d_r) -> (..., d)."""

    def __init__(self, d_rec: int, d_lm: int, seed: int = 2020):
        super().__init__()
        torch.manual_seed(seed)
        self.mlp = nn.Sequential(nn.Linear(d_rec, d_lm), nn.GELU(), nn.Linear(d_lm, d_lm))

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        return self.mlp(m)

    @torch.no_grad()
    def match_scale(self, M: torch.Tensor, target_std: float) -> None:
        """Rescale the last layer so that ``z`` has the spread of the language model's token embeddings."""
        spread = float(self(M).std())
        self.mlp[2].weight.mul_(target_std / spread)
        self.mlp[2].bias.mul_(target_std / spread)


@register("llm-llara")
class LLaRA(Recommender):
    """SmolLM2 reading titles plus SASRec embeddings (through a projector), tuned with LoRA to predict the next item.

    Args:
        mode: ``"hybrid"`` (titles and projected embeddings, LLaRA), ``"titles"`` (titles
            only, the ablation without projector) or ``"frozen"`` (hybrid with the projector
            left untrained).
        curriculum: LLaRA's curriculum (text-only batches first, hybrid with a probability
            rising linearly to 1); off: every batch is hybrid.
        n_examples: training sequences (users) from the training split; every position a target.
        n_history: most recent items in each prompt, training and scoring alike.
        epochs, batch_size, learning_rate: LoRA training (:func:`~genrec_lib.models.llm.lora.optimise`).
        projector_learning_rate: learning rate of the projector; bias, temperature and
            placeholder use ten times ``learning_rate``.
        rank, alpha: LoRA rank and scale.
        sasrec_epochs: epochs of the SASRec that gives the embeddings (``max_seq_len=n_history``).
        adapter: a folder saved by :meth:`save`; when given, nothing is trained.
        model_id: Hugging Face id; default the offline SmolLM2.
        progress: show the training bar.
        seed: seeds SASRec, the sequences, the adapters, the projector and the batch order.
    """

    protocols = ("llmrank",)

    def __init__(self, mode: str = "hybrid", curriculum: bool = True, n_examples: int = 200, n_history: int = 20,
                 epochs: int = 1, batch_size: int = 4, learning_rate: float = 2e-3,
                 projector_learning_rate: float = 1e-3, rank: int = 8, alpha: int = 16, sasrec_epochs: int = 30,
                 adapter: str | None = None, model_id: str | None = None, progress: bool = False, seed: int = 2020):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}")
        check_positive(n_examples=n_examples, n_history=n_history, epochs=epochs, batch_size=batch_size,
                       learning_rate=learning_rate, projector_learning_rate=projector_learning_rate, rank=rank,
                       alpha=alpha, sasrec_epochs=sasrec_epochs)
        self.mode, self.curriculum, self.n_examples, self.n_history = mode, curriculum, n_examples, n_history
        self.epochs, self.batch_size, self.learning_rate = epochs, batch_size, learning_rate
        self.projector_learning_rate, self.rank, self.alpha, self.sasrec_epochs = projector_learning_rate, rank, alpha, sasrec_epochs
        self.adapter, self.model_id, self.progress, self.seed = adapter, model_id, progress, seed

    # --- building blocks ------------------------------------------------------------------
    @property
    def soft(self) -> bool:
        return self.mode != "titles"

    def fit(self, split: Split, lm=None, sasrec=None) -> "LLaRA":
        """Train on ``split.train`` (or load ``adapter``); ``sasrec``: a fitted SASRec to read embeddings from."""
        from genrec_lib.models.llm.lm import load_lm
        from genrec_lib.models.llm.lora import add_lora, load_adapter

        self.lm = lm if lm is not None else load_lm(self.model_id)
        self.log_, self.data_ = None, split.dataset
        table = self.lm.model.get_input_embeddings().weight.detach()  # (V, d)
        self.V_ = table.shape[0]
        self.prefix_ = self.lm.encode(self.lm.chat(PROMPT, system=SYSTEM))
        self.titles_ = [self.lm.encode(" " + t)[:MAX_TITLE_TOKENS] for t in item_names(split.dataset)]
        self.T_ = torch.stack([table[torch.tensor(ids, device=table.device)].mean(0) for ids in self.titles_]).cpu()  # t_i (I, d)
        base = copy.deepcopy(self.lm.model)
        if self.adapter:
            self.tuned_ = load_adapter(base, self.adapter)
            self._load_state(self.adapter)
            return self._to_device()
        if sasrec is None:
            from genrec_lib.models.sasrec import SASRec

            sasrec = SASRec(max_seq_len=self.n_history, epochs=self.sasrec_epochs, seed=self.seed).fit(split)
        M = sasrec.item_table()[: split.n_items].detach().float().cpu()  # m_i (I, d_r)
        self.M_ = nn.Parameter(M, requires_grad=False)
        self.projector_ = Projector(M.shape[1], table.shape[1], seed=self.seed)
        self.projector_.match_scale(M, float(table.std()))
        prior = np.log1p(split.train.item_popularity().astype(np.float64))
        self.b_ = nn.Parameter(torch.from_numpy(prior - prior.mean()).float())
        self.log_tau_ = nn.Parameter(torch.zeros(()))
        self.placeholder_ = nn.Parameter(table.mean(0).cpu().clone())  # LLaRA's [PH] token
        self.tuned_ = add_lora(base, r=self.rank, alpha=self.alpha, seed=self.seed)
        self._to_device()
        self._train(split)
        return self

    def _to_device(self) -> "LLaRA":
        device = self.lm.device
        for name in ("M_", "b_", "log_tau_", "placeholder_"):
            getattr(self, name).data = getattr(self, name).data.to(device)
        self.projector_.to(device)
        self.T_ = self.T_.to(device)
        self.projector_.eval()
        return self

    def outputs(self, hybrid: bool = True) -> torch.Tensor:
        """Output vectors of every item, (I, d): ``t_i + z_i`` (``t_i`` in titles mode)."""
        if not self.soft:
            return self.T_
        z = self.projector_(self.M_)
        return self.T_ + (z if hybrid else z.detach())

    def _hidden(self, model, histories, hybrid: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states at the end of each history item (its soft token, or its title's last token).

        Returns (B, L, d) states, left-padded per item slot, and the (B, L) mask of real items.
        """
        from genrec_lib.models.llm.lora import left_pad

        body = (model.get_base_model() if hasattr(model, "get_base_model") else model).model  # the decoder stack
        V, rows, ends = self.V_, [], []
        for items in histories:
            ids, end = list(self.prefix_), []
            for i in items:
                ids += self.titles_[int(i)] + ([V + int(i)] if self.soft else [])
                end.append(len(ids) - 1)
            rows.append(ids)
            ends.append(end)
        ids, mask, positions = (t.to(self.lm.device) for t in left_pad(rows, self.lm.pad_id))
        x = body.embed_tokens(ids.clamp(max=V - 1))  # (B, T, d)
        if self.soft:
            is_item = ids >= V
            if hybrid:
                z = self.projector_(self.M_[(ids[is_item] - V)])  # (n_soft, d)
            else:  # curriculum's text-only prompt: the placeholder, projector untouched
                z = self.placeholder_.expand(int(is_item.sum()), -1)
            x = x.masked_scatter(is_item[..., None], z.to(x.dtype))
        h = body(inputs_embeds=x, attention_mask=mask, position_ids=positions).last_hidden_state  # (B, T, d)
        T, L = ids.shape[1], max(len(e) for e in ends)
        index = torch.zeros(len(rows), L, dtype=torch.long)
        real = torch.zeros(len(rows), L, dtype=torch.bool)
        for r, (row, end) in enumerate(zip(rows, ends)):
            shift = T - len(row)
            index[r, L - len(end):] = torch.tensor(end) + shift
            real[r, L - len(end):] = True
        index, real = index.to(h.device), real.to(h.device)
        return h.gather(1, index[..., None].expand(-1, -1, h.shape[-1])), real

    def _logits(self, h: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return self.log_tau_.exp() * (h @ out.T) + self.b_

    def _train(self, split: Split) -> None:
        from genrec_lib.models.llm.lora import optimise
        from genrec_lib.models.llm.p5 import training_sequences

        self.users_, self.sequences_ = training_sequences(split.train, self.n_examples, self.n_history, self.seed)
        if self.mode == "frozen":
            self.projector_.requires_grad_(False)
        with torch.no_grad():  # tau such that the first logits have unit spread
            h, real = self._hidden(self.tuned_, self.sequences_[: self.batch_size])
            self.log_tau_.fill_(-float(torch.log((h[real] @ self.outputs().T).std())))
        n_steps = self.epochs * -(-len(self.sequences_) // self.batch_size)
        rng, step = np.random.default_rng(self.seed + 1), [0]

        def loss_of(index):
            # LLaRA's curriculum: hybrid with probability step / n_steps, else text-only
            hybrid = (not self.curriculum) or rng.random() < step[0] / n_steps
            step[0] += 1
            batch = [self.sequences_[i] for i in index]
            h, real = self._hidden(self.tuned_, batch, hybrid=hybrid)  # (B, L, d)
            L = h.shape[1]
            targets = torch.full(real.shape, -100, dtype=torch.long, device=h.device)
            for row, items in enumerate(batch):  # item t's state predicts item t + 1
                targets[row, L - len(items): L - 1] = torch.as_tensor(items[1:], device=h.device)
            keep = targets >= 0
            loss = nn.functional.cross_entropy(self._logits(h[keep], self.outputs(hybrid)), targets[keep])
            tokens = sum(len(self.prefix_) + sum(len(self.titles_[int(i)]) + self.soft for i in s) for s in batch)
            return loss, tokens

        lora = [p for p in self.tuned_.parameters() if p.requires_grad]
        groups = [{"params": lora, "lr": self.learning_rate},
                  {"params": [self.b_, self.log_tau_, self.placeholder_], "lr": 10 * self.learning_rate}]
        if self.mode == "hybrid":
            groups.append({"params": list(self.projector_.parameters()), "lr": self.projector_learning_rate})
        self.log_ = optimise(self.tuned_, groups, len(self.sequences_), loss_of, epochs=self.epochs,
                             batch_size=self.batch_size, seed=self.seed, progress=self.progress, desc="LLaRA LoRA")
        self.projector_.eval()

    # --- scoring ----------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "tuned_"):
            raise ValueError("fit the model first: LLaRA(...).fit(split)")

    @property
    def model_name(self) -> str:
        return f"{self.lm.name} + LLaRA ({self.mode})"

    def score(self, batch):
        raise NotImplementedError(f"{self.name} ranks llmrank candidates only; evaluate it with the llmrank protocol "
                                  "(genrec bench --protocol llmrank)")

    @torch.no_grad()
    def item_logits(self, histories, batch_size: int = 16) -> torch.Tensor:
        """Next-item logits over the whole catalogue after each history (its last ``n_history`` items), (B, I)."""
        self._check_fitted()
        check_positive(batch_size=batch_size)
        out, vectors = [], self.outputs()
        for first in range(0, len(histories), batch_size):
            chunk = [list(h)[-self.n_history:] for h in histories[first: first + batch_size]]
            if any(len(h) == 0 for h in chunk):
                raise ValueError("every history needs at least one item; LLaRA reads no empty prompt")
            h, _ = self._hidden(self.tuned_, chunk)
            out.append(self._logits(h[:, -1], vectors).float().cpu())
        return torch.cat(out)

    def score_candidates(self, task) -> torch.Tensor:
        """(U, C) scores of an ``llmrank`` task's candidates (one forward pass per user)."""
        return self.item_logits(task.history).gather(1, torch.as_tensor(task.candidates, dtype=torch.long))

    # --- saving -------------------------------------------------------------------------------
    def save(self, path) -> None:
        """Adapters in peft's format plus projector, SASRec table, bias, temperature; ``LLaRA(adapter=path).fit(split)`` reloads."""
        from pathlib import Path

        from safetensors.torch import save_file

        from genrec_lib.models.llm.lora import save_adapter

        self._check_fitted()
        folder = save_adapter(self.tuned_, path)
        state = {f"projector.{k}": v for k, v in self.projector_.state_dict().items()}
        state.update(M=self.M_, b=self.b_, log_tau=self.log_tau_, placeholder=self.placeholder_,
                     mode=torch.tensor(MODES.index(self.mode)))
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(Path(folder) / STATE_FILE))

    def _load_state(self, path) -> None:
        from pathlib import Path

        from safetensors.torch import load_file

        file = Path(path) / STATE_FILE
        if not file.is_file():
            raise FileNotFoundError(f"{path} holds no {STATE_FILE}; save the model with LLaRA.save()")
        state = load_file(str(file))
        saved = MODES[int(state["mode"])]
        if saved != self.mode:
            raise ValueError(f"{path} was saved with mode={saved!r}; load it with LLaRA(mode={saved!r}, adapter=...)")
        self.M_ = nn.Parameter(state["M"], requires_grad=False)
        self.projector_ = Projector(state["M"].shape[1], self.T_.shape[1], seed=self.seed)
        self.projector_.load_state_dict({k[len("projector."):]: v for k, v in state.items() if k.startswith("projector.")})
        self.b_, self.log_tau_ = nn.Parameter(state["b"]), nn.Parameter(state["log_tau"])
        self.placeholder_ = nn.Parameter(state["placeholder"])
