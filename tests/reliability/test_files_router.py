"""Broken router folders fail at load with a clear RouterFileError (and one CLI error line), not at the first call."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from hybrid_router import HybridRouter, RouterFileError


@pytest.fixture(scope="module")
def router_folder(tmp_path_factory, default_router):
    """The shipped router saved to a temp folder."""
    return default_router.save(tmp_path_factory.mktemp("router") / "good")


def broken_copy(router_folder, tmp_path, *, config=None, tensors=None):
    """A copy of the router folder with ``config(dict)`` and/or ``tensors(dict)`` applied in place."""
    folder = tmp_path / "broken"
    shutil.copytree(router_folder, folder)
    if config:
        data = json.loads((folder / "router.json").read_text())
        config(data)
        (folder / "router.json").write_text(json.dumps(data))
    if tensors:
        arrays = {k: v.copy() for k, v in load_file(str(folder / "head.safetensors")).items()}
        tensors(arrays)
        save_file(arrays, str(folder / "head.safetensors"))
    return folder


def poison(value):
    def apply(arrays):
        name = sorted(arrays)[-1]
        arrays[name].flat[0] = value

    return apply


BROKEN = {
    "encoder_layers 99": ({"config": lambda c: c.update(encoder_layers=99)}, "has only 6 layers"),
    "encoder_layers text": ({"config": lambda c: c.update(encoder_layers="3")}, "positive integer"),
    "missing encoder path": ({"config": lambda c: c.update(encoder="/nonexistent/encoder")}, "does not exist"),
    "head is a list": ({"config": lambda c: c.update(head=[1, 2])}, "'head' must be an object"),
    "NaN head weight": ({"tensors": poison(np.nan)}, "NaN or infinite"),
    "inf head weight": ({"tensors": poison(np.inf)}, "NaN or infinite"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_router_folder_fails_at_load(router_folder, tmp_path, case):
    changes, message = BROKEN[case]
    folder = broken_copy(router_folder, tmp_path, **changes)
    with pytest.raises(RouterFileError, match=message) as caught:
        HybridRouter.load(folder)
    assert str(folder) in str(caught.value)


def test_the_good_folder_still_loads_and_scores(router_folder, default_router):
    loaded = HybridRouter.load(router_folder)
    assert loaded.encoder_layers == default_router.encoder_layers == 3
    assert loaded.head.predict(np.zeros((1, 384), dtype=np.float32), ["hi"]).shape == (1,)


@pytest.mark.parametrize("case", ["encoder_layers 99", "head is a list", "NaN head weight"])
def test_cli_eval_with_a_broken_router_is_one_clear_error(router_folder, tmp_path, case):
    changes, message = BROKEN[case]
    folder = broken_copy(router_folder, tmp_path, **changes)
    data = tmp_path / "d.csv"
    data.write_text("query,small_score,large_score\nhi,1,0\n")
    done = subprocess.run(
        [sys.executable, "-m", "hybrid_router.cli", "eval", "--router", str(folder), str(data)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("hybrid-llm eval: error: ") and str(folder) in line and message in line
