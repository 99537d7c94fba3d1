import io
import zipfile

import numpy as np
import pandas as pd
import pytest

from genrec_lib import assets
from genrec_lib.data import DataFormatError, item_text, load_movielens
from genrec_lib.data.movielens import read_grouplens_1m, read_grouplens_20m, read_grouplens_100k, read_recbole_atomic


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


# --- ML-1M and ML-20M in their original formats ------------------------------------------------

def _ml1m_archive(path):
    """A small archive in ML-1M's format: '::'-separated .dat files, Latin-1, no header."""
    rng = np.random.default_rng(0)
    ratings = [f"{u}::{i}::{int(rng.integers(1, 6))}::{978300000 + 10 * u + i}"
               for u in range(1, 31) for i in rng.choice(np.arange(1, 41), 8, replace=False)]
    movies = [f"{i}::Film {i}, The ({1990 + i % 10})::{'Drama|Comedy' if i % 2 else 'Action'}" for i in range(1, 41)]
    movies[4] = "5::Amélie (2001)::Comedy|Romance"  # Latin-1, as in the real movies.dat
    users = [f"{u}::{'F' if u % 2 else 'M'}::25::{u % 21}::0{u:04d}" for u in range(1, 31)]
    with zipfile.ZipFile(path, "w") as zf:
        for member, lines in (("ratings.dat", ratings), ("movies.dat", movies), ("users.dat", users)):
            zf.writestr(f"ml-1m/{member}", ("\n".join(lines) + "\n").encode("latin-1"))
    return path


def _ml20m_archive(path):
    """A small archive in ML-20M's format: ratings.csv with half stars, movies.csv with quoted titles."""
    rng = np.random.default_rng(1)
    ratings = ["userId,movieId,rating,timestamp"] + [
        f"{u},{i},{rng.integers(1, 11) / 2:.1f},{1100000000 + 10 * u + i}"
        for u in range(1, 31) for i in rng.choice(np.arange(1, 41), 8, replace=False)]
    movies = ["movieId,title,genres"] + [f'{i},"Film {i}, The ({1990 + i % 10})",Drama|Comedy' for i in range(1, 40)]
    movies.append("40,Untitled,(no genres listed)")
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ml-20m/ratings.csv", "\n".join(ratings) + "\n")
        zf.writestr("ml-20m/movies.csv", "\n".join(movies) + "\n")
    return path


def test_ml1m_reader_reads_the_original_format(tmp_path):
    data = read_grouplens_1m(_ml1m_archive(tmp_path / "ml-1m.zip"))
    assert (data.n_users, data.n_items, len(data)) == (30, 40, 240)
    assert data.items.loc[4, "title"] == "Amélie" and data.items.loc[4, "year"] == 2001
    assert data.items.loc[0, "genres"] == ["Drama", "Comedy"] and data.items.loc[0, "title"] == "Film 1, The"
    assert set(data.users.columns) == {"age", "gender", "occupation"} and data.users.loc[0, "gender"] == "F"
    assert set(np.unique(data.rating)) <= {1, 2, 3, 4, 5}


def test_ml20m_reader_reads_the_original_format(tmp_path):
    data = read_grouplens_20m(_ml20m_archive(tmp_path / "ml-20m.zip"))
    assert (data.n_users, data.n_items, len(data)) == (30, 40, 240)
    assert data.rating.dtype == np.float32 and (data.rating * 2 == np.round(data.rating * 2)).all()
    assert (data.rating % 1 != 0).any()  # half stars are kept
    assert data.items.loc[0, "title"] == "Film 1, The" and data.items.loc[0, "year"] == 1991
    assert data.items.loc[39, "genres"] == []  # "(no genres listed)"
    frame = data.to_frame()
    assert frame["rating"].dtype == np.float32  # half stars survive export


def test_ml20m_reader_names_a_wrong_archive(tmp_path):
    path = tmp_path / "ml-20m.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ml-20m/ratings.csv", "user,item,score,time\n1,2,3.0,4\n")
        zf.writestr("ml-20m/movies.csv", "movieId,title,genres\n2,A (2000),Drama\n")
    with pytest.raises(DataFormatError, match="ratings.csv has columns"):
        read_grouplens_20m(path)


@pytest.fixture
def cached_archives(tmp_path, monkeypatch):
    """Synthetic ML-1M and ML-20M archives in the cache, registered with their own md5."""
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("GENREC_CACHE", str(cache))
    for name, build in (("ml-1m", _ml1m_archive), ("ml-20m", _ml20m_archive)):
        path = build(cache / f"{name}.zip")
        monkeypatch.setitem(assets.DOWNLOADS, name, dict(assets.DOWNLOADS[name], md5=assets.file_md5(path)))
    return cache


@pytest.mark.parametrize("name", ["ml-1m", "ml-20m"])
def test_cached_archive_loads_and_exports_through_the_cli(cached_archives, tmp_path, capsys, name):
    from genrec_lib import cli

    data = load_movielens(name)
    assert len(data) == 240
    out = tmp_path / f"export-{name}"
    assert cli.main(["data", "export", "--dataset", name, "--protocol", "random", "--out", str(out)]) == 0
    parts = [pd.read_csv(out / f"{part}.tsv", sep="\t") for part in ("train", "valid", "test")]
    assert sum(map(len, parts)) == 240
    assert cli.main(["bench", "--dataset", name, "--protocol", "random", "--model", "pop"]) == 0
    assert "ndcg@10" in capsys.readouterr().out.lower()


def test_offline_download_says_where_to_put_the_file(tmp_path, monkeypatch, capsys):
    import urllib.error
    import urllib.request

    from genrec_lib import cli

    monkeypatch.setenv("GENREC_CACHE", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(ConnectionError, match=f"put that file at {tmp_path / 'ml-20m.zip'}"):
        assets.dataset_archive("ml-20m")
    assert cli.main(["bench", "--dataset", "ml-1m", "--model", "pop"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "ml-1m.zip" in error and assets.DOWNLOADS["ml-1m"]["md5"] in error
