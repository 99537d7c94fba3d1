"""Data layer: datasets as :class:`Interactions`, and evaluation protocols as :class:`Split`."""

from genrec_lib.data.interactions import Interactions, pad_sequences
from genrec_lib.data.movielens import DATASETS as MOVIELENS_DATASETS
from genrec_lib.data.movielens import DataFormatError, item_text, load_movielens
from genrec_lib.data.splits import PROTOCOLS, Split, make_split, split_leave_one_out, split_random

#: Image catalogues with simulated users (Part III); see :mod:`genrec_lib.data.stamps`.
IMAGE_DATASETS = ("tuxpaint-stamps",)
#: Every dataset ``load_dataset`` / ``genrec bench --dataset`` accepts.
DATASETS = MOVIELENS_DATASETS + IMAGE_DATASETS


def load_dataset(name: str = "ml-100k") -> Interactions:
    """Any dataset of the book by name (MovieLens, or the stamps with simulated users)."""
    if name in IMAGE_DATASETS:
        from genrec_lib.data.stamps import load_stamps

        return load_stamps()
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    return load_movielens(name)


def load_split(dataset: str = "ml-100k", protocol: str = "random", seed: int = 2020) -> Split:
    """Load a dataset and split it: the one call every chapter starts from."""
    return make_split(load_dataset(dataset), protocol, seed)


__all__ = [
    "DATASETS", "PROTOCOLS", "DataFormatError", "Interactions", "Split", "item_text",
    "IMAGE_DATASETS", "load_dataset", "load_movielens", "load_split", "make_split", "pad_sequences", "split_leave_one_out", "split_random",
]
