"""The Tux Paint stamps: a real, captioned image catalogue, and simulated users of it.

Items are the PNG stamps of the Debian package ``tuxpaint-stamps-default`` (GPL-2): each
has a ``.txt`` whose first line is an English caption, and a folder that gives its
category (``animals/birds/...`` -> category ``animals``, subcategory ``birds``).
:func:`load_stamp_catalogue` validates every image and measures two visual attributes
from its pixels: the dominant colour and whether it looks like a photograph or a drawing.

No interaction log exists for these items, so users are **simulated**
(:func:`simulate_users`): each user has a taste over categories, colours and style (content
attributes the models can observe) and a latent taste no feature reveals (user and item
factors, whose share of the utility variance is a parameter), and picks items by sampling
from it. The chapters that use this data say so.

This module only reads pixels and captions; image *features* (a pretrained network) are
computed above the data layer, in :func:`genrec_lib.image_encoders.item_image_features`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from genrec_lib import assets
from genrec_lib.data.interactions import Interactions
from genrec_lib.data.splits import Split

DATASET = "tuxpaint-stamps"
COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "grey")
STYLES = ("drawing", "photo")
# Hue bins in degrees (upper bounds) for the saturated colours; red wraps around 360.
_HUE_BINS = ((15, "red"), (45, "orange"), (70, "yellow"), (170, "green"), (260, "blue"), (335, "purple"), (361, "red"))
#: Distinct colours (64 px, 5 bits per channel) above which a stamp counts as photo-like.
PHOTO_COLOURS = 220
#: Smallest side (pixels) an image must have to enter the catalogue.
MIN_SIDE = 24


@dataclass
class StampCatalogue:
    """The validated stamp images and their side information.

    Attributes:
        items: one row per image: ``item_id`` (path below the stamps folder, no suffix),
            ``path``, ``caption``, ``category``, ``subcategory``, ``colour``, ``style``.
        skipped: ``{path: reason}`` for every PNG that did not enter the catalogue.
        root: the stamps folder.
    """

    items: pd.DataFrame
    skipped: dict = field(default_factory=dict)
    root: Path = Path(".")
    _images: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def categories(self) -> list[str]:
        return sorted(self.items["category"].unique())

    def images(self, size: int = 32) -> torch.Tensor:
        """Every image composited on white and resized to ``size`` x ``size``: (N, 3, size, size) in [0, 1].

        Computed once per size and kept in memory.
        """
        if size < 8:
            raise ValueError(f"size must be >= 8 pixels, got {size}")
        if size not in self._images:
            arrays = [np.asarray(_open_rgb(Path(p)).resize((size, size), _bicubic()), dtype=np.uint8) for p in self.items["path"]]
            self._images[size] = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0
        return self._images[size]


def _bicubic():
    from PIL import Image

    return Image.Resampling.BICUBIC


def _open_rgb(path: Path):
    """The image composited on a white background (stamps are mostly transparent PNGs), as RGB."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def visual_attributes(path: Path) -> tuple[str, str]:
    """``(colour, style)`` measured from the pixels of one stamp.

    colour: the most common hue bin among the opaque, saturated pixels, or ``"grey"`` when
    fewer than 15% of the opaque pixels are saturated. style: ``"photo"`` when the opaque
    pixels use many distinct colours (more than ``PHOTO_COLOURS`` at 64 px, 5 bits per
    channel), else ``"drawing"``: a proxy, since shaded photographs use many colours and
    clip art few.
    """
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        rgba = np.asarray(image.convert("RGBA").resize((64, 64), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    opaque = rgba[..., 3] > 0.5
    rgb = rgba[..., :3][opaque]  # (P, 3)
    if len(rgb) == 0:
        return "grey", "drawing"
    from matplotlib.colors import rgb_to_hsv

    hsv = rgb_to_hsv(rgb)  # (P, 3), each in [0, 1]
    saturated = (hsv[:, 1] > 0.3) & (hsv[:, 2] > 0.25)
    if saturated.mean() < 0.15:
        colour = "grey"
    else:
        hues = hsv[saturated, 0] * 360
        bounds = np.array([bound for bound, _ in _HUE_BINS])
        names = np.array([name for _, name in _HUE_BINS])[np.searchsorted(bounds, hues, side="right")]
        colour = pd.Series(names).value_counts().index[0]
    distinct = len(np.unique((rgb * 31).round().astype(np.int64) @ np.array([1024, 32, 1])))
    return colour, "photo" if distinct > PHOTO_COLOURS else "drawing"


def load_stamp_catalogue(root: str | Path | None = None, min_side: int = MIN_SIDE) -> StampCatalogue:
    """Read and validate every captioned PNG stamp.

    A PNG is skipped (and counted in ``skipped`` with the reason) when it has no caption
    file, cannot be decoded, has an unexpected mode, or is smaller than ``min_side``.

    Raises:
        AssetMissingError: the package is not installed (the message gives the apt command).
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(root) if root is not None else assets.tuxpaint_stamps_dir()
    if not root.is_dir():
        raise assets.AssetMissingError(f"stamp folder {root} does not exist; install it with: {assets.STAMPS_INSTALL}")
    rows, skipped = [], {}
    for path in sorted(root.glob("*/**/*.png")):
        relative = path.relative_to(root)
        caption_file = path.with_suffix(".txt")
        if not caption_file.is_file():
            skipped[str(relative)] = "no caption file"
            continue
        caption = caption_file.read_text(encoding="utf-8", errors="replace").splitlines()
        caption = caption[0].strip() if caption else ""
        if not caption:
            skipped[str(relative)] = "empty caption"
            continue
        try:
            with Image.open(path) as image:
                image.verify()
            with Image.open(path) as image:
                mode, size = image.mode, image.size
        except (UnidentifiedImageError, OSError) as error:
            skipped[str(relative)] = f"unreadable ({error.__class__.__name__})"
            continue
        if mode not in ("RGBA", "RGB", "LA", "L", "P"):
            skipped[str(relative)] = f"unexpected mode {mode}"
            continue
        if min(size) < min_side:
            skipped[str(relative)] = f"too small {size}"
            continue
        colour, style = visual_attributes(path)
        parts = relative.parts
        rows.append({
            "item_id": str(relative.with_suffix("")), "path": str(path), "caption": caption,
            "category": parts[0], "subcategory": parts[1] if len(parts) > 2 else parts[0],
            "colour": colour, "style": style,
        })
    if not rows:
        raise assets.AssetMissingError(f"no captioned PNG stamps under {root}; install them with: {assets.STAMPS_INSTALL}")
    return StampCatalogue(items=pd.DataFrame(rows), skipped=skipped, root=root)


# --- simulated users ------------------------------------------------------------------

@dataclass(frozen=True)
class UserSimulation:
    """The generative story of the simulated users (every number here is a parameter).

    For user ``u``: category taste ``theta_u ~ Dirichlet(alpha_category)``, colour taste
    ``w_u ~ N(0, sigma_colour^2)`` per colour, style taste ``s_u ~ N(0, sigma_style^2)``;
    item appeal ``b_i ~ N(0, sigma_item^2)``; and a **latent taste** no content feature
    reveals: user and item factors ``p_u, q_i ~ N(0, I_latent_dim)``. The utility of item ``i`` is

        content_ui = beta * log(theta_u[c_i] + category_floor) + w_u[colour_i] + s_u * [style_i = photo]
        utility_ui = content_ui + b_i + a * p_u . q_i / sqrt(latent_dim),

    where the scale ``a`` is set so that the latent term carries ``latent_share`` of the
    utility variance within users (across items, averaged over users: the only variance
    that changes a user's choices). The user picks ``n_u`` distinct items by sampling
    without replacement in proportion to ``exp(utility / temperature)`` (Gumbel top-k),
    with ``n_u`` uniform in ``interactions``. ``category_floor`` keeps a category a user
    has almost no taste for from dominating the variance with ``log`` of a tiny number.
    """

    n_users: int = 1000
    interactions: tuple[int, int] = (12, 40)
    alpha_category: float = 0.3
    beta: float = 1.0
    category_floor: float = 0.01
    sigma_colour: float = 1.5
    sigma_style: float = 1.0
    sigma_item: float = 0.5
    latent_share: float = 0.5
    latent_dim: int = 8
    temperature: float = 0.7
    seed: int = 2020

    def __post_init__(self):
        for name in ("n_users", "alpha_category", "beta", "temperature", "latent_dim"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("sigma_colour", "sigma_style", "sigma_item", "category_floor"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 <= self.latent_share < 1:
            raise ValueError(f"latent_share must lie in [0, 1) (the latent taste's share of the utility variance), "
                             f"got {self.latent_share!r}")
        low, high = self.interactions
        if not 1 <= low <= high:
            raise ValueError(f"interactions must be (low, high) with 1 <= low <= high, got {self.interactions}")


@dataclass
class SimulatedUsers:
    """The simulated interactions and the latent tastes that produced them."""

    data: Interactions
    utility: np.ndarray  # (n_users, n_items): each user's true utility of each item
    category_taste: np.ndarray  # (n_users, n_categories): theta_u
    colour_taste: np.ndarray  # (n_users, n_colours): w_u
    style_taste: np.ndarray  # (n_users,): s_u
    config: UserSimulation
    parts: dict = field(default_factory=dict, repr=False)  # {"content", "item", "latent"}: (n_users, n_items) each

    def variance_shares(self) -> dict[str, float]:
        """Each part's share of the utility variance within users (mean over users of the variance across items).

        The shares of ``content``, ``item`` (appeal ``b_i``) and ``latent`` sum to 1 up to
        the (sampled, near-zero) covariances between the parts.
        """
        total = self.utility.var(axis=1).mean()
        return {name: float(part.var(axis=1).mean() / total) for name, part in self.parts.items()}


def simulate_users(catalogue: StampCatalogue, config: UserSimulation = UserSimulation()) -> SimulatedUsers:
    """Sample users and their interactions from :class:`UserSimulation` (seeded)."""
    items = catalogue.items
    rng = np.random.default_rng(config.seed)
    categories = sorted(items["category"].unique())
    c = pd.Index(categories).get_indexer(items["category"])  # (I,)
    k = pd.Index(COLOURS).get_indexer(items["colour"])  # (I,)
    photo = (items["style"] == "photo").to_numpy(np.float64)  # (I,)
    n_users, n_items = config.n_users, len(items)
    theta = rng.dirichlet(np.full(len(categories), config.alpha_category), size=n_users)  # (U, C)
    w = rng.normal(0, config.sigma_colour, size=(n_users, len(COLOURS)))  # (U, K)
    s = rng.normal(0, config.sigma_style, size=n_users)  # (U,)
    b = rng.normal(0, config.sigma_item, size=n_items)  # (I,)
    content = config.beta * np.log(theta[:, c] + config.category_floor + 1e-12) + w[:, k] + s[:, None] * photo[None]  # (U, I)
    item_part = np.broadcast_to(b[None], (n_users, n_items))  # (U, I)
    # Latent taste: drawn from its own generator so that the other parts do not change with its share.
    latent_rng = np.random.default_rng([config.seed, 1])
    p_u = latent_rng.normal(size=(n_users, config.latent_dim))  # (U, L)
    q_i = latent_rng.normal(size=(n_items, config.latent_dim))  # (I, L)
    latent = p_u @ q_i.T / np.sqrt(config.latent_dim)  # (U, I), unit variance
    rest = (content + item_part).var(axis=1).mean()
    share = config.latent_share
    latent = latent * np.sqrt(share / (1 - share) * rest / latent.var(axis=1).mean())
    utility = content + item_part + latent  # (U, I)
    low, high = config.interactions
    n_u = np.minimum(rng.integers(low, high + 1, size=n_users), n_items)
    gumbel = rng.gumbel(size=(n_users, n_items))
    order = np.argsort(-(utility / config.temperature + gumbel), axis=1)  # Gumbel top-k = sampling without replacement
    user = np.repeat(np.arange(n_users), n_u)
    item = np.concatenate([order[u, : n_u[u]] for u in range(n_users)])
    step = np.concatenate([np.arange(n) for n in n_u])  # pick order stands in for time
    frame = pd.DataFrame({"user_id": user, "item_id": items["item_id"].to_numpy()[item],
                          "rating": np.ones(len(user)), "timestamp": step})
    side = items.set_index("item_id")
    users = pd.DataFrame(index=pd.Index(np.arange(n_users), name="user_id"))
    data = Interactions.from_frame(frame, side, users, DATASET)
    # from_frame sorts ids; keep the catalogue's row order as the item index order.
    if not np.array_equal(data.item_ids, items["item_id"].to_numpy()):
        data = _reindex_items(data, items["item_id"].to_numpy())
    return SimulatedUsers(data, utility, theta, w, s, config,
                          parts={"content": content, "item": np.asarray(item_part), "latent": latent})


def _reindex_items(data: Interactions, item_ids: np.ndarray) -> Interactions:
    from dataclasses import replace

    position = pd.Index(item_ids).get_indexer(data.item_ids)
    items = data.items.copy()
    items.index = position
    return replace(data, item=position[data.item], item_ids=item_ids, items=items.sort_index())


def load_stamps(seed: int = 2020, n_users: int = UserSimulation.n_users,
                latent_share: float = UserSimulation.latent_share) -> Interactions:
    """The catalogue with simulated users, as :class:`Interactions` (what ``genrec bench`` loads)."""
    return simulate_users(load_stamp_catalogue(), UserSimulation(n_users=n_users, seed=seed, latent_share=latent_share)).data


def split_cold_items(data: Interactions, seed: int = 2020, cold_fraction: float = 0.2, valid_fraction: float = 0.1) -> tuple[Split, np.ndarray]:
    """Hold a random ``cold_fraction`` of the items out of training entirely.

    Every interaction with a cold item is a test interaction; of the rest, a random
    ``valid_fraction`` per user goes to validation. Returns the split and the cold item
    indices (models are compared on ranking the cold items only).
    """
    if not 0 < cold_fraction < 1 or not 0 < valid_fraction < 1:
        raise ValueError(f"cold_fraction and valid_fraction must lie in (0, 1), got {cold_fraction}, {valid_fraction}")
    rng = np.random.default_rng(seed)
    cold = np.sort(rng.choice(data.n_items, size=int(round(cold_fraction * data.n_items)), replace=False))
    is_cold = np.isin(data.item, cold)
    to_valid = (rng.random(len(data)) < valid_fraction) & ~is_cold
    train = data.subset(~is_cold & ~to_valid)
    return Split(data, train, data.subset(to_valid), data.subset(is_cold), "cold-items", seed), cold


_CATALOGUES: dict = {}


def cached_catalogue(root: str | Path | None = None) -> StampCatalogue:
    """:func:`load_stamp_catalogue`, read once per process (images stay in memory)."""
    key = str(root)
    if key not in _CATALOGUES:
        _CATALOGUES[key] = load_stamp_catalogue(root)
    return _CATALOGUES[key]


def item_images(data: Interactions, size: int = 32) -> torch.Tensor:
    """The images of ``data``'s items in item-index order: (n_items, 3, size, size) in [0, 1].

    Raises a clear error for a dataset without images (e.g. MovieLens).
    """
    if "path" not in data.items.columns:
        raise ValueError(f"dataset {data.name!r} has no item images; image-aware models need --dataset {DATASET}")
    catalogue = cached_catalogue()
    position = pd.Index(catalogue.items["path"]).get_indexer(data.items["path"])
    if (position < 0).any():
        raise ValueError("some item images of this dataset are not in the installed stamp catalogue; reload the dataset")
    return catalogue.images(size)[torch.from_numpy(position)]


def item_captions(data: Interactions) -> list[str]:
    """The English caption of every item, in item-index order."""
    if "caption" not in data.items.columns:
        raise ValueError(f"dataset {data.name!r} has no item captions; use --dataset {DATASET}")
    return list(data.items["caption"])


# --- simulated free-text requests -------------------------------------------------------

#: How a request names each category.
CATEGORY_PHRASES = {
    "animals": "an animal", "cartoon": "a cartoon character", "clothes": "something to wear",
    "food": "something to eat", "hobbies": "something for a hobby", "household": "a household object",
    "medical": "something medical", "military": "a military object", "naturalforces": "a force of nature",
    "people": "a person", "plants": "a plant", "seasonal": "a holiday decoration", "space": "something from space",
    "sports": "something for sport", "symbols": "a symbol or sign", "town": "something from town",
    "vehicles": "a vehicle",
}
COLOUR_PHRASES = {"grey": "black, white or grey"}


def request_text(category: str, colour: str) -> str:
    """A templated free-text request such as ``"something to eat that is red"``."""
    if category not in CATEGORY_PHRASES or colour not in COLOURS:
        raise ValueError(f"unknown category {category!r} or colour {colour!r}; categories: "
                         f"{', '.join(CATEGORY_PHRASES)}; colours: {', '.join(COLOURS)}")
    return f"{CATEGORY_PHRASES[category]} that is {COLOUR_PHRASES.get(colour, colour)}"


def simulate_requests(split: Split, stage: str = "test", seed: int = 2020) -> tuple[Split, list[str]]:
    """One simulated request per user with held-out items, derived from what she went on to pick.

    For each such user one held-out item ``i*`` is drawn (seeded); her request names its
    category and colour (:func:`request_text`); the items that answer the request are her
    held-out items with that category and colour. Returns a split whose ``stage`` part holds
    only those answering items (the rest of the split is unchanged) and the request text of
    every user (empty for users without a request).
    """
    from dataclasses import replace

    held = split.valid if stage == "valid" else split.test
    items = split.dataset.items
    rng = np.random.default_rng(seed)
    key = rng.random(len(held))
    order = np.lexsort((key, held.user))
    first = order[np.r_[True, held.user[order][1:] != held.user[order][:-1]]] if len(held) else order
    chosen = np.full(split.n_users, -1)
    chosen[held.user[first]] = held.item[first]
    cat, col = items["category"].to_numpy(), items["colour"].to_numpy()
    target = chosen[held.user]
    answers = (cat[held.item] == cat[target]) & (col[held.item] == col[target])
    requests = ["" if i < 0 else request_text(cat[i], col[i]) for i in chosen]
    part = held.subset(answers)
    return (replace(split, test=part) if stage == "test" else replace(split, valid=part)), requests
