"""The interactions dataset: dense indices, maps back to original ids, side information."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse as sp


@dataclass(frozen=True)
class Interactions:
    """User-item interactions with dense indices ``0..n-1`` for users and items.

    Rows keep the order of the source file; ``row`` holds each row's original position.
    Timestamp ties in temporal operations are broken by ``tiebreak`` when a protocol has
    set it (a seeded random key, see :func:`~genrec_lib.data.splits.split_leave_one_out`),
    else by ``row``.

    Attributes:
        user, item: dense indices, shape (N,).
        rating: explicit rating (kept for export; models treat every row as implicit feedback).
        timestamp: seconds since the epoch.
        row: original position of the row in the source file.
        user_ids, item_ids: original ids, indexed by dense index.
        items: item side information indexed by dense item index (``title``, ``year``, ``genres``).
        users: user side information indexed by dense user index (``age``, ``gender``, ``occupation``).
        tiebreak: optional key, shape (N,), that orders interactions with equal timestamps.
    """

    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray
    row: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    items: pd.DataFrame = field(repr=False)
    users: pd.DataFrame = field(repr=False)
    name: str = "interactions"
    tiebreak: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def __len__(self) -> int:
        return len(self.user)

    @cached_property
    def pair_keys(self) -> np.ndarray:
        """Sorted unique keys ``user * n_items + item`` of the observed pairs, shape (<= N,), int64.

        Computed once per object (negative samplers look pairs up by binary search in them).
        """
        return np.unique(self.user.astype(np.int64) * self.n_items + self.item)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame, name: str) -> "Interactions":
        """Build from a frame with original ``user_id, item_id, rating, timestamp`` columns.

        ``items`` and ``users`` are indexed by original id; only ids seen in ``frame`` or
        in the side tables are kept, sorted numerically when possible.
        """
        user_ids = _sorted_ids(pd.Index(frame["user_id"]).union(users.index))
        item_ids = _sorted_ids(pd.Index(frame["item_id"]).union(items.index))
        user = pd.Index(user_ids).get_indexer(frame["user_id"])
        item = pd.Index(item_ids).get_indexer(frame["item_id"])
        return cls(
            user=user.astype(np.int64),
            item=item.astype(np.int64),
            rating=frame["rating"].to_numpy(np.float32),
            timestamp=frame["timestamp"].to_numpy(np.int64),
            row=np.arange(len(frame), dtype=np.int64),
            user_ids=np.asarray(user_ids),
            item_ids=np.asarray(item_ids),
            items=items.reindex(list(item_ids)).reset_index(drop=True),
            users=users.reindex(list(user_ids)).reset_index(drop=True),
            name=name,
        )

    def subset(self, mask: np.ndarray) -> "Interactions":
        """The rows selected by a boolean mask or index array; id maps are shared."""
        return replace(self, **{f: getattr(self, f)[mask] for f in self._row_fields()})

    def _row_fields(self) -> tuple[str, ...]:
        fields = ("user", "item", "rating", "timestamp", "row")
        return fields if self.tiebreak is None else fields + ("tiebreak",)

    def concat(self, other: "Interactions") -> "Interactions":
        """Rows of both, in original file order (both must share id maps)."""
        if self.n_items != other.n_items or self.n_users != other.n_users:
            raise ValueError("can only concatenate interactions that share user and item maps")
        if (self.tiebreak is None) != (other.tiebreak is None):
            raise ValueError("can only concatenate interactions that both have, or both lack, a tie-break key")
        merged = {f: np.concatenate([getattr(self, f), getattr(other, f)]) for f in self._row_fields()}
        order = np.argsort(merged["row"], kind="stable")
        return replace(self, **{f: v[order] for f, v in merged.items()})

    def csr(self) -> sp.csr_matrix:
        """Binary user x item matrix (duplicates collapse to 1)."""
        data = np.ones(len(self.user), dtype=np.float32)
        matrix = sp.csr_matrix((data, (self.user, self.item)), shape=(self.n_users, self.n_items))
        matrix.data[:] = 1.0
        return matrix

    def temporal_order(self) -> np.ndarray:
        """Row positions sorted by (user, timestamp, tie-break key or original row)."""
        key = self.row if self.tiebreak is None else self.tiebreak
        return np.lexsort((key, self.timestamp, self.user))

    def sequences(self) -> list[np.ndarray]:
        """Each user's item indices in time order (ties as in :meth:`temporal_order`), oldest first."""
        order = self.temporal_order()
        users, items = self.user[order], self.item[order]
        bounds = np.searchsorted(users, np.arange(1, self.n_users))
        return np.split(items, bounds)

    def item_popularity(self) -> np.ndarray:
        """Number of interactions per item, shape (n_items,)."""
        return np.bincount(self.item, minlength=self.n_items)

    def to_frame(self, temporal: bool = False) -> pd.DataFrame:
        """Rows with original ids, in original file order, or (``temporal``) in the order of
        :meth:`temporal_order`, so that a stable sort by timestamp reproduces the tie-break."""
        order = self.temporal_order() if temporal else np.argsort(self.row, kind="stable")
        whole = np.all(self.rating == np.round(self.rating))
        return pd.DataFrame(
            {
                "user_id": self.user_ids[self.user[order]],
                "item_id": self.item_ids[self.item[order]],
                "rating": self.rating[order].astype(np.int64) if whole else self.rating[order],
                "timestamp": self.timestamp[order],
            }
        )


def _sorted_ids(index: pd.Index) -> np.ndarray:
    values = index.unique()
    try:
        return np.asarray(sorted(values, key=int))
    except (TypeError, ValueError):
        return np.asarray(sorted(values, key=str))


def pad_sequences(sequences: list[np.ndarray], max_len: int, pad: int) -> np.ndarray:
    """Left-pad (most recent item last) and keep the ``max_len`` most recent items.

    Returns:
        int64 array of shape (len(sequences), max_len).
    """
    lengths = np.fromiter((len(seq) for seq in sequences), dtype=np.int64, count=len(sequences))
    out = np.full((len(sequences), max_len), pad, dtype=np.int64)
    if lengths.sum() == 0:
        return out
    flat = np.concatenate([np.asarray(seq, dtype=np.int64) for seq in sequences])
    row = np.repeat(np.arange(len(sequences)), lengths)
    # Position of each element counted from the end of its sequence (0 = most recent).
    from_end = np.repeat(np.cumsum(lengths), lengths) - np.arange(len(flat)) - 1
    keep = from_end < max_len
    out[row[keep], max_len - 1 - from_end[keep]] = flat[keep]
    return out
