"""The resume state of a training run without pickle: one safetensors file holding every tensor
and numpy array, and in its metadata a JSON tree of the rest (numbers, strings, lists, dicts with
any int or str keys, tuples), so loading a file someone handed you runs no code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from mlffc.errors import MlffcError
from mlffc.io import atomic_path

_KEY = "mlffc_state"  # the metadata entry holding the JSON tree


def save_state(path: str | Path, state) -> None:
    """Write `state` (nested dicts, lists, tuples, tensors, numpy arrays, JSON scalars) atomically."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(state, tensors)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={_KEY: json.dumps(tree)})


def load_state(path: str | Path):
    """The state save_state wrote; MlffcError for a file that is not one (corrupt, cut, foreign)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        return _decode(json.loads(metadata[_KEY]), tensors)
    except (SafetensorError, OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise MlffcError(f"{path} is not a readable mlffc training state ({type(exc).__name__}: {exc}); "
                         f"delete it or pass --restart to start the run over") from None


def _encode(value, tensors: dict):
    if isinstance(value, torch.Tensor):
        name = str(len(tensors))
        tensors[name] = value.detach().cpu().clone().contiguous()
        return {"__tensor__": name}
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TypeError("object arrays cannot be saved without pickle")
        name = str(len(tensors))
        tensors[name] = torch.from_numpy(np.ascontiguousarray(value).copy())
        return {"__array__": name}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, tensors) for v in value]}
    if isinstance(value, list):
        return [_encode(v, tensors) for v in value]
    if isinstance(value, dict):
        return {"__items__": [[_encode(k, tensors), _encode(v, tensors)] for k, v in value.items()]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot save a {type(value).__name__} in a training state")


def _decode(value, tensors: dict):
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if isinstance(value, dict):
        if "__tensor__" in value:
            return tensors[value["__tensor__"]]
        if "__array__" in value:
            return tensors[value["__array__"]].numpy()
        if "__tuple__" in value:
            return tuple(_decode(v, tensors) for v in value["__tuple__"])
        return {_decode(k, tensors): _decode(v, tensors) for k, v in value["__items__"]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"unexpected {type(value).__name__} in the state tree")
