"""Data layer: datasets as :class:`Interactions`, and evaluation protocols as :class:`Split`."""

from genrec_lib.data.interactions import Interactions, pad_sequences
from genrec_lib.data.movielens import DATASETS, DataFormatError, item_text, load_movielens
from genrec_lib.data.splits import PROTOCOLS, Split, make_split, split_leave_one_out, split_random


def load_split(dataset: str = "ml-100k", protocol: str = "random", seed: int = 2020) -> Split:
    """Load a dataset and split it: the one call every chapter starts from."""
    return make_split(load_movielens(dataset), protocol, seed)


__all__ = [
    "DATASETS", "PROTOCOLS", "DataFormatError", "Interactions", "Split", "item_text",
    "load_movielens", "load_split", "make_split", "pad_sequences", "split_leave_one_out", "split_random",
]
