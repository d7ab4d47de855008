"""Shared fixtures."""
import pytest


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and far faster than two on a loaded machine."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


_ENVIRONMENT = ("DEBUGSIM_HOME", "DEBUGSIM_KEY", "DEBUGSIM_PARALLEL")
_saved: dict = {}


def pytest_configure(config):
    """A debugsim home of the tests' own, with a fixed key: incidents are reproducible and the
    user's real home is never touched. Set before anything starts (the verdict matrix's worker
    processes start right after collection and inherit it)."""
    import os
    import tempfile
    _saved.update({k: os.environ.get(k) for k in _ENVIRONMENT})
    _saved["home"] = tempfile.mkdtemp(prefix="debugsim-tests-home-")
    os.environ["DEBUGSIM_HOME"] = _saved["home"]
    os.environ["DEBUGSIM_KEY"] = "tests-0123456789abcdef"
    # the matrix's workers already fill the cores: runs stay in their process (the forked
    # path has its own test, tests/test_parallel.py, in a fresh interpreter)
    os.environ["DEBUGSIM_PARALLEL"] = "0"


def pytest_unconfigure(config):
    import os
    import shutil
    if "home" not in _saved:
        return
    shutil.rmtree(_saved.pop("home"), ignore_errors=True)
    for key in _ENVIRONMENT:
        value = _saved.pop(key, None)
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session", autouse=True)
def learner_home():
    """The tests' debugsim home (see pytest_configure)."""
    import os
    from pathlib import Path
    return Path(os.environ["DEBUGSIM_HOME"])


# --- the verdict matrix, computed beside the rest of the suite --------------------------------
# The matrix (tests/test_matrix.py) re-runs every scenario x cause x fix combination x seed in
# worker processes. Its tests are moved to the end of the session and its work starts as soon
# as collection is done, in a background thread that feeds the worker pool, so the other tests
# run on the main process meanwhile: the same findings, the cores kept busy.

MATRIX_TEST = "test_every_declared_verdict_holds_on_rerun"
_matrix: dict = {}


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: MATRIX_TEST in item.nodeid)         # stable: the rest keep order


def pytest_collection_finish(session):
    if any(MATRIX_TEST in item.nodeid for item in session.items):
        import threading
        from test_matrix import compute_matrix
        thread = threading.Thread(target=_compute, args=(compute_matrix,), daemon=True,
                                  name="verdict-matrix")
        _matrix["thread"] = thread
        thread.start()


def _compute(compute_matrix) -> None:
    try:
        _matrix["found"] = compute_matrix()
    except BaseException as error:                  # re-raised in the matrix tests
        _matrix["error"] = error


def matrix_findings(compute_matrix) -> dict:
    """The matrix's findings: from the background run if one was started, else computed now."""
    thread = _matrix.get("thread")
    if thread is None:
        return compute_matrix()
    thread.join()
    if "error" in _matrix:
        raise _matrix["error"]
    return _matrix["found"]
