"""LiT: Locked-image Tuning (Zhai et al., CVPR 2022), built with open_clip's contrastive loss.

https://arxiv.org/abs/2111.07991 (LiT); the loss is CLIP's (Radford et al., ICML 2021,
https://arxiv.org/abs/2103.00020) as implemented by ``open_clip.loss.ClipLoss``.

A joint image-text space from two pretrained, *locked* towers: ImageNet EfficientNet-Lite0
for images (:mod:`genrec_lib.image_encoders`) and all-MiniLM-L6-v2 for text
(:mod:`genrec_lib.text_encoders`). Only two linear projection heads ``f`` and ``g`` and the
temperature are trained, with the symmetric InfoNCE loss over a batch of matched pairs.

Deviations from the paper: LiT locks the image tower and trains the text tower from
scratch or from a checkpoint; here the text tower is locked too (only two heads and the
temperature are trained), which is a different configuration from LiT's, chosen because a
few hundred captioned images support no more. The towers are far smaller than LiT's.

:func:`joint_space` returns either this space or a real CLIP from
``open_clip.create_model_and_transforms`` behind the same two methods, so the chapter's
code does not change when a reader has CLIP weights.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from genrec_lib.models.base import check_positive


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

    def fit(self, image_features: torch.Tensor, text_features: torch.Tensor, epochs: int = 60,
            batch_size: int = 128, learning_rate: float = 2e-3, weight_decay: float = 1e-3, seed: int = 2020) -> list[float]:
        """Train the heads and the temperature on matched pairs (row i of each); returns per-epoch losses."""
        from open_clip.loss import ClipLoss

        if len(image_features) != len(text_features):
            raise ValueError(f"need matched pairs, got {len(image_features)} images and {len(text_features)} texts")
        check_positive(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate)
        device = self.logit_scale.device
        x, t = image_features.to(device), text_features.to(device)
        self.image_mean.copy_(x.mean(0))
        self.image_std.copy_(x.std(0) + 1e-6)
        self.text_mean.copy_(t.mean(0))
        loss_fn = ClipLoss()
        optimizer = torch.optim.AdamW(self.parameters(), lr=learning_rate, weight_decay=weight_decay)
        generator = torch.Generator().manual_seed(seed)
        losses = []
        self.train()
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=generator).to(device)
            total = 0.0
            for start in range(0, len(order), batch_size):
                index = order[start : start + batch_size]
                if len(index) < 2:
                    continue
                loss = loss_fn(self.encode_image_features(x[index]), self.encode_text_features(t[index]), self.logit_scale.exp())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                with torch.no_grad():  # CLIP clamps the logit scale at 100
                    self.logit_scale.clamp_(0, math.log(100))
                total += float(loss.detach()) * len(index)
            losses.append(total / len(order))
        self.eval()
        return losses


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
        from genrec_lib.text_encoders import encode_texts

        return self.lit.encode_text_features(encode_texts(texts).to(self.lit.logit_scale.device)).cpu()


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
def retrieval_recall(query: torch.Tensor, keys: torch.Tensor, ks=(1, 5, 10)) -> dict[str, float]:
    """Recall@K of retrieving key i for query i (rows are unit vectors): {"R@1": ..., ...}.

    Ties are broken pessimistically (a key with a score equal to the true key's ranks above it).
    """
    scores = query @ keys.T  # (N, N)
    true = scores.diagonal().unsqueeze(1)
    rank = (scores >= true).sum(1) - 1  # 0 = first; equal scores count against the true key
    return {f"R@{k}": float((rank < k).float().mean()) for k in ks}
