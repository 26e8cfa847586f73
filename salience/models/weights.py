"""Weight files: read safely (tensors only), unwrapped, checked against the architecture.

Every weight file is read with ``torch.load(weights_only=True)`` (or as safetensors): a file
that pickles Python objects or code is refused as unsafe, never executed.
"""

from __future__ import annotations

import hashlib
import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from salience.errors import SalienceError


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_WRAPPERS = ("state_dict", "model_state_dict", "model", "module", "net", "weights")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``path`` (safely: weights only), unwrapping common checkpoint dicts
    (``{"state_dict": ...}``, ``{"model": ...}``) and DataParallel ``module.`` prefixes."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "Detected pickle protocol 4 ..."
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise _refused(path, str(exc)) from None
    except Exception as exc:  # torch.load raises KeyError, RuntimeError, ... on foreign files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SalienceError(
            f"cannot read weights {path} ({type(exc).__name__}: {first}); is it a torch.save file?"
        ) from None
    for key in _WRAPPERS:
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise SalienceError(f"{path} is not a state dict (a mapping of names to tensors)")
    state = dict(obj)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


_PICKLE_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def _refused(path: Path, message: str) -> SalienceError:
    """The error for a file the weights-only unpickler would not load.

    A pickle (bare or inside a torch.save archive) that names Python globals or uses opcodes
    beyond tensors and containers could run code when loaded: it is refused as unsafe, never
    executed. Anything else that fails to unpickle is simply not a torch.save file.
    """
    with open(path, "rb") as f:
        head = f.read(4)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80" or "GLOBAL" in message):
        return SalienceError(f"cannot read weights {path}: not a torch.save file")
    found = _PICKLE_GLOBAL.search(message)
    what = f" (it calls {found[1]})" if found else ""
    return SalienceError(
        f"refused {path} as unsafe: it pickles Python objects or code{what} that loading "
        "would execute; weights are read as tensors only. Save model.state_dict() with "
        "torch.save and pass that file"
    )


def apply_state_dict(
    module: nn.Module, state: Mapping[str, torch.Tensor], path: Path, arch: str
) -> None:
    """``load_state_dict(strict=True)`` with a one-line summary of any mismatch."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({', '.join(missing[:2])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({', '.join(unexpected[:2])})")
        if wrong:
            k = wrong[0]
            shapes = f"{k}: {list(state[k].shape)} vs {list(own[k].shape)}"
            parts.append(f"{len(wrong)} of another shape ({shapes})")
        raise SalienceError(f"weights {path.name} do not fit {arch}: {'; '.join(parts)} tensors")
    module.load_state_dict(state, strict=True)


def classifier_outputs(state: Mapping[str, torch.Tensor], default: nn.Module) -> int | None:
    """Class count of a fine-tuned checkpoint: the last 2-D weight that differs from
    ``default``'s only in its first dimension (the classifier head)."""
    own = default.state_dict()
    for key in reversed(list(state)):
        t = state[key]
        if t.ndim == 2 and key in own and own[key].ndim == 2:
            if t.shape[1] == own[key].shape[1] and t.shape[0] != own[key].shape[0]:
                return int(t.shape[0])
            return None
    return None


def read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    """A ``.safetensors`` file (safe by format) or a ``torch.save`` state dict (weights only)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    return read_state_dict(path)
