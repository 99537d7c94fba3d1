"""MovieLens loaders: the offline ML-100K copy in the RecBole wheel, or GroupLens archives.

``load_movielens("ml-100k")`` reads the atomic files inside ``recbole==1.2.1`` without
importing recbole. ``source="grouplens"`` downloads the official archive instead
(``ml-100k``, ``ml-1m`` or ``ml-20m``) and verifies its checksum first
(:func:`genrec_lib.assets.download`); each reader takes the archive in its original format:
ML-100K's ``u.data``/``u.item``/``u.user``, ML-1M's ``::``-separated ``.dat`` files and
ML-20M's ``ratings.csv``/``movies.csv`` (half-star ratings, no user side information).
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from genrec_lib import assets
from genrec_lib.data.interactions import Interactions

DATASETS = ("ml-100k", "ml-1m", "ml-20m")
SOURCES = ("auto", "recbole", "grouplens")

ML100K_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
]


class DataFormatError(ValueError):
    """A data file does not have the expected shape; the message names the file and the fix."""


def load_movielens(name: str = "ml-100k", source: str = "auto") -> Interactions:
    """Load a MovieLens dataset as :class:`Interactions` (every rating is one interaction).

    Args:
        name: ``"ml-100k"``, ``"ml-1m"`` or ``"ml-20m"``.
        source: ``"recbole"`` (offline copy, ML-100K only), ``"grouplens"`` (download with
            checksum) or ``"auto"`` (offline copy when it exists, else download).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; choose one of: {', '.join(SOURCES)}")
    if name == "ml-100k" and source in ("auto", "recbole"):
        try:
            return read_recbole_atomic(assets.recbole_ml100k_dir(), "ml-100k")
        except assets.AssetMissingError:
            if source == "recbole":
                raise
    if source == "recbole":
        raise ValueError(f"the RecBole wheel ships only ml-100k; load {name!r} with source='grouplens'")
    archive = assets.dataset_archive(name)
    readers = {"ml-100k": read_grouplens_100k, "ml-1m": read_grouplens_1m, "ml-20m": read_grouplens_20m}
    return readers[name](archive)


# --- RecBole atomic files -------------------------------------------------------------

def _read_atomic(path: Path, required: dict[str, str]) -> pd.DataFrame:
    """Read a RecBole atomic file (tab-separated, ``name:type`` headers) and check columns."""
    if not path.is_file():
        raise DataFormatError(f"{path} does not exist; reinstall with: {assets.RECBOLE_INSTALL}")
    try:
        frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise DataFormatError(f"{path} is not a readable tab-separated file ({error})") from error
    frame.columns = [c.split(":")[0] for c in frame.columns]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataFormatError(
            f"{path} lacks the column(s) {missing}; found {list(frame.columns)}. "
            f"Expected a RecBole atomic file with {list(required)}."
        )
    for column, kind in required.items():
        if kind == "int":
            frame[column] = _to_int(frame[column], path, column)
    return frame


def _to_int(values: pd.Series, path, column: str) -> pd.Series:
    numeric = pd.to_numeric(values, errors="coerce")
    bad = numeric.isna() | (numeric != np.floor(numeric))
    if bad.any():
        where = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataFormatError(
            f"{path}: column '{column}' must hold whole numbers, but data row {where + 1} "
            f"holds {values.iloc[where]!r} (is the file truncated or a column shifted?)"
        )
    return numeric.astype(np.int64)


def read_recbole_atomic(root: Path, name: str) -> Interactions:
    """Read ``{name}.inter``, ``.item`` and ``.user`` from a RecBole atomic-file folder."""
    root = Path(root)
    inter = _read_atomic(root / f"{name}.inter", {"user_id": "int", "item_id": "int", "rating": "int", "timestamp": "int"})
    item = _read_atomic(root / f"{name}.item", {"item_id": "int", "movie_title": "str", "release_year": "str", "class": "str"})
    user = _read_atomic(root / f"{name}.user", {"user_id": "int", "age": "int", "gender": "str", "occupation": "str"})
    items = pd.DataFrame(
        {
            "title": item["movie_title"].to_numpy(),
            "year": pd.to_numeric(item["release_year"], errors="coerce").astype("Int64").array,
            "genres": [g.split() if g else [] for g in item["class"]],
        },
        index=item["item_id"].to_numpy(),
    )
    users = user.set_index("user_id")[["age", "gender", "occupation"]]
    return Interactions.from_frame(inter, items, users, name)


# --- GroupLens archives -----------------------------------------------------------------

def _zip_text(archive: Path, member: str) -> str:
    with zipfile.ZipFile(archive) as zf:
        try:
            return zf.read(member).decode("latin-1")
        except KeyError as error:
            raise DataFormatError(f"{archive} has no member {member}; is it the right archive?") from error


def _title_year(raw: str) -> tuple[str, int | None]:
    match = re.match(r"^(.*?)\s*\((\d{4})\)\s*$", raw)
    return (match.group(1), int(match.group(2))) if match else (raw, None)


def _frame(text: str, sep: str, names: list[str], source: str) -> pd.DataFrame:
    frame = pd.read_csv(io.StringIO(text), sep=sep, header=None, names=names, dtype=str, engine="python", quoting=3)
    for column in names:
        if column in ("user_id", "item_id", "rating", "timestamp", "age"):
            frame[column] = _to_int(frame[column], source, column)
    return frame


def read_grouplens_100k(archive: Path) -> Interactions:
    inter = _frame(_zip_text(archive, "ml-100k/u.data"), "\t", ["user_id", "item_id", "rating", "timestamp"], "u.data")
    raw_items = _frame(_zip_text(archive, "ml-100k/u.item"), r"\|", ["item_id", "title", "date", "video", "url", *ML100K_GENRES], "u.item")
    titles = [_title_year(t) for t in raw_items["title"]]
    items = pd.DataFrame(
        {
            "title": [t for t, _ in titles],
            "year": pd.array([y for _, y in titles], dtype="Int64"),
            "genres": [[g for g in ML100K_GENRES if row[g] == "1"] for _, row in raw_items.iterrows()],
        },
        index=raw_items["item_id"].to_numpy(),
    )
    users = _frame(_zip_text(archive, "ml-100k/u.user"), r"\|", ["user_id", "age", "gender", "occupation", "zip"], "u.user")
    return Interactions.from_frame(inter, items, users.set_index("user_id")[["age", "gender", "occupation"]], "ml-100k")


def read_grouplens_1m(archive: Path) -> Interactions:
    inter = _frame(_zip_text(archive, "ml-1m/ratings.dat"), "::", ["user_id", "item_id", "rating", "timestamp"], "ratings.dat")
    movies = _frame(_zip_text(archive, "ml-1m/movies.dat"), "::", ["item_id", "title", "genres"], "movies.dat")
    titles = [_title_year(t) for t in movies["title"]]
    items = pd.DataFrame(
        {
            "title": [t for t, _ in titles],
            "year": pd.array([y for _, y in titles], dtype="Int64"),
            "genres": [g.split("|") for g in movies["genres"]],
        },
        index=movies["item_id"].to_numpy(),
    )
    users = _frame(_zip_text(archive, "ml-1m/users.dat"), "::", ["user_id", "gender", "age", "occupation", "zip"], "users.dat")
    return Interactions.from_frame(inter, items, users.set_index("user_id")[["age", "gender", "occupation"]], "ml-1m")


def read_grouplens_20m(archive: Path) -> Interactions:
    """ML-20M: ``ratings.csv`` (userId, movieId, rating in half stars, timestamp) and ``movies.csv``."""
    with zipfile.ZipFile(archive) as zf:
        try:
            with zf.open("ml-20m/ratings.csv") as handle:
                ratings = pd.read_csv(handle, dtype={"userId": np.int64, "movieId": np.int64,
                                                     "rating": np.float32, "timestamp": np.int64})
            with zf.open("ml-20m/movies.csv") as handle:
                movies = pd.read_csv(handle, dtype={"movieId": np.int64, "title": str, "genres": str},
                                     keep_default_na=False)
        except KeyError as error:
            raise DataFormatError(f"{archive} lacks {error}; is it the GroupLens ml-20m.zip?") from error
        except ValueError as error:
            raise DataFormatError(f"{archive}: ratings.csv or movies.csv does not have the ML-20M columns ({error})") from error
    expected = {"ratings.csv": (ratings, ["userId", "movieId", "rating", "timestamp"]),
                "movies.csv": (movies, ["movieId", "title", "genres"])}
    for member, (frame, columns) in expected.items():
        if list(frame.columns) != columns:
            raise DataFormatError(f"{archive}: ml-20m/{member} has columns {list(frame.columns)}, expected {columns}")
    inter = ratings.rename(columns={"userId": "user_id", "movieId": "item_id"})
    titles = [_title_year(t) for t in movies["title"]]
    items = pd.DataFrame(
        {
            "title": [t for t, _ in titles],
            "year": pd.array([y for _, y in titles], dtype="Int64"),
            "genres": [[] if g == "(no genres listed)" else g.split("|") for g in movies["genres"]],
        },
        index=movies["movieId"].to_numpy(),
    )
    users = pd.DataFrame(index=pd.Index(np.unique(inter["user_id"].to_numpy()), name="user_id"))
    return Interactions.from_frame(inter, items, users, "ml-20m")


def item_text(data: Interactions) -> list[str]:
    """One line of text per item (title, year, genres), the input of text encoders."""
    out = []
    for title, year, genres in zip(data.items["title"], data.items["year"], data.items["genres"]):
        year_part = f" ({year})" if pd.notna(year) else ""
        genre_part = ", ".join(genres) if isinstance(genres, list) and genres else "unknown genre"
        out.append(f"{title}{year_part}. Genres: {genre_part}.")
    return out
