"""Checkpoints: model, optimizer, RNG state and your own metadata in one ``.npz`` file.

    save_checkpoint("out/ckpt.npz", model, opt, step=100, data_rng=rng)
    meta = load_checkpoint("out/ckpt.npz", model, opt)      # meta["step"] == 100

The format can never execute code when loaded: a plain zip of uncompressed ``.npy`` arrays (read
without pickle) and JSON for everything else. Entries (format version 2):

    __meta__        uint8: UTF-8 JSON {format, version, model_type, config, model_keys, tied,
                    allow_nonfinite, rng, optimizer_type, optimizer, meta}
    __checksum__    uint8: sha256 (hex) over every other entry's name, dtype, shape and bytes
    model/<name>    each parameter under its state-dict name (a tied weight once; "tied" says which
                    names share it)
    optim/<n>, rng/<n>, meta/<n>
                    the arrays (and numpy scalars) in the optimizer's state, in the model's random
                    streams and in your metadata, numbered in the order they are met

Values in the JSON (optimizer state, generator states, your metadata) use a tagged encoding, so
that whatever `save_checkpoint` accepts comes back exactly, with the same types:

    null, true, false, "text", 3, 2.5    themselves (ints up to 2**1024 in size, finite floats)
    [v, ...]                             a list
    {"tuple": [v, ...]}                  a tuple
    {"dict": [[k, v], ...]}              a dict, in order; its keys are encoded like values
    {"float": "nan" | "inf" | "-inf"}    a float that JSON cannot write
    {"array": "meta/0"}                  a numpy array, in that entry
    {"scalar": "meta/1"}                 a numpy scalar (np.float32(0.5)), a 0-d array in that entry
    {"generator": v}                     an np.random.Generator: its bit generator's state

A dict is never written as a JSON object, so no key ("a/b", "__array__", 1 next to "1") can be
taken for a tag or collide with another key, and entries are numbered, never named after keys.
Anything else (sets, bytes, arbitrary objects, subclasses such as OrderedDict or np.matrix, arrays of
strings, ...) is refused with a TypeError or ValueError before a file is touched. So are weights or
optimizer state holding NaN/Inf, unless you pass ``allow_nonfinite=True``.

Writing is atomic: the file is written under a temporary name in the same directory, flushed and
fsync'ed, then renamed over the target (and the directory fsync'ed), so a crash mid-write leaves
the previous checkpoint intact. A process killed mid-write leaves its temporary file
(``.<name>.<random>.tmp``, shortened for very long names) behind; `remove_stale_temporaries`
deletes those. A path that is a symlink is kept: the file it points to is replaced.

Loading checks everything before changing anything: that the path is a regular file; the zip's
directory and every entry's ``.npy`` header (uncompressed, sizes consistent with each other and with
the file, numeric dtypes, and, when a model is given, the shapes of its parameters), all before any
array data is read, so a small file can never make it read or allocate more than the file's size;
then the checksum, every field of the JSON document, and that every weight is finite. On any
problem it raises `CheckpointError` naming the file, and the model and optimizer are untouched.
Files of format version 1 (written before tagged values existed) still load, with version 1's
meanings (dict keys come back as strings, tuples as lists, numpy scalars as Python numbers).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import errno
import hashlib
import io
import json
import math
import os
import re
import secrets
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from typing import IO, Any

import numpy as np

from tinygrad_lm.nn import Module
from tinygrad_lm.optim import Optimizer

FORMAT = "tinygrad_lm.checkpoint"
VERSION = 2
READABLE_VERSIONS = (1, 2)
RESERVED_KEYS = frozenset({"model", "optimizer", "config", "rng"})
MAX_DEPTH = 100  # containers nested deeper than this are refused (JSON and Python recursion stay far from their limits)
INT_BITS = 1024  # bigger ints are refused: their decimal text must stay under every Python's int_max_str_digits
_GENERATORS = {name: getattr(np.random, name) for name in ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")}
_TAGS = ("tuple", "dict", "float", "array", "scalar", "generator")
_NUMERIC = "biufc"  # bool, int, unsigned, float, complex: the dtypes a checkpoint stores
_CHUNK = 1 << 24  # arrays are read from the file in pieces of 16 MiB
_NPY_HEADER_MAX = 10_012  # magic, version, length and numpy's own limit of 10000 bytes of header text
_FIELDS = ("format", "version", "model_type", "config", "model_keys", "tied", "allow_nonfinite", "rng",
           "optimizer_type", "optimizer", "meta")  # fmt: skip


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupted, foreign, or does not fit the model/optimizer."""


# ---------------------------------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------------------------------


def save_checkpoint(
    path: str | os.PathLike,
    model: Module,
    optimizer: Optimizer | None = None,
    *,
    allow_nonfinite: bool = False,
    **meta: Any,
) -> str:
    """Write ``model`` (and ``optimizer``) state, the model's config and RNG states, and ``meta``
    to ``path`` atomically; return ``path``.

    ``meta`` values may be None, bool, int, float, str, lists, tuples and dicts of these, numpy
    arrays and scalars of numeric dtypes, and ``np.random.Generator``s; `load_checkpoint` returns
    them exactly (same types, dtypes, shapes and bits; a generator as a new one in the same state).
    Anything else raises TypeError or ValueError naming it, before a file is touched. ``meta`` may
    not use the names ``model``, ``optimizer``, ``config`` or ``rng`` (the loaded dictionary does).

    Weights or optimizer state holding NaN/Inf are refused (ValueError naming the parameter): a
    checkpoint is what a run resumes from, so it must be good. ``allow_nonfinite=True`` writes
    them anyway (to inspect a diverged model), and loading such a file needs the same flag.

    A symlink at ``path`` stays a symlink: the file it points to is replaced.
    """
    path = os.fspath(path)
    if not isinstance(model, Module):
        raise TypeError(f"save_checkpoint: model must be a Module, got {type(model).__name__}")
    if optimizer is not None and not isinstance(optimizer, Optimizer):
        raise TypeError(f"save_checkpoint: optimizer must be an Optimizer or None, got {type(optimizer).__name__}")
    if type(allow_nonfinite) is not bool:
        raise TypeError(f"save_checkpoint: allow_nonfinite must be True or False, got {allow_nonfinite!r}")
    clash = RESERVED_KEYS & set(meta)
    if clash:
        raise ValueError(f"save_checkpoint: meta keys {sorted(clash)} are reserved for the checkpoint's own fields")
    optimizer_state = optimizer.state_dict() if optimizer is not None else None
    if not allow_nonfinite:
        _refuse_nonfinite(model, optimizer_state)

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
        arrays[f"model/{name}"] = _c_contiguous(array)
    rng, optim, user = _Encoder(arrays, "rng"), _Encoder(arrays, "optim"), _Encoder(arrays, "meta")
    document = {
        "format": FORMAT,
        "version": VERSION,
        "model_type": type(model).__name__,
        "config": _config_of(model),
        "model_keys": model_keys,
        "tied": tied,
        "allow_nonfinite": allow_nonfinite,
        "rng": {
            name: rng.encode(g, f"the random stream of {name or 'the model'}") for name, g in model.named_generators()
        },
        "optimizer_type": type(optimizer).__name__ if optimizer is not None else None,
        "optimizer": optim.encode(optimizer_state, "the optimizer's state") if optimizer is not None else None,
        "meta": {key: user.encode(value, f"meta[{_show(key)}]") for key, value in meta.items()},
    }
    text = json.dumps(document, allow_nan=False)  # every value is checked above: this cannot fail
    arrays["__meta__"] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    arrays["__checksum__"] = np.frombuffer(_checksum(arrays).encode("ascii"), dtype=np.uint8)
    _write_atomically(path, arrays)
    return path


def _refuse_nonfinite(model: Module, optimizer_state: dict[str, Any] | None) -> None:
    """The promise the Trainer makes (it never checkpoints NaN/Inf weights), for every save."""
    for name, p in model.named_parameters():
        if p.data.dtype.kind in "fc" and not np.isfinite(p.data).all():
            raise ValueError(
                f"save_checkpoint: parameter {name} holds NaN/Inf; refusing to write weights that are not finite "
                "(pass allow_nonfinite=True to save them anyway)"
            )
    where = _first_nonfinite(optimizer_state, "the optimizer's state")
    if where is not None:
        raise ValueError(
            f"save_checkpoint: {where} holds NaN/Inf; refusing to write optimizer state that is not finite "
            "(pass allow_nonfinite=True to save it anyway)"
        )


def _first_nonfinite(value: Any, where: str) -> str | None:
    """Where in ``value`` (numbers, arrays, nested dicts and lists) the first NaN/Inf is, or None."""
    if isinstance(value, Mapping):
        found = (_first_nonfinite(item, f"{where}[{_show(key)}]") for key, item in value.items())
    elif isinstance(value, (list, tuple)):
        found = (_first_nonfinite(item, f"{where}[{i}]") for i, item in enumerate(value))
    elif isinstance(value, (float, complex, np.ndarray, np.floating, np.complexfloating)):
        finite = np.isfinite(value).all() if np.asarray(value).dtype.kind in "fc" else True
        return None if finite else where
    else:
        return None
    return next((w for w in found if w is not None), None)


def _config_of(model: Module) -> dict[str, Any] | None:
    """The model's dataclass config as a JSON object; its fields must be JSON scalars, so that
    loading can compare them with a model's config as they were."""
    config = getattr(model, "config", None)
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        return None
    fields = dataclasses.asdict(config)
    for key, value in fields.items():
        plain = value is None or type(value) in (bool, int, str) or (type(value) is float and math.isfinite(value))
        if not plain:
            raise TypeError(
                f"save_checkpoint: model.config.{key} is {value!r} ({type(value).__name__}); a config may hold "
                "only None, bool, int, finite float and str"
            )
    return fields


class _Encoder:
    """Turns values into the tagged JSON of the module docstring, moving arrays and numpy scalars
    into entries ``<prefix>/0``, ``<prefix>/1``, ..., and refusing whatever it cannot give back exactly."""

    def __init__(self, arrays: dict[str, np.ndarray], prefix: str) -> None:
        self.arrays, self.prefix, self.count = arrays, prefix, 0

    def encode(self, value: Any, where: str, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise ValueError(f"save_checkpoint: {where} is nested more than {MAX_DEPTH} levels deep")
        kind = type(value)
        if value is None or kind in (bool, str):
            return value
        if kind is int:
            if value.bit_length() > INT_BITS:
                raise ValueError(f"save_checkpoint: {where} is an int of {value.bit_length()} bits; at most {INT_BITS}")
            return value
        if kind is float:
            return value if math.isfinite(value) else {"float": repr(value)}  # 'nan', 'inf', '-inf'
        if kind is list:
            return [self.encode(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
        if kind is tuple:
            return {"tuple": [self.encode(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]}
        if kind is dict:
            pairs = []
            for key, item in value.items():
                if not _is_key(key):
                    raise TypeError(
                        f"save_checkpoint: {where} has the key {_show(key)} ({type(key).__name__}); keys must be "
                        "str, int, float, bool, None, numpy scalars or tuples of these"
                    )
                key_json = self.encode(key, f"{where} (a key)", depth + 1)
                pairs.append([key_json, self.encode(item, f"{where}[{_show(key)}]", depth + 1)])
            return {"dict": pairs}
        if kind is np.ndarray:
            return {"array": self._store(value, where)}
        if isinstance(value, np.generic):
            return {"scalar": self._store(np.asarray(value), where)}
        if kind is np.random.Generator:
            name = type(value.bit_generator).__name__
            if _GENERATORS.get(name) is not type(value.bit_generator):
                raise TypeError(
                    f"save_checkpoint: {where} is a generator over {name}; checkpoints store {sorted(_GENERATORS)}"
                )
            return {"generator": self.encode(value.bit_generator.state, f"{where} (its state)", depth + 1)}
        raise TypeError(
            f"save_checkpoint: {where} is of type {kind.__name__}, which a checkpoint cannot store (it stores None, "
            "bool, int, float, str, list, tuple, dict, numpy arrays and scalars of numeric dtypes, np.random.Generator)"
        )

    def _store(self, array: np.ndarray, where: str) -> str:
        if array.dtype.kind not in _NUMERIC:
            raise TypeError(f"save_checkpoint: {where} has dtype {array.dtype}; only numeric arrays are stored")
        name = f"{self.prefix}/{self.count}"
        self.count += 1
        self.arrays[name] = _c_contiguous(array)
        return name


def _is_key(key: Any) -> bool:
    """Whether ``key`` can be a dict key in a checkpoint (hashable, and given back exactly)."""
    if key is None or type(key) in (str, int, float, bool) or isinstance(key, np.generic):
        return True
    return type(key) is tuple and all(_is_key(k) for k in key)


def _show(key: Any) -> str:
    """A key as error messages show it: its repr, cut short."""
    text = repr(key)
    return text if len(text) <= 60 else text[:57] + "..."


def _c_contiguous(array: np.ndarray) -> np.ndarray:
    """``array`` itself if it is C-contiguous, else a C-contiguous copy. (``np.ascontiguousarray``
    would turn a 0-d array into a 1-d one.)"""
    return array if array.flags.c_contiguous else np.array(array, order="C")


def _checksum(arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 over every entry but the checksum: name, dtype (with byte order), shape, then bytes,
    so the same bytes under another dtype or shape do not pass."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        if name == "__checksum__":
            continue
        array = _c_contiguous(arrays[name])
        digest.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(array.reshape(-1).view(np.uint8))
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------
# Writing the file
# ---------------------------------------------------------------------------------------------------


def _write_atomically(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as an .npz to a temporary file beside the target, then rename it over the
    target. A symlink at ``path`` is followed: its target is replaced, the link kept."""
    target = os.path.realpath(path)
    if not os.path.basename(path) or os.path.isdir(target):
        raise IsADirectoryError(errno.EISDIR, "save_checkpoint: the path is a directory, not a file name", path)
    directory, name = os.path.split(target)
    name_max = _name_max(directory)
    if len(os.fsencode(name)) > name_max:
        raise OSError(
            errno.ENAMETOOLONG,
            f"save_checkpoint: the file name is {len(os.fsencode(name))} bytes long, the filesystem allows {name_max}",
            path,
        )
    temporary = os.path.join(directory, f"{_temporary_prefix(name, name_max)}{secrets.token_hex(6)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, allow_pickle=False, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, os.path.join(directory, name))
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


def _name_max(directory: str) -> int:
    """The longest file name (in bytes) the filesystem of ``directory`` allows."""
    try:
        return os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # no such directory (the write will say so), or no pathconf
        return 255


def _temporary_prefix(name: str, name_max: int) -> str:
    """How the temporary files of checkpoint ``name`` start: ``.<name>.``, then 12 random hex digits
    and ``.tmp``. If that would be longer than the filesystem allows, the name is cut short and a
    hash of the whole name added (``.<start of name>~<hash>.``), so any name that is itself valid
    saves, and `remove_stale_temporaries` still finds exactly this checkpoint's temporaries."""
    suffix = 12 + len(".tmp")
    prefix = f".{name}."
    if len(os.fsencode(prefix)) + suffix <= name_max:
        return prefix
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:16]
    while name and len(os.fsencode(f".{name}~{digest}.")) + suffix > name_max:
        name = name[:-1]
    return f".{name}~{digest}."


def remove_stale_temporaries(path: str | os.PathLike) -> list[str]:
    """Delete the temporary files that writes of ``path`` left behind when their process was killed
    mid-write (SIGKILL, power loss: no chance to clean up); returns the paths removed. Call it only
    when no other process is writing ``path``, as `Trainer.run` does when a run starts."""
    directory, name = os.path.split(os.path.realpath(os.fspath(path)))
    pattern = re.compile(re.escape(_temporary_prefix(name, _name_max(directory))) + r"[0-9a-f]{12}\.tmp")
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
    path: str | os.PathLike,
    model: Module | None = None,
    optimizer: Optimizer | None = None,
    *,
    allow_nonfinite: bool = False,
) -> dict[str, Any]:
    """Read a checkpoint, restore it into ``model`` and ``optimizer`` (if given), and return the
    saved meta plus ``"model"`` (the state dict, every name including tied ones), ``"optimizer"``
    (its state dict or None), ``"config"`` (a dict or None) and ``"rng"`` (the model's random
    streams as saved, ``{module name: np.random.Generator}``).

    Raises `CheckpointError` naming the file and the problem; then nothing was changed. Weights or
    optimizer state holding NaN/Inf are refused unless ``allow_nonfinite=True`` (`save_checkpoint`
    writes them only when asked to, so without the flag such a file is damaged or forged).
    """
    path = os.fspath(path)

    def fail(problem: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {path}: {problem}")

    # 1. The file, its zip directory and .npy headers, the JSON document: no array data read yet.
    with _open_regular_file(path, fail) as file:
        archive = _Archive(file, fail)
        document, checksum = _read_document(archive, fail)
        try:
            _check_fields(document)
        except _MalformedError as error:
            raise fail(f"malformed metadata ({error})") from None
        version, tied = document["version"], document["tied"]
        model_entry = {name: f"model/{tied.get(name, name)}" for name in document["model_keys"]}
        missing = sorted({entry for entry in model_entry.values() if entry not in archive.entries})
        if missing:
            raise fail(f"entry {missing[0]!r} is missing")
        if model is not None:  # the config and every parameter's declared shape, before reading gigabytes
            _check_config(model, document["config"], fail)
            placeholders = {entry: archive.placeholder(entry) for entry in set(model_entry.values())}
            _plan_model(model, {name: placeholders[entry] for name, entry in model_entry.items()}, fail)
        # 2. The data.
        arrays = archive.read_all()
    if checksum != _checksum(arrays):
        raise fail("checksum mismatch, the file is corrupted")

    # 3. Every value of the document, every entry accounted for, every weight finite.
    decoder = _Decoder(arrays, legacy=version == 1, used=set(model_entry.values()))
    try:
        optimizer_state = decoder.value(document["optimizer"], "optimizer")
        if optimizer_state is not None:
            _check_optimizer_state(optimizer_state, legacy=version == 1)
        rng_states = {name: decoder.generator(value, f"rng[{_show(name)}]") for name, value in document["rng"].items()}
        user_meta = {key: decoder.value(value, f"meta[{_show(key)}]") for key, value in document["meta"].items()}
    except _MalformedError as error:
        raise fail(f"malformed metadata ({error})") from None
    except RecursionError:
        raise fail(f"malformed metadata (nested more than {MAX_DEPTH} levels deep)") from None
    stray = sorted(set(arrays) - decoder.used - {"__meta__", "__checksum__"})
    if stray:
        raise fail(f"malformed metadata (entries {stray[:5]} belong to nothing in the metadata)")
    state = {name: arrays[entry] for name, entry in model_entry.items()}
    if not allow_nonfinite:
        _check_finite(state, model_entry, optimizer_state, document.get("allow_nonfinite", False), fail)

    # 4. Plan everything against what we restore into, then change it all.
    model_plan = optimizer_plan = None
    generators: list[tuple[np.random.Generator, dict]] = []
    if model is not None:
        model_plan = _plan_model(model, state, fail)
        generators = _plan_generators(model, rng_states, fail)
    if optimizer is not None:
        if optimizer_state is None:
            raise fail("holds no optimizer state, but an optimizer was given to restore")
        if document["optimizer_type"] != type(optimizer).__name__:
            raise fail(f"holds {document['optimizer_type']} state, not {type(optimizer).__name__} state")
        try:
            optimizer_plan = optimizer._plan_load(optimizer_state)
        except (ValueError, TypeError, KeyError, OverflowError) as error:
            raise fail(f"does not fit the optimizer: {error}") from None
    if model_plan is not None:
        for p, array in model_plan:
            np.copyto(p.data, array, casting="unsafe")
    for generator, saved in generators:
        generator.bit_generator.state = saved
    if optimizer_plan is not None:
        optimizer._apply(optimizer_plan)
    return {**user_meta, "model": state, "optimizer": optimizer_state, "config": document["config"], "rng": rng_states}


class _MalformedError(Exception):
    """A field of the JSON document is missing or wrong; the message names it."""


@contextlib.contextmanager
def _open_regular_file(path: str, fail: Any) -> Iterator[IO[bytes]]:
    """Open ``path`` for reading if it is a regular file. A FIFO, device, socket or directory is
    refused without being opened (a FIFO would block, a device could stream forever); the open
    itself never blocks (O_NONBLOCK) and is checked again, in case the path changed in between."""
    try:
        kind = _file_kind(os.stat(path).st_mode)
        if kind is None:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
            kind = _file_kind(os.fstat(fd).st_mode)
            if kind is not None:
                os.close(fd)
    except FileNotFoundError:
        raise fail("no such file") from None
    except OSError as error:
        raise fail(f"cannot be read ({error})") from None
    if kind is not None:
        raise fail(f"cannot be read: it is {kind}, not a regular file")
    with os.fdopen(fd, "rb") as file:
        yield file


def _file_kind(mode: int) -> str | None:
    """None for a regular file, else what it is."""
    if stat.S_ISREG(mode):
        return None
    kinds = {stat.S_ISDIR: "a directory", stat.S_ISFIFO: "a FIFO (named pipe)", stat.S_ISCHR: "a character device",
             stat.S_ISBLK: "a block device", stat.S_ISSOCK: "a socket"}  # fmt: skip
    return next((kind for test, kind in kinds.items() if test(mode)), "not a regular file")


@dataclasses.dataclass(frozen=True)
class _Entry:
    """One array of the archive as the zip directory and its .npy header declare it."""

    info: zipfile.ZipInfo
    start: int  # where its bytes (.npy header, then data) begin in the file
    header: bytes  # its .npy header
    shape: tuple[int, ...]
    dtype: np.dtype


@contextlib.contextmanager
def _reading(fail: Any) -> Iterator[None]:
    """What the zip and .npy readers raise on a damaged file, as one `CheckpointError`."""
    try:
        yield
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, struct.error, RuntimeError, NotImplementedError,
            OverflowError, UnicodeDecodeError) as error:  # fmt: skip
        raise fail(f"truncated or corrupted ({type(error).__name__}: {error})") from None


class _Archive:
    """A checkpoint's zip directory and every entry's .npy header, checked before any data is read.

    Entries must be stored, never compressed (so there is nothing to inflate: no zip bomb); each is
    then a byte range of the file, which together may not exceed the file (no overlapping entries
    declaring the same bytes many times over); and each one's size must be exactly its .npy header
    plus its shape times its itemsize. So reading everything costs at most the file's size, and
    arrays are read straight from the file into place (their zip CRC-32 checked)."""

    def __init__(self, file: IO[bytes], fail: Any) -> None:
        self.file, self.fail = file, fail
        start = file.read(8)
        if not start.startswith(b"PK\x03\x04"):
            kinds = {b"\x80": "a pickle", b"\x93NUMPY": "a .npy array"}
            kind = next((k for prefix, k in kinds.items() if start.startswith(prefix)), "some other format")
            raise fail(f"not a checkpoint (expected an .npz zip archive, found {kind if start else 'an empty file'})")
        self.size = os.fstat(file.fileno()).st_size
        with _reading(fail):
            infos = zipfile.ZipFile(file).infolist()
        names = collections.Counter(info.filename for info in infos)
        repeated = sorted(name for name, count in names.items() if count > 1)
        if repeated:
            raise fail(f"corrupted (entries {repeated[:5]} appear more than once)")
        compressed = [info.filename for info in infos if info.compress_type != zipfile.ZIP_STORED]
        if compressed:
            raise fail(
                f"not a checkpoint written by save_checkpoint (entries {compressed[:5]} are compressed, and "
                "checkpoints never are; refusing to inflate them)"
            )
        if any(i.file_size != i.compress_size for i in infos) or sum(i.compress_size for i in infos) > self.size:
            raise fail("corrupted (the zip directory declares more data than the file holds)")
        self.entries: dict[str, _Entry] = {}
        foreign = []
        for info in infos:
            name = info.filename.removesuffix(".npy")
            with _reading(fail):
                entry = self._entry(info) if info.filename.endswith(".npy") else None
            if entry is None:
                foreign.append(name)
            else:
                self._check(name, entry)
                self.entries[name] = entry
        if foreign:
            raise fail(f"not a checkpoint (entries {foreign[:5]} are not numpy arrays)")
        self._read: dict[str, np.ndarray] = {}

    def _entry(self, info: zipfile.ZipInfo) -> _Entry | None:
        """The member's place in the file and its .npy header (None if it is not a .npy)."""
        self.file.seek(info.header_offset)
        local = self.file.read(30)
        if len(local) < 30 or not local.startswith(b"PK\x03\x04"):
            raise zipfile.BadZipFile(f"no local header for {info.filename!r}")
        if struct.unpack("<H", local[6:8])[0] & 0x1:
            raise zipfile.BadZipFile(f"{info.filename!r} is encrypted")
        name_length, extra_length = struct.unpack("<HH", local[26:30])
        start = info.header_offset + 30 + name_length + extra_length
        if start + info.file_size > self.size:
            raise EOFError(f"{info.filename!r} runs past the end of the file")
        self.file.seek(start)
        stream = io.BytesIO(self.file.read(min(info.file_size, _NPY_HEADER_MAX)))
        header = _read_npy_header(stream)
        if header is None:
            return None
        return _Entry(info, start, stream.getvalue()[: stream.tell()], *header)

    def _check(self, name: str, entry: _Entry) -> None:
        if entry.dtype.hasobject:
            raise self.fail(
                "refused, it holds a pickled object array (checkpoints never need pickle, and unpickling "
                "could run code)"
            )
        if entry.dtype.kind not in _NUMERIC:
            raise self.fail(f"not a checkpoint (entry {name!r} holds {entry.dtype} values; checkpoints hold numbers)")
        if any(n < 0 for n in entry.shape):
            raise self.fail(f"corrupted (entry {name!r} declares the shape {entry.shape})")
        declared = len(entry.header) + math.prod(entry.shape) * entry.dtype.itemsize
        if declared != entry.info.file_size:
            raise self.fail(
                f"corrupted (entry {name!r} declares {declared} bytes in its .npy header, the zip holds "
                f"{entry.info.file_size})"
            )

    def placeholder(self, name: str) -> np.ndarray:
        """An array of the entry's declared shape and dtype that takes no memory (nothing is read)."""
        entry = self.entries[name]
        return np.broadcast_to(np.zeros((), entry.dtype), entry.shape)

    def read(self, name: str) -> np.ndarray:
        """The entry's array, read from the file straight into place, its zip CRC-32 checked."""
        if name not in self._read:
            entry = self.entries[name]
            array = np.empty(entry.shape, entry.dtype)
            data = array.reshape(-1).view(np.uint8)
            with _reading(self.fail):
                self.file.seek(entry.start + len(entry.header))
                done = 0
                while done < data.size:
                    count = self.file.readinto(data[done : done + _CHUNK])
                    if not count:
                        raise EOFError(f"entry {name!r} ends early")
                    done += count
            if zlib.crc32(data, zlib.crc32(entry.header)) != entry.info.CRC:
                raise self.fail(f"corrupted (entry {name!r} fails its zip CRC-32 check)")
            self._read[name] = array
        return self._read[name]

    def read_all(self) -> dict[str, np.ndarray]:
        return {name: self.read(name) for name in self.entries}


def _read_npy_header(stream: IO[bytes]) -> tuple[tuple[int, ...], np.dtype] | None:
    """(shape, dtype) from the .npy header at the start of ``stream``; None if it is not a .npy.
    Arrays in Fortran order are refused: save_checkpoint never writes them."""
    start = stream.read(8)
    if len(start) < 8 or not start.startswith(b"\x93NUMPY"):
        return None
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    reader = readers.get((start[6], start[7]))
    if reader is None:
        raise ValueError(f".npy format version {start[6]}.{start[7]}, which checkpoints never use")
    try:
        shape, fortran_order, dtype = reader(stream, max_header_size=_NPY_HEADER_MAX - 12)
    except Exception as error:  # noqa: BLE001 (numpy reads the header's text with tokenize and ast: damaged text raises anything)
        raise ValueError(f"an unreadable .npy header ({type(error).__name__}: {error})") from None
    if fortran_order and len(shape) > 1:
        raise ValueError("an array in Fortran order, which checkpoints never hold")
    return shape, dtype


def _read_document(archive: _Archive, fail: Any) -> tuple[dict[str, Any], str]:
    """The JSON document and the checksum, with its format and version checked."""
    meta, checksum = archive.entries.get("__meta__"), archive.entries.get("__checksum__")
    if meta is None or checksum is None:
        raise fail("not a tinygrad_lm checkpoint (no __meta__/__checksum__ entry)")
    if any(e.dtype != np.uint8 or len(e.shape) != 1 for e in (meta, checksum)):
        raise fail("__meta__/__checksum__ entries are not byte strings")
    text = archive.read("__meta__").tobytes()
    try:
        document = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as error:  # ValueError: huge ints
        raise fail(f"unreadable metadata ({error})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        found = document.get("format") if isinstance(document, dict) else None
        raise fail(f"not a tinygrad_lm checkpoint (format {_show(found)})")
    version = document.get("version")
    if type(version) is not int or version not in READABLE_VERSIONS:
        raise fail(
            f"format version {_show(version)}, this code reads versions {min(READABLE_VERSIONS)} to {VERSION}"
            + (" (written by a newer tinygrad_lm? update it)" if type(version) is int and version > VERSION else "")
        )
    return document, archive.read("__checksum__").tobytes().decode("ascii", errors="replace")


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}  # fmt: skip
    return names.get(type(value), type(value).__name__)


def _check_fields(document: dict[str, Any]) -> None:
    """Every field of the document present (``allow_nonfinite`` from version 2 on) and of its JSON
    type; the model's keys and tied names consistent. Values inside rng/optimizer/meta are checked
    as they are decoded."""
    expected = [f for f in _FIELDS if f != "allow_nonfinite" or document["version"] >= 2]
    missing, extra = [f for f in expected if f not in document], sorted(set(document) - set(expected))
    if missing:
        raise _MalformedError(f"field {missing[0]!r} is missing")
    if extra:
        raise _MalformedError(f"unexpected fields {extra[:5]}")

    def want(field: str, ok: bool, what: str) -> None:
        if not ok:
            raise _MalformedError(f"{field} must be {what}, got {_json_type(document[field])}")

    want("model_type", type(document["model_type"]) is str, "a string")
    want("allow_nonfinite", type(document.get("allow_nonfinite", False)) is bool, "true or false")
    want("optimizer_type", document["optimizer_type"] is None or type(document["optimizer_type"]) is str,
         "a string or null")  # fmt: skip
    if (document["optimizer_type"] is None) != (document["optimizer"] is None):
        raise _MalformedError("optimizer_type and optimizer must both be null or both be given")
    for field in ("rng", "meta"):
        want(field, type(document[field]) is dict, "an object")
    reserved = sorted(RESERVED_KEYS & set(document["meta"]))
    if reserved:
        raise _MalformedError(f"meta uses the reserved keys {reserved}")
    config = document["config"]
    want("config", config is None or type(config) is dict, "an object or null")
    for key, value in (config or {}).items():
        if not (value is None or type(value) in (bool, int, str) or (type(value) is float and math.isfinite(value))):
            raise _MalformedError(f"config[{_show(key)}] must be null, a boolean, a string or a finite number")
        if type(value) is int and value.bit_length() > INT_BITS:
            raise _MalformedError(f"config[{_show(key)}] is an int of {value.bit_length()} bits; at most {INT_BITS}")
    keys = document["model_keys"]
    want("model_keys", type(keys) is list and all(type(k) is str for k in keys), "an array of strings")
    if len(set(keys)) != len(keys):
        raise _MalformedError("model_keys names a parameter twice")
    tied = document["tied"]
    want("tied", type(tied) is dict, "an object")
    for name, first in tied.items():
        if type(first) is not str or name not in keys or first not in keys or first in tied or first == name:
            raise _MalformedError(
                f"tied[{_show(name)}] must name another parameter of model_keys, one that is not tied itself"
            )


class _Decoder:
    """Reads the values of a document's rng/optimizer/meta fields back into Python: version 2's tags,
    or version 1's ``{"__array__": entry}`` / ``{"__generator__": state}`` markers (``legacy``).
    Every value is checked; a problem raises `_MalformedError` naming where it is. ``used`` collects the
    entries referred to: each may be referred to once."""

    def __init__(self, arrays: Mapping[str, np.ndarray], legacy: bool, used: set[str]) -> None:
        self.arrays, self.legacy, self.used = arrays, legacy, used

    def value(self, v: Any, where: str, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise _MalformedError(f"{where} is nested more than {MAX_DEPTH} levels deep")
        kind = type(v)
        if v is None or kind in (bool, str):
            return v
        if kind is int:
            if v.bit_length() > INT_BITS:
                raise _MalformedError(f"{where} is an int of {v.bit_length()} bits; at most {INT_BITS}")
            return v
        if kind is float:
            if not (math.isfinite(v) or self.legacy):  # version 2 writes {"float": "nan"}, never a bare NaN
                raise _MalformedError(f"{where} is {v} written as a bare JSON number")
            return v
        if kind is list:
            return [self.value(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(v)]
        if kind is not dict:
            raise _MalformedError(f"{where} is {_json_type(v)}")
        return self._legacy_object(v, where, depth) if self.legacy else self._tagged(v, where, depth)

    def _tagged(self, v: dict[str, Any], where: str, depth: int) -> Any:
        if len(v) != 1 or next(iter(v)) not in _TAGS:
            raise _MalformedError(
                f"{where} is an object with the keys {_show(sorted(v))}, not one of the format's tags"
            )
        ((tag, body),) = v.items()
        if tag == "float":
            if body not in ("nan", "inf", "-inf"):
                raise _MalformedError(f"{where} is the float {_show(body)}")
            return float(body)
        if tag in ("array", "scalar"):
            array = self.entry(body, where)
            if tag == "scalar" and array.ndim != 0:
                raise _MalformedError(f"{where} is a scalar stored as an array of shape {array.shape}")
            return array[()] if tag == "scalar" else array
        if tag == "generator":
            return self._generator_from(self.value(body, f"{where} (its state)", depth + 1), where)
        if type(body) is not list:
            raise _MalformedError(f"{where}: a {tag} holds {_json_type(body)}, not an array")
        if tag == "tuple":
            return tuple(self.value(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(body))
        result: dict[Any, Any] = {}
        for pair in body:
            if type(pair) is not list or len(pair) != 2:
                raise _MalformedError(f"{where}: a dict item is not a [key, value] pair")
            key = self.value(pair[0], f"{where} (a key)", depth + 1)
            if not _is_key(key) or key in result:
                raise _MalformedError(f"{where} has the key {_show(key)} twice, or a key that cannot be one")
            result[key] = self.value(pair[1], f"{where}[{_show(key)}]", depth + 1)
        return result

    def _legacy_object(self, v: dict[str, Any], where: str, depth: int) -> Any:
        if set(v) == {"__array__"}:
            return self.entry(v["__array__"], where)
        if set(v) == {"__generator__"}:
            return self._generator_from(self.value(v["__generator__"], f"{where} (its state)", depth + 1), where)
        return {key: self.value(item, f"{where}[{_show(key)}]", depth + 1) for key, item in v.items()}

    def entry(self, name: Any, where: str) -> np.ndarray:
        if type(name) is not str or name not in self.arrays or name.startswith("__"):
            raise _MalformedError(f"{where} refers to the entry {_show(name)}, which the file does not have")
        if name in self.used:
            raise _MalformedError(f"{where} refers to the entry {name!r}, which something else uses")
        self.used.add(name)
        return self.arrays[name]

    def generator(self, v: Any, where: str) -> np.random.Generator:
        """A value that must be a generator (the model's random streams)."""
        value = self.value(v, where)
        if not isinstance(value, np.random.Generator):
            raise _MalformedError(f"{where} is not a random generator")
        return value

    def _generator_from(self, state: Any, where: str) -> np.random.Generator:
        name = state.get("bit_generator") if isinstance(state, dict) else None
        if type(name) is not str or name not in _GENERATORS:
            raise _MalformedError(f"{where} is a generator over {_show(name)}; known: {sorted(_GENERATORS)}")
        generator = np.random.Generator(_GENERATORS[name]())
        try:
            generator.bit_generator.state = state
        except (ValueError, TypeError, KeyError, OverflowError) as error:
            raise _MalformedError(f"{where} has an invalid {name} state ({type(error).__name__}: {error})") from None
        return generator


def _check_optimizer_state(state: Any, legacy: bool) -> None:
    """The layout of `Optimizer.state_dict`: ``{"state": {index: {name: array or number}},
    "param_groups": [{hyper-parameters, "params": [index, ...]}]}`` (indices were strings in version 1)."""
    if not isinstance(state, dict) or set(state) != {"state", "param_groups"}:
        raise _MalformedError("optimizer must be a dict with the keys 'state' and 'param_groups'")
    groups = state["param_groups"]
    if not isinstance(groups, list) or not all(isinstance(g, dict) and all(type(k) is str for k in g) for g in groups):
        raise _MalformedError("optimizer['param_groups'] must be a list of dicts with string keys")
    for i, group in enumerate(groups):
        params = group.get("params")
        if not isinstance(params, list) or not all(type(p) is int and p >= 0 for p in params):
            raise _MalformedError(f"optimizer['param_groups'][{i}]['params'] must be a list of indices")
    if not isinstance(state["state"], dict):
        raise _MalformedError("optimizer['state'] must be a dict")
    for index, entry in state["state"].items():
        index_ok = type(index) is str and index.isdigit() if legacy else type(index) is int and index >= 0
        values_ok = isinstance(entry, dict) and all(
            type(k) is str and (type(v) in (int, float) or isinstance(v, (np.ndarray, np.generic)))
            for k, v in entry.items()
        )
        if not (index_ok and values_ok):
            raise _MalformedError(f"optimizer['state'][{_show(index)}] must be a dict of arrays and numbers")


def _check_finite(
    state: dict[str, np.ndarray], model_entry: dict[str, str], optimizer_state: Any, marked: bool, fail: Any
) -> None:
    """No NaN/Inf in the weights or the optimizer state: `save_checkpoint` never writes them
    unless asked (``allow_nonfinite=True``, which the document then says)."""
    bad = next((model_entry[n] for n, a in state.items() if a.dtype.kind in "fc" and not np.isfinite(a).all()), None)
    bad = bad or _first_nonfinite(optimizer_state, "the optimizer's state")
    if bad is not None:
        why = (
            "it was saved with allow_nonfinite=True"
            if marked
            else "save_checkpoint never writes such weights unless asked to, so the file is damaged or forged"
        )
        raise fail(f"{bad} holds NaN/Inf ({why}); pass allow_nonfinite=True to load it anyway")


def _check_config(model: Module, saved: dict[str, Any] | None, fail: Any) -> None:
    """The saved config must match the model's, except dropout (a training choice, not a shape)."""
    config = getattr(model, "config", None)
    if saved is None or not dataclasses.is_dataclass(config) or isinstance(config, type):
        return
    current = dataclasses.asdict(config)
    different = [
        f"{key}: saved {saved.get(key)!r}, model {current.get(key)!r}"
        for key in sorted(set(saved) | set(current))
        if key != "dropout" and saved.get(key) != current.get(key)
    ]
    if different:
        raise fail(f"was saved from a model with another config ({'; '.join(different)})")


def _plan_model(model: Module, state: dict[str, np.ndarray], fail: Any) -> list[tuple[Any, np.ndarray]]:
    try:
        return model._plan_load(state, strict=True)[0]
    except (ValueError, TypeError) as error:  # on one line: "...: wrong shapes: a: got (5,), expected (8,); ..."
        first, *problems = str(error).splitlines()
        raise fail(f"does not fit the model: {' '.join([first, '; '.join(p.strip() for p in problems)])}") from None


def _plan_generators(model: Module, saved: dict[str, Any], fail: Any) -> list[tuple[np.random.Generator, dict]]:
    """Pair the model's random streams with the saved generators (each already a valid state)."""
    own = dict(model.named_generators())
    if set(own) != set(saved):
        raise fail(f"random streams {sorted(saved)} do not match the model's {sorted(own)}")
    plan = []
    for name, generator in own.items():
        state = saved[name].bit_generator.state
        if type(saved[name].bit_generator) is not type(generator.bit_generator):
            raise fail(
                f"random stream {name!r} is a {type(saved[name].bit_generator).__name__}, the model's a "
                f"{type(generator.bit_generator).__name__}"
            )
        plan.append((generator, state))
    return plan
