"""Session-wide pytest hooks: results checks run after the notebooks that write them."""

import time

import pytest

SESSION_START = time.time()


def pytest_collection_modifyitems(session, config, items):
    # nbval items are collected from notebooks/*.ipynb; remember which chapters will run,
    # and move the results checks (marker "results") to the very end of the session.
    config.genrec_notebooks = {
        item.path.stem for item in items if item.path.suffix == ".ipynb"
    }
    items.sort(key=lambda item: item.get_closest_marker("results") is not None)


@pytest.fixture(scope="session")
def notebooks_run(request):
    return getattr(request.config, "genrec_notebooks", set())


@pytest.fixture(scope="session")
def session_start():
    return SESSION_START
