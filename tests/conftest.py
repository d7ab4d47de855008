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


@pytest.fixture(scope="session", autouse=True)
def learner_home(tmp_path_factory):
    """A debugsim home of the tests' own, with a fixed key: incidents are reproducible and the
    user's real home is never touched."""
    import os
    home = tmp_path_factory.mktemp("debugsim-home")
    saved = {k: os.environ.get(k) for k in ("DEBUGSIM_HOME", "DEBUGSIM_KEY")}
    os.environ["DEBUGSIM_HOME"] = str(home)
    os.environ["DEBUGSIM_KEY"] = "tests-0123456789abcdef"
    yield home
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
