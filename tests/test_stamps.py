"""The Tux Paint stamp catalogue, its simulated users and requests, and the cold-item split."""

import numpy as np
import pytest

from genrec_lib import assets
from genrec_lib.data import DATASETS, load_dataset
from genrec_lib.data.stamps import (COLOURS, STYLES, UserSimulation, cached_catalogue, load_stamp_catalogue,
                                    request_text, simulate_requests, simulate_users, split_cold_items)
from genrec_lib.data.splits import split_random


@pytest.fixture(scope="module")
def catalogue():
    return cached_catalogue()


def test_catalogue_is_validated_and_described(catalogue):
    items = catalogue.items
    assert 700 <= len(items) <= 800
    assert items["item_id"].is_unique and items["caption"].str.len().min() > 0
    assert set(items["colour"]) <= set(COLOURS) and set(items["style"]) == set(STYLES)
    assert {"animals", "food", "vehicles", "plants"} <= set(items["category"])
    assert 0 < len(catalogue.skipped) < 60  # the package has a few PNGs without captions, and tiny ones
    images = catalogue.images(32)
    assert images.shape == (len(items), 3, 32, 32) and 0 <= images.min() and images.max() <= 1


def test_bad_files_are_skipped_with_a_reason(tmp_path):
    from PIL import Image

    folder = tmp_path / "food" / "fruit"
    folder.mkdir(parents=True)
    Image.new("RGBA", (64, 64), (255, 0, 0, 255)).save(folder / "apple.png")
    (folder / "apple.txt").write_text("An apple.\nfr.utf8=Une pomme.\n")
    (folder / "broken.png").write_bytes(b"not a png at all")
    (folder / "broken.txt").write_text("Broken.\n")
    Image.new("RGB", (64, 64)).save(folder / "nocaption.png")
    Image.new("RGB", (8, 8)).save(folder / "tiny.png")
    (folder / "tiny.txt").write_text("Tiny.\n")
    catalogue = load_stamp_catalogue(tmp_path)
    assert list(catalogue.items["caption"]) == ["An apple."]
    assert catalogue.items["colour"][0] == "red" and catalogue.items["category"][0] == "food"
    reasons = {path.split("/")[-1]: reason for path, reason in catalogue.skipped.items()}
    assert reasons["broken.png"].startswith("unreadable") and reasons["nocaption.png"] == "no caption file"
    assert reasons["tiny.png"].startswith("too small")


def test_missing_package_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv(assets.STAMPS_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(assets.AssetMissingError, match="apt-get install -y tuxpaint-stamps-default"):
        load_stamp_catalogue()


def test_simulation_is_seeded_and_follows_the_tastes(catalogue):
    a = simulate_users(catalogue, UserSimulation(n_users=200, seed=1))
    b = simulate_users(catalogue, UserSimulation(n_users=200, seed=1))
    assert np.array_equal(a.data.item, b.data.item) and a.data.n_items == len(catalogue)
    assert list(a.data.item_ids) == list(catalogue.items["item_id"])
    # Users pick from their favourite categories far more than at random.
    categories = sorted(catalogue.items["category"].unique())
    c = np.searchsorted(categories, catalogue.items["category"].to_numpy())
    favourite = a.category_taste.argmax(1)
    share = np.mean(c[a.data.item] == favourite[a.data.user])
    assert share > 3 * np.mean(np.bincount(c) / len(c))
    with pytest.raises(ValueError, match="alpha_category must be > 0"):
        UserSimulation(alpha_category=0)


def test_dataset_registry_and_cold_split(catalogue):
    assert "tuxpaint-stamps" in DATASETS
    data = load_dataset("tuxpaint-stamps")
    split, cold = split_cold_items(data, seed=3)
    assert not np.isin(split.train.item, cold).any() and not np.isin(split.valid.item, cold).any()
    assert np.isin(split.test.item, cold).all() and len(split.train) + len(split.valid) + len(split.test) == len(data)
    with pytest.raises(ValueError, match="cold_fraction"):
        split_cold_items(data, cold_fraction=1.5)


def test_requests_name_the_attributes_of_held_out_items(catalogue):
    data = simulate_users(catalogue, UserSimulation(n_users=150, seed=2)).data
    split = split_random(data, seed=2)
    request_split, requests = simulate_requests(split, "test", seed=2)
    items = data.items
    # Every user with test items asks once, and her request has at least one answer.
    assert set(request_split.test.user) == set(split.test.user) and len(request_split.test) < len(split.test)
    for user, item in zip(request_split.test.user[:50], request_split.test.item[:50]):
        assert requests[user] == request_text(items["category"][item], items["colour"][item])
        assert item in split.test.item[split.test.user == user]
    assert request_text("food", "red") == "something to eat that is red"
    with pytest.raises(ValueError, match="unknown category"):
        request_text("food", "teal")


def test_latent_taste_carries_the_share_it_is_given(catalogue):
    shares = {}
    for rho in (0.0, 0.5, 0.9):
        sim = simulate_users(catalogue, UserSimulation(n_users=300, seed=4, latent_share=rho))
        shares[rho] = sim.variance_shares()
        assert abs(shares[rho]["latent"] - rho) < 0.02, shares
        assert abs(sum(shares[rho].values()) - 1) < 0.05, shares  # the parts are independent
        if rho == 0.5:
            half = sim
    assert shares[0.0]["latent"] == 0
    # The content tastes do not change with the share; the choices do.
    other = simulate_users(catalogue, UserSimulation(n_users=300, seed=4, latent_share=0.9))
    assert np.array_equal(half.category_taste, other.category_taste) and np.array_equal(half.parts["content"], other.parts["content"])
    assert not np.array_equal(half.data.item, other.data.item)
    # With a mostly latent taste, choices follow the latent factors more than the favourite category.
    assert np.corrcoef(other.parts["latent"].ravel(), other.utility.ravel())[0, 1] > 0.9
    with pytest.raises(ValueError, match="latent_share must lie in"):
        UserSimulation(latent_share=1.0)


def test_the_data_layer_runs_no_image_network():
    import ast
    import inspect

    from genrec_lib.data import stamps

    tree = ast.parse(inspect.getsource(stamps))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    above = {name for name in imported if name.startswith("genrec_lib") and not name.startswith("genrec_lib.data")
             and name != "genrec_lib"}
    assert above == set(), f"genrec_lib.data.stamps imports {above}: image features belong above the data layer"
