"""Checkpoints: model, optimizer, RNG state and your own metadata in one ``.npz`` file.

    save_checkpoint("out/ckpt.npz", model, opt, step=100, data_rng=rng)
    meta = load_checkpoint("out/ckpt.npz", model, opt)      # meta["step"] == 100

The format can never execute code when loaded: a plain zip of ``.npy`` arrays read with
``np.load(..., allow_pickle=False)``, and JSON for everything else. Entries:

    __meta__          uint8: UTF-8 JSON {format, version, config, user meta, optimizer layout, RNG states, ...}
    __checksum__      uint8: sha256 (hex) over __meta__ and every other entry's name, dtype, shape and bytes
    model/<name>      each parameter under its state-dict name (a tied weight once; the JSON says which names share it)
    optim/...         the optimizer's state arrays (exp_avg, exp_avg_sq, ...), numbered as in its state_dict
    meta/..., rng/... arrays found inside your metadata or a generator's state

Writing is atomic: the file is written under a temporary name in the same directory, flushed and
fsync'ed, then renamed over the target (and the directory fsync'ed), so a crash mid-write leaves
the previous checkpoint intact. A process killed mid-write leaves its temporary file
(``.<name>.<random>.tmp``) behind; `remove_stale_temporaries` deletes those. Arrays are saved
C-contiguous (a transposed view round-trips).

Loading checks everything (zip structure, no pickled objects, checksum, names, shapes, config,
optimizer type) before changing anything: on any problem it raises `CheckpointError` naming the
file, and the model and optimizer are untouched.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import re
import secrets
from collections.abc import Mapping
from typing import Any

import numpy as np

from tinygrad_lm.nn import Module
from tinygrad_lm.optim import Optimizer

FORMAT = "tinygrad_lm.checkpoint"
VERSION = 1
RESERVED_KEYS = frozenset({"model", "optimizer", "config", "rng"})
_GENERATORS = {name: getattr(np.random, name) for name in ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")}


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupted, foreign, or does not fit the model/optimizer."""


# ---------------------------------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------------------------------


def save_checkpoint(path: str | os.PathLike, model: Module, optimizer: Optimizer | None = None, **meta: Any) -> str:
    """Write ``model`` (and ``optimizer``) state, the model's config and RNG states, and ``meta``
    (JSON-like values, numpy arrays and ``np.random.Generator``s allowed) to ``path`` atomically.

    ``meta`` may not use the names ``model``, ``optimizer``, ``config`` or ``rng`` (the loaded
    dictionary uses them). Returns the path written.
    """
    path = os.fspath(path)
    if not isinstance(model, Module):
        raise TypeError(f"save_checkpoint: model must be a Module, got {type(model).__name__}")
    clash = RESERVED_KEYS & set(meta)
    if clash:
        raise ValueError(f"save_checkpoint: meta keys {sorted(clash)} are reserved for the checkpoint's own fields")
    arrays: dict[str, np.ndarray] = {}
    first_name: dict[int, str] = {}
    tied: dict[str, str] = {}
    model_keys = []
    for name, array in model.state_dict().items():
        model_keys.append(name)
        if id(array) in first_name:
            tied[name] = first_name[id(array)]
            continue
        first_name[id(array)] = name
        arrays[f"model/{name}"] = np.ascontiguousarray(array)
    config = getattr(model, "config", None)
    document = {
        "format": FORMAT,
        "version": VERSION,
        "model_type": type(model).__name__,
        "config": dataclasses.asdict(config) if dataclasses.is_dataclass(config) else None,
        "model_keys": model_keys,
        "tied": tied,
        "rng": {name: _pack(g, f"rng/{name}", arrays) for name, g in model.named_generators()},
        "optimizer_type": type(optimizer).__name__ if optimizer is not None else None,
        "optimizer": _pack(optimizer.state_dict(), "optim", arrays) if optimizer is not None else None,
        "meta": {key: _pack(value, f"meta/{key}", arrays) for key, value in meta.items()},
    }
    try:
        text = json.dumps(document, allow_nan=True)
    except (TypeError, ValueError) as error:
        raise TypeError(f"save_checkpoint: metadata must be JSON-like values, arrays or generators: {error}") from None
    arrays["__meta__"] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    arrays["__checksum__"] = np.frombuffer(_checksum(arrays).encode("ascii"), dtype=np.uint8)
    _write_atomically(path, arrays)
    return path


def _pack(value: Any, where: str, arrays: dict[str, np.ndarray]) -> Any:
    """``value`` as JSON, with arrays moved into ``arrays`` (referenced by name) and generators
    replaced by their state."""
    if isinstance(value, np.random.Generator):
        return {"__generator__": _pack(value.bit_generator.state, where, arrays)}
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufc":
            raise TypeError(f"save_checkpoint: {where} has dtype {value.dtype}; only numeric arrays are stored")
        arrays[where] = np.ascontiguousarray(value)
        return {"__array__": where}
    if isinstance(value, Mapping):
        packed = {}
        for key, item in value.items():
            if isinstance(key, bool) or not isinstance(key, (str, int, np.integer)):
                raise TypeError(f"save_checkpoint: {where} has a key {key!r}; keys must be strings or ints")
            packed[str(key)] = _pack(item, f"{where}/{key}", arrays)
        return packed
    if isinstance(value, (list, tuple)):
        return [_pack(item, f"{where}/{i}", arrays) for i, item in enumerate(value)]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"save_checkpoint: {where} is a {type(value).__name__}, which a checkpoint cannot store")


def _checksum(arrays: Mapping[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        if name == "__checksum__":
            continue
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _write_atomically(path: str, arrays: dict[str, np.ndarray]) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, allow_pickle=False, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def remove_stale_temporaries(path: str | os.PathLike) -> list[str]:
    """Delete the temporary files that writes of ``path`` left behind when their process was killed
    mid-write (SIGKILL, power loss: no chance to clean up); returns the paths removed. Call it only
    when no other process is writing ``path``, as `Trainer.run` does when a run starts."""
    directory, name = os.path.split(os.path.abspath(os.fspath(path)))
    pattern = re.compile(rf"\.{re.escape(name)}\.[0-9a-f]{{12}}\.tmp")
    removed = []
    for entry in os.listdir(directory) if os.path.isdir(directory) else []:
        if pattern.fullmatch(entry):
            with contextlib.suppress(OSError):  # cleaning up must never stop a run
                os.unlink(os.path.join(directory, entry))
                removed.append(os.path.join(directory, entry))
    return removed


# ---------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------


def load_checkpoint(
    path: str | os.PathLike, model: Module | None = None, optimizer: Optimizer | None = None
) -> dict[str, Any]:
    """Read a checkpoint, restore it into ``model`` and ``optimizer`` (if given), and return the
    saved meta plus ``"model"`` (the state dict, every name including tied ones), ``"optimizer"``
    (its state dict or None), ``"config"`` (a dict or None) and ``"rng"`` (the model's random
    streams as saved, ``{module name: np.random.Generator}``).

    Raises `CheckpointError` naming the file and the problem; then nothing was changed.
    """
    path = os.fspath(path)
    entries = _read_entries(path)
    document = _read_document(path, entries)

    def fail(problem: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {path}: {problem}")

    try:
        tied: dict[str, str] = document["tied"]
        state = {}
        for name in document["model_keys"]:
            key = f"model/{tied.get(name, name)}"
            if key not in entries:
                raise fail(f"entry {key!r} is missing")
            state[name] = entries[key]
        optimizer_state = _unpack(document["optimizer"], entries)
        rng_states = {name: _unpack(s, entries) for name, s in document["rng"].items()}
        user_meta = {key: _unpack(value, entries) for key, value in document["meta"].items()}
    except CheckpointError:
        raise
    except (KeyError, TypeError, AttributeError, ValueError, RecursionError) as error:  # nested too deep
        raise fail(f"malformed metadata ({type(error).__name__}: {error})") from None

    # Validate everything against what we restore into, then change it all.
    model_plan = optimizer_plan = None
    generators: list[tuple[np.random.Generator, dict]] = []
    if model is not None:
        _check_config(model, document.get("config"), fail)
        try:
            model_plan = model._plan_load(state, strict=True)[0]
        except (ValueError, TypeError) as error:
            raise fail(f"does not fit the model: {error}") from None
        generators = _plan_generators(model, rng_states, fail)
    if optimizer is not None:
        if optimizer_state is None:
            raise fail("holds no optimizer state, but an optimizer was given to restore")
        if document["optimizer_type"] != type(optimizer).__name__:
            raise fail(f"holds {document['optimizer_type']} state, not {type(optimizer).__name__} state")
        try:
            optimizer_plan = optimizer._plan_load(optimizer_state)
        except (ValueError, TypeError, KeyError) as error:
            raise fail(f"does not fit the optimizer: {error}") from None
    if model_plan is not None:
        for p, array in model_plan:
            np.copyto(p.data, array, casting="unsafe")
    for generator, saved in generators:
        generator.bit_generator.state = saved
    if optimizer_plan is not None:
        optimizer._apply(optimizer_plan)
    return {
        **user_meta,
        "model": state,
        "optimizer": optimizer_state,
        "config": document.get("config"),
        "rng": rng_states,
    }


def _read_entries(path: str) -> dict[str, np.ndarray]:
    """Every array in the file, or a `CheckpointError` saying why the file is not a checkpoint."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path}: no such file") from None
    except OSError as error:
        raise CheckpointError(f"checkpoint {path}: cannot be read ({error})") from None
    if not raw.startswith(b"PK\x03\x04"):
        kinds = {b"": "an empty file", b"\x80": "a pickle", b"\x93NUMPY": "a .npy array"}
        kind = next((k for prefix, k in kinds.items() if prefix and raw.startswith(prefix)), None)
        kind = kind or ("an empty file" if not raw else "some other format")
        raise CheckpointError(f"checkpoint {path}: not a checkpoint (expected an .npz zip archive, found {kind})")
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
            entries = {name: archive[name] for name in archive.files}
    except ValueError as error:
        if "pickle" in str(error).lower() or "object" in str(error).lower():
            raise CheckpointError(
                f"checkpoint {path}: refused, it holds a pickled object array (checkpoints never need pickle, "
                "and unpickling could run code)"
            ) from None
        raise CheckpointError(f"checkpoint {path}: corrupted ({error})") from None
    except Exception as error:  # zipfile.BadZipFile, EOFError, zlib.error, OSError ...
        raise CheckpointError(f"checkpoint {path}: truncated or corrupted ({type(error).__name__}: {error})") from None
    foreign = [name for name, value in entries.items() if not isinstance(value, np.ndarray)]
    if foreign:  # np.load hands back the raw bytes of a zip member that is not a .npy
        raise CheckpointError(f"checkpoint {path}: not a checkpoint (entries {foreign} are not numpy arrays)")
    return entries


def _read_document(path: str, entries: dict[str, np.ndarray]) -> dict[str, Any]:
    meta, checksum = entries.get("__meta__"), entries.get("__checksum__")
    if meta is None or checksum is None:
        raise CheckpointError(f"checkpoint {path}: not a tinygrad_lm checkpoint (no __meta__/__checksum__ entry)")
    if meta.dtype != np.uint8 or meta.ndim != 1 or checksum.dtype != np.uint8 or checksum.ndim != 1:
        raise CheckpointError(f"checkpoint {path}: __meta__/__checksum__ entries are not byte strings")
    if checksum.tobytes().decode("ascii", errors="replace") != _checksum(entries):
        raise CheckpointError(f"checkpoint {path}: checksum mismatch, the file is corrupted")
    try:
        document = json.loads(meta.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise CheckpointError(f"checkpoint {path}: unreadable metadata ({error})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: not a tinygrad_lm checkpoint (format {document.get('format')!r})")
    if document.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint {path}: format version {document.get('version')!r}, this code reads version {VERSION}"
        )
    return document


def _unpack(value: Any, entries: Mapping[str, np.ndarray]) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__array__"}:
            return entries[value["__array__"]]
        if set(value) == {"__generator__"}:
            state = _unpack(value["__generator__"], entries)
            generator = np.random.Generator(_GENERATORS[state["bit_generator"]]())
            generator.bit_generator.state = state
            return generator
        return {key: _unpack(item, entries) for key, item in value.items()}
    if isinstance(value, list):
        return [_unpack(item, entries) for item in value]
    return value


def _check_config(model: Module, saved: dict[str, Any] | None, fail: Any) -> None:
    """The saved config must match the model's, except dropout (a training choice, not a shape)."""
    config = getattr(model, "config", None)
    if saved is None or not dataclasses.is_dataclass(config):
        return
    if not isinstance(saved, dict):
        raise fail(f"malformed metadata (config is a {type(saved).__name__})")
    current = dataclasses.asdict(config)
    different = [
        f"{key}: saved {saved.get(key)!r}, model {current.get(key)!r}"
        for key in sorted(set(saved) | set(current))
        if key != "dropout" and saved.get(key) != current.get(key)
    ]
    if different:
        raise fail(f"was saved from a model with another config ({'; '.join(different)})")


def _plan_generators(model: Module, saved: dict[str, Any], fail: Any) -> list[tuple[np.random.Generator, dict]]:
    """Pair the model's random streams with the saved states, checking each state is valid."""
    own = dict(model.named_generators())
    if set(own) != set(saved):
        raise fail(f"random streams {sorted(saved)} do not match the model's {sorted(own)}")
    plan = []
    for name, generator in own.items():
        state = saved[name].bit_generator.state if isinstance(saved[name], np.random.Generator) else saved[name]
        trial = np.random.Generator(type(generator.bit_generator)())
        try:
            trial.bit_generator.state = state
        except (ValueError, TypeError, KeyError) as error:
            raise fail(f"random stream {name!r} has an invalid state ({error})") from None
        plan.append((generator, state))
    return plan
