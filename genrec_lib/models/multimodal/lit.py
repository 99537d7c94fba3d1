"""LiT: Locked-image Tuning (Zhai et al., CVPR 2022), built with open_clip's contrastive loss.

https://arxiv.org/abs/2111.07991 (LiT); the loss is CLIP's (Radford et al., ICML 2021,
https://arxiv.org/abs/2103.00020) as implemented by ``open_clip.loss.ClipLoss``.

A joint image-text space from two pretrained towers: ImageNet EfficientNet-Lite0 for images
(:mod:`genrec_lib.image_encoders`, locked) and all-MiniLM-L6-v2 for text
(:mod:`genrec_lib.text_encoders`). Two linear projection heads ``f`` and ``g`` and the
temperature are trained with the symmetric InfoNCE loss over a batch of matched pairs.

Two configurations (chapter 14 trains both on the same pairs). :class:`LiT` locks the text tower too (only two heads and the
temperature are trained), a deviation from the paper: LiT locks the image tower and *trains*
the text tower, from scratch or from a checkpoint. :class:`LiTUnlocked` is the paper's
configuration at small scale: the image tower stays locked and the top ``k`` of MiniLM's six
transformer layers are trained with the heads, from the checkpoint. The locked lower layers
run once per text; their hidden states are kept, so an epoch costs only the top layers.

Deviations from the paper: the towers are far smaller than LiT's; only the text tower's top
layers are unlocked, without dropout; the text features are centred before the head.

:func:`joint_space` returns either this space or a real CLIP from
``open_clip.create_model_and_transforms`` behind the same two methods, so the chapter's
code does not change when a reader has CLIP weights.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from genrec_lib.models.base import check_non_negative, check_positive


class LiT(nn.Module):
    """Projection heads on locked features, trained contrastively.

    Args:
        image_dim, text_dim: widths of the locked towers' features (1280, 384).
        dim: width of the joint space.
        temperature: initial softmax temperature tau (the learnable logit scale is log(1/tau)).
    """

    def __init__(self, image_dim: int = 1280, text_dim: int = 384, dim: int = 128, temperature: float = 0.07):
        super().__init__()
        check_positive(image_dim=image_dim, text_dim=text_dim, dim=dim, temperature=temperature)
        self.f = nn.Linear(image_dim, dim)  # image head: (., 1280) -> (., d)
        self.g = nn.Linear(text_dim, dim)  # text head: (., 384) -> (., d)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / temperature)))
        # Locked features are centred and scaled with statistics of the training images/texts.
        self.register_buffer("image_mean", torch.zeros(image_dim))
        self.register_buffer("image_std", torch.ones(image_dim))
        self.register_buffer("text_mean", torch.zeros(text_dim))

    def encode_image_features(self, x: torch.Tensor) -> torch.Tensor:
        """Locked image features (N, 1280) -> unit joint vectors (N, d)."""
        return F.normalize(self.f((x - self.image_mean) / self.image_std), dim=-1)

    def encode_text_features(self, t: torch.Tensor) -> torch.Tensor:
        """Locked text features (N, 384) -> unit joint vectors (N, d)."""
        return F.normalize(self.g(t - self.text_mean), dim=-1)

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """Texts -> unit joint vectors (N, d), through the locked MiniLM (:func:`~genrec_lib.text_encoders.encode_texts`)."""
        from genrec_lib.text_encoders import encode_texts

        return self.encode_text_features(encode_texts(texts).to(self.logit_scale.device))

    def fit(self, image_features: torch.Tensor, text_features: torch.Tensor, epochs: int = 60,
            batch_size: int = 128, learning_rate: float = 2e-3, weight_decay: float = 1e-3, seed: int = 2020) -> list[float]:
        """Train the heads and the temperature on matched pairs (row i of each); returns per-epoch losses."""
        if len(image_features) != len(text_features):
            raise ValueError(f"need matched pairs, got {len(image_features)} images and {len(text_features)} texts")
        check_positive(learning_rate=learning_rate)
        device = self.logit_scale.device
        x, t = image_features.to(device), text_features.to(device)
        self.text_mean.copy_(t.mean(0))
        groups = [{"params": list(self.parameters()), "lr": learning_rate}]
        return self._train_pairs(x, lambda index, epoch: self.encode_text_features(t[index]), groups, epochs=epochs,
                                 batch_size=batch_size, weight_decay=weight_decay, seed=seed)

    def _train_pairs(self, x: torch.Tensor, encode_text, groups: list[dict], epochs: int, batch_size: int,
                     weight_decay: float, seed: int) -> list[float]:
        """The contrastive loop: images ``x`` (N, 1280) and ``encode_text(index, epoch)`` -> (B, d) for the same rows."""
        from open_clip.loss import ClipLoss

        check_positive(epochs=epochs, batch_size=batch_size)
        self.image_mean.copy_(x.mean(0))
        self.image_std.copy_(x.std(0) + 1e-6)
        loss_fn = ClipLoss()
        optimizer = torch.optim.AdamW(groups, weight_decay=weight_decay)
        generator = torch.Generator().manual_seed(seed)
        losses = []
        self.train()
        for epoch in range(epochs):
            order = torch.randperm(len(x), generator=generator).to(x.device)
            total = 0.0
            for start in range(0, len(order), batch_size):
                index = order[start : start + batch_size]
                if len(index) < 2:
                    continue
                loss = loss_fn(self.encode_image_features(x[index]), encode_text(index, epoch), self.logit_scale.exp())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                with torch.no_grad():  # CLIP clamps the logit scale at 100
                    self.logit_scale.clamp_(0, math.log(100))
                total += float(loss.detach()) * len(index)
            losses.append(total / len(order))
        self.eval()
        return losses


class LiTUnlocked(LiT):
    """LiT's configuration: image tower locked, the top ``unlocked_layers`` of MiniLM trained with the heads.

    The trained layers start as copies of the checkpoint's (the library's text encoder is not
    touched); the lower layers stay locked, and their hidden states are computed once per text.
    :meth:`fit` can keep the top layers locked for the first epochs and unlock them for the last
    ``unlocked_epochs`` (heads first, then the text layers, as in linear probing followed by
    fine-tuning); with ``unlocked_epochs=0`` it trains what :class:`LiT` trains.

    Args:
        image_dim, dim, temperature: as in :class:`LiT` (the text width is MiniLM's, 384).
        unlocked_layers: how many of MiniLM's six transformer layers, from the top, are trained.
    """

    def __init__(self, image_dim: int = 1280, dim: int = 128, temperature: float = 0.07, unlocked_layers: int = 1):
        import copy

        from genrec_lib.text_encoders import EMBEDDING_DIM, _load

        super().__init__(image_dim=image_dim, text_dim=EMBEDDING_DIM, dim=dim, temperature=temperature)
        layers = _load("cpu")[1].encoder.layer  # the library's MiniLM (one loader, cached per process)
        if not 1 <= unlocked_layers <= len(layers):
            raise ValueError(f"unlocked_layers must be 1..{len(layers)} (MiniLM's layers), got {unlocked_layers!r}")
        self.first_unlocked = len(layers) - unlocked_layers
        self.text_layers = nn.ModuleList(copy.deepcopy(layer) for layer in layers[self.first_unlocked :])

    def train(self, mode: bool = True):
        super().train(mode)
        self.text_layers.eval()  # no dropout: the unlocked layers stay deterministic
        return self

    @staticmethod
    def _run_layers(layers, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """BERT layers on token states (B, T, 384) with padding mask (B, T) -> (B, T, 384)."""
        additive = (1.0 - mask[:, None, None, :].to(h.dtype)) * torch.finfo(h.dtype).min  # (B, 1, 1, T)
        for layer in layers:
            h = layer(h, attention_mask=additive)
            h = h[0] if isinstance(h, tuple) else h
        return h

    @torch.no_grad()
    def lower_states(self, texts: list[str], batch_size: int = 64, max_length: int = 128):
        """The locked lower layers, run once: token states (N, T, 384) and attention mask (N, T), zero-padded."""
        from genrec_lib.text_encoders import _load, batches_by_length

        device = self.logit_scale.device
        tokenizer, model = _load(str(device))
        texts = list(texts)
        parts = []
        for index in batches_by_length(texts, batch_size):
            tokens = tokenizer([texts[i] for i in index], padding=True, truncation=True, max_length=max_length,
                               return_tensors="pt").to(device)
            h = model.embeddings(input_ids=tokens["input_ids"], token_type_ids=tokens["token_type_ids"])
            h = self._run_layers(model.encoder.layer[: self.first_unlocked], h, tokens["attention_mask"])
            parts.append((index, h, tokens["attention_mask"]))  # (B, T_b, 384), (B, T_b)
        width = max(h.shape[1] for _, h, _ in parts)
        states = torch.zeros(len(texts), width, h.shape[2], device=device)
        mask = torch.zeros(len(texts), width, dtype=torch.long, device=device)
        for index, h, m in parts:
            rows = torch.tensor(index, device=device)
            states[rows, : h.shape[1]], mask[rows, : m.shape[1]] = h, m
        return states, mask

    def pooled_features(self, states: torch.Tensor, mask: torch.Tensor, chunk: int = 32) -> torch.Tensor:
        """Top layers, mean pooling and L2 norm as in :func:`~genrec_lib.text_encoders.encode_texts`: (N, T, 384) -> (N, 384).

        Rows run in chunks of similar length, each cut to its longest text, so padding costs little.
        """
        from genrec_lib.text_encoders import mean_pool

        lengths = mask.sum(1)
        order = lengths.argsort()
        out = torch.empty(len(states), states.shape[2], device=states.device)
        for start in range(0, len(order), chunk):
            rows = order[start : start + chunk]
            width = int(lengths[rows].max())
            m = mask[rows, :width]  # (b, T')
            h = self._run_layers(self.text_layers, states[rows, :width], m)  # (b, T', 384)
            out[rows] = F.normalize(mean_pool(h, m), dim=-1)
        return out

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """Texts -> unit joint vectors (N, d), through the locked lower and the trained top layers."""
        return self.encode_text_features(self.pooled_features(*self.lower_states(texts)))

    def fit(self, image_features: torch.Tensor, texts, epochs: int = 60, unlocked_epochs: int | None = None,
            batch_size: int = 128, learning_rate: float = 2e-3, text_learning_rate: float = 1e-4,
            weight_decay: float = 1e-3, seed: int = 2020) -> list[float]:
        """Train the heads and the temperature, and the top text layers in the last epochs; returns per-epoch losses.

        Args:
            texts: the captions, row i matching ``image_features[i]``, or their ``(states, mask)``
                from :meth:`lower_states` (computed once for every caption a chapter needs).
            unlocked_epochs: the last epochs in which the top layers train (default: all ``epochs``);
                before them the text side is the locked encoder's, and an epoch costs only the heads.
            text_learning_rate: AdamW's rate for the unlocked layers (the heads use ``learning_rate``).
        """
        if isinstance(texts, torch.Tensor):
            raise ValueError("LiTUnlocked.fit needs the caption strings (or lower_states(captions)), not sentence features")
        unlocked_epochs = epochs if unlocked_epochs is None else unlocked_epochs
        check_positive(learning_rate=learning_rate)
        check_non_negative(text_learning_rate=text_learning_rate, unlocked_epochs=unlocked_epochs)
        if unlocked_epochs > epochs:
            raise ValueError(f"unlocked_epochs ({unlocked_epochs}) cannot exceed epochs ({epochs})")
        if len(image_features) != len(texts if not isinstance(texts, tuple) else texts[0]):
            raise ValueError(f"need matched pairs, got {len(image_features)} images and "
                             f"{len(texts if not isinstance(texts, tuple) else texts[0])} captions")
        states, mask = texts if isinstance(texts, tuple) else self.lower_states(texts)  # locked: (N, T, 384), (N, T)
        with torch.no_grad():
            locked = self.pooled_features(states, mask)  # (N, 384): the checkpoint's own sentence features
        self.text_mean.copy_(locked.mean(0))
        heads = [p for name, p in self.named_parameters() if not name.startswith("text_layers.")]
        groups = [{"params": heads, "lr": learning_rate},
                  {"params": list(self.text_layers.parameters()), "lr": text_learning_rate}]

        def encode_text(index, epoch):  # locked epochs read the cached features; the layers get no gradient
            if epoch < epochs - unlocked_epochs:
                return self.encode_text_features(locked[index])
            return self.encode_text_features(self.pooled_features(states[index], mask[index]))

        return self._train_pairs(image_features.to(self.logit_scale.device), encode_text, groups, epochs=epochs,
                                 batch_size=batch_size, weight_decay=weight_decay, seed=seed)


class LiTSpace:
    """The LiT joint space behind the two calls the chapters use: images and texts -> unit vectors."""

    kind = "lit"

    def __init__(self, lit: LiT, resolution: int = 128):
        self.lit, self.resolution = lit, resolution

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor, cache: bool = False) -> torch.Tensor:
        """RGB images in [0, 1], (N, 3, H, W) -> (N, d) unit vectors."""
        from genrec_lib.image_encoders import encode_images

        features = encode_images(images, resolution=self.resolution, cache=cache)
        return self.lit.encode_image_features(features.to(self.lit.logit_scale.device)).cpu()

    @torch.no_grad()
    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """Texts -> (N, d) unit vectors (a :class:`LiTUnlocked` runs its own trained top layers)."""
        return self.lit.encode_texts(texts).cpu()


class OpenClipSpace:
    """A CLIP model from open_clip behind the same two calls (``kind = "open_clip"``)."""

    kind = "open_clip"

    def __init__(self, model, preprocess_size: int, tokenizer, mean, std):
        self.model, self.size, self.tokenizer = model.eval(), preprocess_size, tokenizer
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)

    @property
    def device(self):
        return next(self.model.parameters()).device

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor, cache: bool = False, batch_size: int = 64) -> torch.Tensor:
        out = []
        for start in range(0, len(images), batch_size):
            x = F.interpolate(images[start : start + batch_size], size=(self.size, self.size), mode="bicubic",
                              align_corners=False).clamp(0, 1)
            x = ((x - self.mean) / self.std).to(self.device)
            out.append(F.normalize(self.model.encode_image(x).float(), dim=-1).cpu())
        return torch.cat(out)

    @torch.no_grad()
    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(list(texts)).to(self.device)
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1).cpu()


def joint_space(kind: str = "lit", lit: LiT | None = None, model_name: str = "ViT-B-32",
                pretrained: str | None = "laion2b_s34b_b79k", device: str | torch.device | None = None):
    """The joint image-text space the chapters use, chosen by one setting.

    Args:
        kind: ``"lit"`` (a trained :class:`LiT`, offline) or ``"open_clip"`` (a CLIP from
            ``open_clip.create_model_and_transforms(model_name, pretrained=pretrained)``;
            ``pretrained`` is a tag open_clip downloads, or a path to a local checkpoint,
            or ``None`` for random weights).
    """
    if kind == "lit":
        if lit is None:
            raise ValueError("kind='lit' needs a trained LiT: pass lit=LiT().fit(image_features, text_features)")
        return LiTSpace(lit)
    if kind == "open_clip":
        import open_clip

        if device is None:
            from genrec_lib.training import default_device

            device = default_device()
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=pretrained, device=device)
        size = model.visual.image_size
        size = size[0] if isinstance(size, (tuple, list)) else size
        mean = getattr(model.visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN
        std = getattr(model.visual, "image_std", None) or open_clip.OPENAI_DATASET_STD
        return OpenClipSpace(model, int(size), open_clip.get_tokenizer(model_name), mean, std)
    raise ValueError(f"unknown joint space {kind!r}; choose 'lit' or 'open_clip'")


@torch.no_grad()
def retrieval_ranks(query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Rank of key i for query i (rows are unit vectors), 0 = first: (N,) integers.

    Ties are broken pessimistically (a key with a score equal to the true key's ranks above it).
    """
    scores = query @ keys.T  # (N, N)
    true = scores.diagonal().unsqueeze(1)
    return (scores >= true).sum(1) - 1  # equal scores count against the true key


def retrieval_recall(query: torch.Tensor, keys: torch.Tensor, ks=(1, 5, 10)) -> dict[str, float]:
    """Recall@K of retrieving key i for query i (rows are unit vectors): {"R@1": ..., ...}, ties as in :func:`retrieval_ranks`."""
    rank = retrieval_ranks(query, keys)
    return {f"R@{k}": float((rank < k).float().mean()) for k in ks}
