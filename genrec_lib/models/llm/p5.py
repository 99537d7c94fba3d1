"""P5: sequential recommendation as language, next-item text generated from the history as text.

Geng, Liu, Fu, Ge & Zhang, "Recommendation as Language Processing (RLP): A Unified Pretrain,
Personalized Prompt & Predict Paradigm (P5)", RecSys 2022. https://arxiv.org/abs/2203.13366

P5 writes every recommendation task as text-to-text. Its sequential task reads a user's
recent items as a prompt, ``x_u = "Watched: i_1; ...; i_L. Next?"``, and is trained to
write the next item, ``y = i_{L+1}``, with the language-modelling loss on the target's
tokens only,

    L(theta) = - sum_t log p_theta(y_t | x_u, y_<t).

Items are written in one of three ways (``item_repr``):

- ``"title"``: titles with the year, the text the pretrained model has read about;
- ``"id"``: numeric IDs such as ``"item 1234"``, P5's own choice, whose meaning the model
  must learn from the interactions alone (SmolLM2 spells a number digit by digit);
- ``"token"``: one new token per item, what Hua, Xu, Ge & Zhang call *independent
  indexing* ("How to Index Item IDs for Recommendation Foundation Models", SIGIR-AP 2023,
  https://arxiv.org/abs/2305.06569). The token's vector ``e_i`` in R^d is both its input
  embedding and its output vector, initialised from the item's title (the mean of the
  title's token embeddings); the next-item distribution is a softmax over the catalogue's
  tokens only,

      p(i | x_u, i_1..i_t) = softmax_i( tau * h_t . e_i + b_i ),

  with ``h_t`` the last hidden state, a learned temperature ``tau`` (initialised so that the
  first logits have unit spread) and a bias ``b_i`` initialised to the item's centred log
  training count. A whole training sequence is one example: one forward pass trains the
  prediction at every position, as P5 trains on every position of every sequence, and a
  user's candidates are all scored by one forward pass over her history.

For titles and IDs, a candidate ``i`` is scored by the log-likelihood of its text after
the prompt, summed over its tokens or averaged (``reduce``):

    s(u, i) = log p_theta(text(i), END | x_u)     (reduce="sum")

with the prompt's key/value cache shared by all candidates
(:meth:`~genrec_lib.models.llm.lm.LM.score_continuations`). :meth:`P5.generate` instead
writes the next item with a beam search that may only spell catalogue entries
(:class:`~genrec_lib.models.llm.lm.TitleTrie`), so every generated answer is a real item.

Deviations from the paper: SmolLM2-135M-Instruct (decoder-only) with LoRA adapters
instead of a fully fine-tuned T5 encoder-decoder; one task (sequential recommendation)
instead of P5's five task families and their many prompt templates; a few hundred
training examples, each a random position of a random user's *training* sequence,
instead of every position of every sequence (item tokens: a few hundred whole sequences);
ranking of the ``llmrank`` candidates by likelihood (P5 ranks by beam search over all items,
which :meth:`P5.generate` shows).
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from genrec_lib.data import Interactions, Split
from genrec_lib.models.base import Recommender, check_positive, register
from genrec_lib.models.llm.items import item_names

SYSTEM = "Predict the next movie."
#: The user turn before a sequence of item tokens, which the answer continues.
TOKEN_PROMPT = "Watched, oldest first:"
ITEM_REPRS = ("title", "id", "token")
#: The file beside the adapters that holds the item tokens' table, bias and temperature.
ITEM_TOKENS_FILE = "item_tokens.safetensors"
REDUCES = ("sum", "mean")
#: How item tokens start: from their titles, or at random (the control that shows what the titles bring).
INITS = ("title", "random")


def item_texts(data: Interactions, item_repr: str = "title") -> list[str]:
    """The text of every item: ``"The Godfather (1972)"`` or ``"item 127"`` (the raw MovieLens id).

    Item tokens (``"token"``) are written ``"<item 127>"`` when shown to a reader; the model
    never reads that text, only the token's vector.
    """
    if item_repr not in ITEM_REPRS:
        raise ValueError(f"unknown item_repr {item_repr!r}; choose one of: {', '.join(ITEM_REPRS)}")
    if item_repr == "title":
        return item_names(data)
    if item_repr == "token":
        return [f"<item {raw}>" for raw in data.item_ids]
    return [f"item {raw}" for raw in data.item_ids]


def prompt(lm, history_texts: list[str]) -> str:
    """The chat prompt ``x_u`` for a history given as item texts (oldest first), ending where the answer starts."""
    watched = "; ".join(history_texts) if history_texts else "nothing yet"
    return lm.chat(f"Watched: {watched}.\nNext?", system=SYSTEM)


def training_pairs(train: Interactions, n: int, n_history: int = 5,
                   seed: int = 2020) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """``n`` (history, next item) pairs from the training interactions only, seeded.

    A user is drawn uniformly among those with at least two training interactions, then a
    position ``t >= 1`` of her training sequence; the history is the (at most)
    ``n_history`` items before ``t`` and the target the item at ``t``.

    Returns:
        users (n,), histories (n lists of item indices, oldest first), targets (n,).
    """
    check_positive(n=n, n_history=n_history)
    rng = np.random.default_rng(seed)
    sequences = train.sequences()
    pool = np.array([u for u, s in enumerate(sequences) if len(s) >= 2])
    if len(pool) == 0:
        raise ValueError("no user has the two training interactions a (history, next item) pair needs")
    users = rng.choice(pool, n)
    histories, targets = [], []
    for u in users:
        s = sequences[u]
        t = int(rng.integers(1, len(s)))
        histories.append(s[max(0, t - n_history):t])
        targets.append(int(s[t]))
    return users, histories, np.array(targets)


def training_sequences(train: Interactions, n: int, seq_len: int = 40,
                       seed: int = 2020) -> tuple[np.ndarray, list[np.ndarray]]:
    """The training sequences of ``n`` users (at most the last ``seq_len`` items each), seeded.

    Users are drawn without replacement among those with at least two training
    interactions (all of them when ``n`` is larger). Every position of a sequence is a
    target given the items before it, so no held-out interaction is ever read or predicted.

    Returns:
        users (m,), sequences (m arrays of item indices, oldest first), m = min(n, eligible users).
    """
    check_positive(n=n, seq_len=seq_len)
    sequences = train.sequences()
    pool = np.array([u for u, s in enumerate(sequences) if len(s) >= 2])
    if len(pool) == 0:
        raise ValueError("no user has the two training interactions a sequence needs")
    users = np.sort(np.random.default_rng(seed).choice(pool, min(n, len(pool)), replace=False))
    return users, [np.asarray(sequences[u][-seq_len:]) for u in users]


class ItemTokens(torch.nn.Module):
    """The catalogue's tokens: a table ``E`` (n_items, d) read as input and as output.

    ``logits(h) = tau * h E^T + b`` over the items only, so every prediction is a catalogue
    item (constrained decoding by construction).
    """

    def __init__(self, E: torch.Tensor, b: torch.Tensor, log_tau: float = 0.0):
        super().__init__()
        self.E = torch.nn.Parameter(E.detach().float().clone())  # (n_items, d)
        self.b = torch.nn.Parameter(b.detach().float().clone())  # (n_items,)
        self.log_tau = torch.nn.Parameter(torch.tensor(float(log_tau)))

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """(..., d) hidden states -> (..., n_items) next-item logits."""
        return self.log_tau.exp() * (h @ self.E.T) + self.b

    @classmethod
    @torch.no_grad()
    def from_titles(cls, lm, titles: list[str], counts: np.ndarray, init: str = "title", seed: int = 2020) -> "ItemTokens":
        """``e_i`` = mean input embedding of the title's tokens; ``b_i`` = centred log(1 + training count).

        ``init="random"`` draws ``e_i`` from a normal distribution with the same overall
        spread instead: the same model without what it read about the titles.
        """
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; choose one of: {', '.join(INITS)}")
        table = lm.model.get_input_embeddings().weight  # (V, d)
        E = torch.stack([table[torch.tensor(lm.encode(t), device=table.device)].mean(0) for t in titles]).cpu()
        if init == "random":
            E = torch.randn(E.shape, generator=torch.Generator().manual_seed(seed)) * E.std()
        prior = np.log1p(np.asarray(counts, dtype=np.float64))
        return cls(E, torch.from_numpy(prior - prior.mean()))


@register("llm-p5")
class P5(Recommender):
    """SmolLM2 with LoRA adapters tuned to write a user's next item, ranking ``llmrank`` candidates.

    The defaults (item tokens from 300 users' sequences, learning rates 2e-3 for the adapters
    and 1e-2 for the tokens) were chosen on ``llmrank`` validation users; titles and IDs keep
    the setting chosen for them earlier (256 pairs, summed scores).
    ``benchmarks/llmrank_finetuned.py`` records the variants' validation and test scores.

    Args:
        item_repr: ``"token"`` (one new token per item), ``"title"`` (titles with years) or
            ``"id"`` (``"item 1234"``).
        n_examples: training examples from the training split: (history, next item) pairs
            for titles and IDs, whole user sequences (every position a target) for tokens.
            Default 256 pairs, 300 sequences.
        epochs, batch_size, learning_rate: LoRA training (:func:`~genrec_lib.models.llm.lora.optimise`).
        item_learning_rate: learning rate of the item tokens' table, bias and temperature.
        init: how item tokens start, ``"title"`` (their title's mean token embedding) or
            ``"random"`` (the control without the titles).
        rank, alpha: LoRA rank r and scale alpha (query and value projections of every layer).
        n_history: most recent items in each prompt, training and scoring alike (default 5
            for titles and IDs, whose prompts are long; 40 for item tokens).
        reduce: ``"sum"`` (log-likelihood of the whole text) or ``"mean"`` (per token:
            long titles are not penalised for their length); titles and IDs only.
        adapter: a folder saved by :meth:`save`; when given, nothing is trained.
        model_id: Hugging Face id; default the offline SmolLM2 (or ``$GENREC_LLM``).
        progress: show the training bar.
        seed: seeds the training examples, the adapters' initialisation and the batch order.
    """

    #: it ranks candidate texts: only the llmrank protocol applies
    protocols = ("llmrank",)

    def __init__(self, item_repr: str = "token", n_examples: int | None = None, epochs: int = 1, batch_size: int = 8,
                 learning_rate: float = 2e-3, item_learning_rate: float = 1e-2, rank: int = 8, alpha: int = 16,
                 init: str = "title", n_history: int | None = None, reduce: str = "sum", adapter: str | None = None,
                 model_id: str | None = None, progress: bool = False, seed: int = 2020):
        super().__init__()
        if item_repr not in ITEM_REPRS:
            raise ValueError(f"unknown item_repr {item_repr!r}; choose one of: {', '.join(ITEM_REPRS)}")
        if reduce not in REDUCES:
            raise ValueError(f"unknown reduce {reduce!r}; choose one of: {', '.join(REDUCES)}")
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; choose one of: {', '.join(INITS)}")
        tokens = item_repr == "token"
        n_examples = (300 if tokens else 256) if n_examples is None else n_examples
        n_history = (40 if tokens else 5) if n_history is None else n_history
        check_positive(n_examples=n_examples, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                       item_learning_rate=item_learning_rate, rank=rank, alpha=alpha, n_history=n_history)
        self.item_repr, self.n_examples, self.epochs, self.batch_size = item_repr, n_examples, epochs, batch_size
        self.learning_rate, self.item_learning_rate, self.rank, self.alpha = learning_rate, item_learning_rate, rank, alpha
        self.init, self.n_history, self.reduce, self.adapter, self.model_id = init, n_history, reduce, adapter, model_id
        self.progress, self.seed = progress, seed

    def fit(self, split: Split, lm=None, peft_model=None, item_tokens: ItemTokens | None = None) -> "P5":
        """Train on ``split.train`` (or load ``adapter``, or wrap a trained ``peft_model`` and ``item_tokens``)."""
        from genrec_lib.models.llm.lm import LM, load_lm
        from genrec_lib.models.llm.lora import add_lora, load_adapter

        self.lm = lm if lm is not None else load_lm(self.model_id)
        self.texts = item_texts(split.dataset, self.item_repr)  # (n_items,) item text
        self.data_ = split.dataset
        self.log_ = None
        tokens = self.item_repr == "token"
        if tokens:
            self.prefix_ = self.lm.encode(self.lm.chat(TOKEN_PROMPT, system=SYSTEM))  # the prompt's token ids
        if peft_model is None:
            base = copy.deepcopy(self.lm.model)  # the shared model stays untouched
            if self.adapter:
                peft_model = load_adapter(base, self.adapter)
                if tokens:
                    item_tokens = _load_item_tokens(self.adapter)
            else:
                peft_model = add_lora(base, r=self.rank, alpha=self.alpha, seed=self.seed)
                if tokens:
                    item_tokens = ItemTokens.from_titles(self.lm, item_names(split.dataset),
                                                         split.train.item_popularity(), self.init, self.seed)
                    self._train_tokens(split, peft_model, item_tokens)
                else:
                    self._train_texts(split, peft_model)
        if tokens:
            if item_tokens is None:
                raise ValueError("item_repr='token' needs the item tokens: pass item_tokens= with peft_model=")
            self.item_tokens = item_tokens.to(self.lm.device).eval()
        self.tuned = LM(peft_model, self.lm.tokenizer, f"{self.lm.name} + P5 LoRA ({self.item_repr})", self.lm.device)
        return self

    def _train_texts(self, split: Split, peft_model) -> None:
        """Titles and IDs: the loss of the next item's text after the prompt, on random (history, next) pairs."""
        from genrec_lib.models.llm.lora import train_lora

        self.users_, histories, self.targets_ = training_pairs(split.train, self.n_examples, self.n_history, self.seed)
        self.prompts_ = [prompt(self.lm, [self.texts[i] for i in h]) for h in histories]
        self.log_ = train_lora(peft_model, self.lm.tokenizer, self.prompts_,
                               [self.texts[i] + self.lm.end_text for i in self.targets_], epochs=self.epochs,
                               batch_size=self.batch_size, learning_rate=self.learning_rate, seed=self.seed,
                               progress=self.progress, desc="P5 LoRA")

    def _train_tokens(self, split: Split, peft_model, item_tokens: ItemTokens) -> None:
        """Item tokens: cross-entropy over the catalogue at every position of whole training sequences."""
        from genrec_lib.models.llm.lora import optimise

        self.users_, self.sequences_ = training_sequences(split.train, self.n_examples, self.n_history, self.seed)
        item_tokens.to(self.lm.device)
        with torch.no_grad():  # tau such that the first logits have unit spread
            h, _ = self._hidden(peft_model, item_tokens, self.sequences_[: self.batch_size])
            item_tokens.log_tau.fill_(-float(torch.log((h[:, -1] @ item_tokens.E.T).std())))

        def loss_of(index):
            batch = [self.sequences_[i] for i in index]
            h, mask = self._hidden(peft_model, item_tokens, batch)  # (B, T, d)
            T = h.shape[1]
            targets = torch.full(mask.shape, -100, dtype=torch.long, device=h.device)  # (B, T)
            for row, items in enumerate(batch):  # the position before each item predicts it
                targets[row, T - len(items) - 1 : T - 1] = torch.as_tensor(items, device=h.device)
            keep = targets >= 0
            loss = torch.nn.functional.cross_entropy(item_tokens.logits(h[keep]), targets[keep])
            return loss, sum(len(self.prefix_) + len(items) for items in batch)

        lora_params = [p for p in peft_model.parameters() if p.requires_grad]
        groups = [{"params": lora_params, "lr": self.learning_rate},
                  {"params": list(item_tokens.parameters()), "lr": self.item_learning_rate}]
        self.log_ = optimise(peft_model, groups, len(self.sequences_), loss_of, epochs=self.epochs,
                             batch_size=self.batch_size, seed=self.seed, progress=self.progress, desc="P5 LoRA")

    def _hidden(self, model, item_tokens: ItemTokens, histories) -> tuple[torch.Tensor, torch.Tensor]:
        """Last hidden states of the prompt's last token followed by each history's item tokens, left-padded.

        The rest of the prompt is the same for every history: it runs once, and its key/value
        cache is shared by the batch (:func:`~genrec_lib.models.llm.lora.forward_shared`).
        Returns (B, T, d) states, whose last column reads each whole history, and the (B, T) mask.
        """
        from genrec_lib.models.llm.lora import forward_shared, left_pad, shared_length

        body = (model.get_base_model() if hasattr(model, "get_base_model") else model).model  # the decoder stack
        V = self.lm.model.get_input_embeddings().weight.shape[0]
        P = shared_length([self.prefix_])  # all but the prompt's last token, which predicts the first item
        # vocabulary ids for the prompt, V + i for item i
        ids, mask, positions = (t.to(self.lm.device) for t in left_pad(
            [self.prefix_[P:] + [V + int(i) for i in h] for h in histories], self.lm.pad_id))
        is_item = ids >= V
        words = body.embed_tokens(ids.clamp(max=V - 1))  # (B, T, d)
        x = torch.where(is_item[..., None], item_tokens.E[(ids - V).clamp(min=0)], words)
        prefix = {"input_ids": torch.tensor([self.prefix_[:P]], device=self.lm.device)} if P else None
        h = forward_shared(body, prefix, mask, positions, inputs_embeds=x).last_hidden_state
        return h, mask

    @property
    def model_name(self) -> str:
        return self.tuned.name

    @property
    def device(self) -> torch.device:
        return self.lm.device if hasattr(self, "lm") else torch.device("cpu")

    def save(self, path) -> None:
        """Save the adapters in peft's format (and the item tokens beside them); ``P5(adapter=path).fit(split)`` reloads them."""
        from safetensors.torch import save_file

        from genrec_lib.models.llm.lora import save_adapter

        self._check_fitted()
        folder = save_adapter(self.tuned.model, path)
        if self.item_repr == "token":
            save_file({k: v.detach().cpu().contiguous() for k, v in self.item_tokens.state_dict().items()},
                      str(folder / ITEM_TOKENS_FILE))

    def _check_fitted(self) -> None:
        if not hasattr(self, "tuned"):
            raise ValueError("fit the model first: P5(...).fit(split)")

    def score(self, batch):
        raise NotImplementedError(f"{self.name} ranks candidate texts only; evaluate it with the llmrank protocol "
                                  "(genrec bench --protocol llmrank)")

    def user_prompt(self, history) -> str:
        """The prompt of one user from her history (item indices, oldest first): the last ``n_history`` items."""
        self._check_fitted()
        if self.item_repr == "token":
            return self.lm.tokenizer.decode(self.prefix_) + "".join(self.texts[int(i)] for i in
                                                                      list(history)[-self.n_history:])
        return prompt(self.tuned, [self.texts[int(i)] for i in list(history)[-self.n_history:]])

    @torch.no_grad()
    def item_logits(self, histories, batch_size: int = 32) -> torch.Tensor:
        """Item tokens only: next-item logits over the whole catalogue after each history, (B, n_items)."""
        self._check_fitted()
        if self.item_repr != "token":
            raise ValueError(f"item_logits needs item_repr='token'; this model writes items as {self.item_repr!r}")
        check_positive(batch_size=batch_size)
        out = []
        for first in range(0, len(histories), batch_size):
            chunk = [list(h)[-self.n_history:] for h in histories[first : first + batch_size]]
            h, _ = self._hidden(self.tuned.model, self.item_tokens, chunk)
            out.append(self.item_tokens.logits(h[:, -1]).float().cpu())
        return torch.cat(out)

    def score_user(self, history, candidates) -> np.ndarray:
        """s(u, i) for each candidate of one user, (C,): the prompt is encoded once and its cache shared."""
        if self.item_repr == "token":
            return self.item_logits([history])[0, np.asarray(candidates, dtype=np.int64)].numpy().astype(np.float64)
        out = self.tuned.score_continuations(self.user_prompt(history),
                                             [self.texts[int(i)] + self.tuned.end_text for i in candidates])
        return (out.sum if self.reduce == "sum" else out.mean).numpy().astype(np.float64)

    def score_candidates(self, task) -> torch.Tensor:
        """(U, C) scores of an ``llmrank`` task's candidates."""
        if self.item_repr == "token":
            return self.item_logits(task.history).gather(1, torch.as_tensor(task.candidates, dtype=torch.long))
        rows = [self.score_user(h, c) for h, c in zip(task.history, task.candidates)]
        return torch.tensor(np.stack(rows), dtype=torch.float32)

    def generate(self, histories, n: int = 10, exclude=None, batch_size: int = 4) -> list[list[int]]:
        """For each history, up to ``n`` items written by trie-constrained beam search, best first.

        Every answer spells a catalogue entry (titles or ``"item <id>"``); items in
        ``exclude[k]`` (e.g. the user's seen items) are dropped from the k-th list, so
        ``2 n`` items are searched for and the first ``n`` that remain are kept. With item
        tokens every item is one token of a softmax over the catalogue, so the ``n`` best
        unseen tokens are the answer (an exact search, no beam needed).
        """
        from genrec_lib.models.llm.lm import TitleTrie

        self._check_fitted()
        check_positive(n=n, batch_size=batch_size)
        exclude = [()] * len(histories) if exclude is None else [set(map(int, skip)) for skip in exclude]
        if len(exclude) != len(histories):
            raise ValueError(f"exclude has {len(exclude)} entries for {len(histories)} histories; give one per history")
        if self.item_repr == "token":
            logits = self.item_logits(histories, batch_size)
            for row, skip in enumerate(exclude):
                logits[row, list(skip)] = -torch.inf
            return [row[torch.isfinite(logits[k, row])].tolist() for k, row in
                    enumerate(logits.topk(min(n, logits.shape[1]), dim=1).indices)]
        if not hasattr(self, "trie_"):
            self.trie_ = TitleTrie(self.tuned, self.texts)
        prompts = [self.user_prompt(h) for h in histories]
        found = self.tuned.generate_constrained(prompts, self.trie_, n=2 * n, batch_size=batch_size)
        return [[i for i in items if i not in skip][:n] for items, skip in zip(found, exclude)]


def _load_item_tokens(path) -> ItemTokens:
    """The item tokens saved by :meth:`P5.save` beside the adapters."""
    from pathlib import Path

    from safetensors.torch import load_file

    file = Path(path) / ITEM_TOKENS_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{path} holds no {ITEM_TOKENS_FILE}; it was not saved by an item-token P5 "
                                "(load it with the item_repr it was trained with)")
    state = load_file(str(file))
    return ItemTokens(state["E"], state["b"], float(state["log_tau"]))
