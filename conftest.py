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


class NotebookStderrWarning(UserWarning):
    """A notebook cell wrote to stderr: the book shows that as a stderr block."""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # nbval keeps each cell's outputs; a stderr stream there (a warning, a progress bar, a
    # path of this machine) would render in the book, where the browser check of the
    # executed build rejects it. Say so here, where the cell ran.
    outcome = yield
    if call.when != "call" or item.path.suffix != ".ipynb":
        return
    for output in getattr(item, "test_outputs", None) or []:
        if output.get("output_type") == "stream" and output.get("name") == "stderr":
            text = " ".join(str(output.get("text", "")).split())[:200]
            item.warn(NotebookStderrWarning(f"{item.name} wrote to stderr, which the book would show: {text}"))
            break
