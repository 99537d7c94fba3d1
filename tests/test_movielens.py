import io
import zipfile

import pytest

from genrec_lib import assets
from genrec_lib.data import DataFormatError, item_text, load_movielens
from genrec_lib.data.movielens import read_grouplens_100k, read_recbole_atomic


def test_offline_ml100k_shape(ml100k):
    assert (ml100k.n_users, ml100k.n_items, len(ml100k)) == (943, 1682, 100_000)
    assert ml100k.items.loc[0, "title"] == "Toy Story" and ml100k.items.loc[0, "year"] == 1995
    assert "Animation" in ml100k.items.loc[0, "genres"]
    assert set(ml100k.users.columns) == {"age", "gender", "occupation"}
    assert ml100k.user_ids[ml100k.user[0]] == 196 and ml100k.item_ids[ml100k.item[0]] == 242
    assert item_text(ml100k)[0] == "Toy Story (1995). Genres: Animation, Children's, Comedy."


def _atomic_copy(tmp_path, inter_text=None, item_text_=None):
    src = assets.recbole_ml100k_dir()
    for suffix in ("inter", "item", "user"):
        (tmp_path / f"ml-100k.{suffix}").write_bytes((src / f"ml-100k.{suffix}").read_bytes())
    if inter_text is not None:
        (tmp_path / "ml-100k.inter").write_text(inter_text)
    if item_text_ is not None:
        (tmp_path / "ml-100k.item").write_text(item_text_)
    return tmp_path


def test_truncated_file_names_the_row(tmp_path):
    header = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    root = _atomic_copy(tmp_path, header + "196\t242\t3\t881250949\n186\t302\n")
    with pytest.raises(DataFormatError, match="row 2"):
        read_recbole_atomic(root, "ml-100k")


def test_wrong_columns_are_named(tmp_path):
    root = _atomic_copy(tmp_path, "user:token\titem:token\n1\t2\n")
    with pytest.raises(DataFormatError, match="lacks the column"):
        read_recbole_atomic(root, "ml-100k")


def test_non_numeric_ids_are_reported(tmp_path):
    header = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    root = _atomic_copy(tmp_path, header + "alice\t242\t3\t881250949\n")
    with pytest.raises(DataFormatError, match="whole numbers.*'alice'"):
        read_recbole_atomic(root, "ml-100k")


def test_missing_file_names_the_install_command(tmp_path):
    with pytest.raises(DataFormatError, match="pip install --no-deps recbole"):
        read_recbole_atomic(tmp_path, "ml-100k")


def test_grouplens_archive_reader_matches_offline_copy(tmp_path, ml100k):
    """A GroupLens-format archive built from the offline copy reads back to the same data."""
    frame = ml100k.to_frame()
    buffer = io.BytesIO()
    genres = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
              "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
              "Thriller", "War", "Western"]
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("ml-100k/u.data", frame.to_csv(sep="\t", header=False, index=False))
        lines = []
        for i, row in ml100k.items.iterrows():
            flags = "|".join("1" if g in row["genres"] else "0" for g in genres)
            lines.append(f"{ml100k.item_ids[i]}|{row['title']} ({row['year']})|01-Jan-{row['year']}||http://x|{flags}")
        zf.writestr("ml-100k/u.item", "\n".join(lines))
        users = ml100k.users
        zf.writestr("ml-100k/u.user", "\n".join(
            f"{ml100k.user_ids[u]}|{users.loc[u, 'age']}|{users.loc[u, 'gender']}|{users.loc[u, 'occupation']}|00000"
            for u in range(ml100k.n_users)))
    archive = tmp_path / "ml-100k.zip"
    archive.write_bytes(buffer.getvalue())
    loaded = read_grouplens_100k(archive)
    assert (loaded.n_users, loaded.n_items, len(loaded)) == (943, 1682, 100_000)
    assert (loaded.user == ml100k.user).all() and (loaded.item == ml100k.item).all()
    assert loaded.items.loc[0, "genres"] == ml100k.items.loc[0, "genres"]


def test_unknown_dataset_and_source_list_choices():
    with pytest.raises(ValueError, match="ml-100k, ml-1m"):
        load_movielens("netflix")
    with pytest.raises(ValueError, match="auto, recbole, grouplens"):
        load_movielens("ml-100k", source="web")
