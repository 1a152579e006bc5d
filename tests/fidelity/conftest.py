"""Shared pieces of the fidelity tests: the saetraj binary under test and the checkpoints made by
transformers. Every package is imported at the top so that a missing one fails the run, never skips it."""
import os
import subprocess
from pathlib import Path

# Offline and quiet before transformers is imported: nothing may be downloaded, and progress bars would
# bury the per-case figures printed by the tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import pytest  # noqa: E402

import make_checkpoints  # noqa: E402


def saetraj_binary():
    path = os.environ.get("SAETRAJ_BINARY")
    if not path:
        raise RuntimeError("SAETRAJ_BINARY is not set: point it at the saetraj binary to test "
                           "(ctest sets it to the build's saetraj)")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"SAETRAJ_BINARY={path} is not an executable file")
    return path


def run_saetraj(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run([saetraj_binary(), *map(str, args)], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise AssertionError(f"saetraj {' '.join(map(str, args))} exited with {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    return make_checkpoints.make_all(tmp_path_factory.mktemp("checkpoints"))


def hub_snapshot(hub, repo_id, folder):
    """A Hugging Face cache entry for repo_id under the cache folder `hub` (the fixture below), as
    hf_hub_download leaves it; returns the folder `folder` inside its snapshot, created empty."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = hub / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit / folder
    snapshot.mkdir(parents=True, exist_ok=True)
    return snapshot


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A Hugging Face cache of the test's own, for SAE-Lens's loaders to find what hub_snapshot writes
    without a download."""
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"
