"""The checkpoint format's promises, one class of problem at a time.

- Representability: whatever `save_checkpoint` accepts, `load_checkpoint` returns exactly (types,
  dtypes, shapes, bits, key order); whatever it cannot represent is refused at save time with a
  TypeError/ValueError before a file is touched. A property test generates nested metadata.
- Non-finite weights: refused by `save_checkpoint` (naming the parameter) and by `load_checkpoint`
  (naming the entry) unless both are given ``allow_nonfinite=True``.
- Forged or older metadata: any field of the JSON document missing or of the wrong type, and values
  out of range, raise `CheckpointError` naming the field; model and optimizer stay untouched.
- Denial of service: a zip bomb is refused without inflating it, declared sizes are checked before
  any data is read, and a FIFO or device is refused without blocking.
- The checksum covers dtypes and shapes; saving through a symlink keeps the link; any valid file
  name saves (the temporary file's name is never longer than the filesystem allows).
- Version 1 files (written before the tagged encoding) still load, as version 1 returned them.
"""

import collections
import copy
import errno
import io
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from support import assert_same_state, snapshot, time_limit

from autograd import Tensor
from tinygrad_lm import GPT, CheckpointError, GPTConfig, load_checkpoint, save_checkpoint
from tinygrad_lm.checkpoint import INT_BITS, MAX_DEPTH, _checksum, remove_stale_temporaries
from tinygrad_lm.nn import Module

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
CFG = GPTConfig(vocab_size=11, block_size=6, n_layer=1, n_head=2, n_embd=8, dropout=0.1)


class Scalar(Module):
    """A module with a 0-d parameter (a learned temperature) beside a matrix."""

    def __init__(self, temperature=1.5):
        super().__init__()
        self.temperature = Tensor(np.array(temperature, np.float32), requires_grad=True)
        self.weight = Tensor(np.arange(6, dtype=np.float32).reshape(2, 3), requires_grad=True)


def trained(seed=0):
    """A GPT and its AdamW after one step on a fixed batch (how tests/data/checkpoint_v1.npz was made)."""
    model = GPT(CFG, seed=seed)
    opt = model.configure_optimizers(0.1, 1e-2)
    rng = np.random.default_rng(0)
    idx, targets = rng.integers(0, 11, (2, 6)), rng.integers(0, 11, (2, 6))
    model(idx, targets)[1].backward()
    opt.step()
    opt.zero_grad()
    return model, opt


def refused(path, words, target=None):
    """Loading ``path`` into a model and optimizer raises CheckpointError naming the file and
    matching ``words``; both stay untouched. Returns the message."""
    model, opt = target or trained(seed=5)
    before = snapshot(model, opt)
    with pytest.raises(CheckpointError, match=words) as info:
        load_checkpoint(path, model, opt)
    assert str(path) in str(info.value)
    assert_same_state(before, snapshot(model, opt))
    return str(info.value)


def entries_of(path):
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def document_of(path):
    return json.loads(entries_of(path)["__meta__"].tobytes())


def forge(path, entries, document=None, text=None):
    """Write ``entries`` with another document (or raw JSON text) and a valid checksum: the
    checksum is not a signature, only the content is wrong."""
    entries = dict(entries)
    text = json.dumps(document) if text is None else text
    entries["__meta__"] = np.frombuffer(text.encode(), np.uint8)
    entries["__checksum__"] = np.frombuffer(_checksum(entries).encode(), np.uint8)
    np.savez(path, **entries)


def assert_identical(a, b, where="value"):
    """Same type, and the same value to the bit (NaN equals NaN; 0.0 and -0.0 differ)."""
    assert type(a) is type(b), f"{where}: a {type(a).__name__} came back as a {type(b).__name__}"
    if isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), f"{where}: {a!r} vs {b!r}"
    elif isinstance(a, float):
        assert struct.pack("<d", a) == struct.pack("<d", b) or (math.isnan(a) and math.isnan(b)), f"{where}: {a} {b}"
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    elif isinstance(a, dict):
        assert len(a) == len(b), where
        for (ka, va), (kb, vb) in zip(a.items(), b.items()):
            assert_identical(ka, kb, f"{where} (key {ka!r})")
            assert_identical(va, vb, f"{where}[{ka!r}]")
    elif isinstance(a, np.random.Generator):
        assert_identical(a.bit_generator.state, b.bit_generator.state, f"{where} (generator state)")
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


# ---------------------------------------------------------------------------------------------------
# Representability: an exact round trip, or a refusal at save time
# ---------------------------------------------------------------------------------------------------


def round_trip(tmp_path, model=None, **meta):
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, model or Scalar(), **meta)
    return load_checkpoint(path)


def test_a_module_with_a_0d_parameter_saves_and_loads(tmp_path):
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, Scalar(temperature=0.25))
    other = Scalar()
    meta = load_checkpoint(path, other)
    assert meta["model"]["temperature"].shape == () and other.temperature.data.shape == ()
    assert other.temperature.data == np.float32(0.25)


def test_0d_arrays_and_numpy_scalars_keep_their_shape_type_and_bits(tmp_path):
    nan_with_payload = np.array(0x7FC00123, np.uint32).view(np.float32)[()]
    saved = {"zero_d": np.array(2.5), "int_0d": np.array(7, np.int16), "f32": np.float32(0.1), "nan": nan_with_payload,
             "flag": np.bool_(True), "c": np.complex64(1 - 2j), "big_endian": np.arange(3, dtype=">f4")}  # fmt: skip
    meta = round_trip(tmp_path, **saved)
    for key, value in saved.items():
        assert_identical(value, meta[key], key)


def test_keys_holding_the_path_separator_do_not_collide(tmp_path):
    saved = {"a/b": np.zeros(2), "a": {"b": np.ones(3)}, "/": {"": {"/": np.arange(2)}}}
    meta = round_trip(tmp_path, tree=saved)
    assert_identical(saved, meta["tree"])


def test_int_and_str_keys_stay_distinct(tmp_path):
    saved = {1: "int one", "1": "str one", (1, "x"): [np.int64(3)], None: 0.5, np.int64(2): True, 2.5: -0.0}
    meta = round_trip(tmp_path, table=saved)
    assert_identical(saved, meta["table"])
    assert list(meta["table"]) == [1, "1", (1, "x"), None, 2, 2.5]  # key order kept too


def test_keys_and_values_that_look_like_the_formats_own_tags_round_trip(tmp_path):
    saved = {
        "__array__": "meta/0",
        "__generator__": {"bit_generator": "PCG64"},
        "x": {"array": "model/weight"},
        "y": {"__array__": "meta/1"},
        "z": {"dict": [], "tuple": []},
        "float": {"float": "nan"},
    }
    meta = round_trip(tmp_path, tags=saved, **{"__array__": "top"})
    assert_identical(saved, meta["tags"])
    assert meta["__array__"] == "top"


def test_tuples_non_finite_floats_negative_zero_and_big_ints_come_back_as_they_were(tmp_path):
    rng = np.random.Generator(np.random.MT19937(3))
    rng.random(5)
    saved = {"shape": (2, (3, [4])), "nan": math.nan, "inf": -math.inf, "zero": -0.0, "big": -(2**1000),
             "stream": rng, "empty": np.zeros((0, 3), np.int8), "text": "ünïcødé \ud800"}  # fmt: skip
    meta = round_trip(tmp_path, **saved)
    for key, value in saved.items():
        assert_identical(value, meta[key], key)
    assert meta["stream"].random() == rng.random()


class Point(tuple):
    """A tuple subclass (like a namedtuple): it would come back as a plain tuple."""


class Masked(np.ndarray):
    """An ndarray subclass (like np.matrix or np.ma.MaskedArray): it would come back as a plain array."""


UNSTORABLE = {
    "set": ({1, 2}, TypeError, "is of type set"),
    "bytes": (b"raw", TypeError, "is of type bytes"),
    "object": (object(), TypeError, "is of type object"),
    "complex": (1 + 2j, TypeError, "is of type complex"),
    "OrderedDict": (collections.OrderedDict(a=1), TypeError, "is of type OrderedDict"),
    "tuple subclass": (Point((1, 2)), TypeError, "is of type Point"),
    "ndarray subclass": (np.arange(2).view(Masked), TypeError, "is of type Masked"),
    "string array": (np.array(["text"]), TypeError, "has dtype <U4; only numeric arrays"),
    "object array": (np.array([None], dtype=object), TypeError, "has dtype object"),
    "datetime scalar": (np.datetime64("2024-01-01"), TypeError, "has dtype datetime64"),
    "frozenset key": ({frozenset({1}): 1}, TypeError, "has the key frozenset"),
    "huge int": (2**INT_BITS, ValueError, f"is an int of {INT_BITS + 1} bits"),
    "too deep": (json.loads("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)), ValueError, "nested more than"),
    "legacy generator": (np.random.RandomState(0), TypeError, "is of type RandomState"),
}


@pytest.mark.parametrize("what", sorted(UNSTORABLE))
def test_what_cannot_come_back_exactly_is_refused_before_a_file_is_touched(tmp_path, what):
    value, error, words = UNSTORABLE[what]
    path = tmp_path / "ckpt.npz"
    path.write_bytes(b"the previous checkpoint")
    with pytest.raises(error, match=words) as info:
        save_checkpoint(path, Scalar(), step=1, extra={"inside": [value]})
    assert "meta['extra']['inside'][0]" in str(info.value)  # where it is
    assert path.read_bytes() == b"the previous checkpoint" and os.listdir(tmp_path) == ["ckpt.npz"]


def test_a_config_field_that_json_cannot_give_back_is_refused(tmp_path):
    from dataclasses import dataclass

    @dataclass
    class Config:
        sizes: tuple = (1, 2)

    model = Scalar()
    model.__dict__["config"] = Config()  # not a parameter or a module: a plain attribute
    with pytest.raises(TypeError, match=r"model.config.sizes is \(1, 2\) \(tuple\)"):
        save_checkpoint(tmp_path / "ckpt.npz", model)
    assert os.listdir(tmp_path) == []


# Generated metadata: every leaf kind the format stores, the awkward keys, and things it must refuse.
KEYS = st.one_of(
    st.text(max_size=6),
    st.sampled_from(["", "/", "a/b", "__array__", "__generator__", "dict", "tuple", "float", "array", "1", "0"]),
    st.integers(-3, 3),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False),
    st.tuples(st.integers(0, 2), st.text(max_size=2)),
    st.integers(0, 3).map(np.int64),
    st.just(frozenset({1})),  # hashable, but not a key the format gives back: refused
)
DTYPES = ["bool", "int8", "uint16", "int32", "int64", "float16", "float32", "float64", ">f8", "<i2", "complex64"]
ARRAYS = hnp.arrays(
    st.sampled_from(DTYPES + ["U2", "S2", "M8[s]"]), hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3)
)
GENERATORS = st.builds(
    lambda name, seed, draws: (lambda g: (g.random(draws), g)[1])(np.random.Generator(getattr(np.random, name)(seed))),
    st.sampled_from(["PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64"]),
    st.integers(0, 2**32),
    st.integers(0, 3),
)
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(2 ** (INT_BITS - 2), 2 ** (INT_BITS + 2)).flatmap(lambda n: st.sampled_from([n, -n])),
    st.floats(),  # NaN, ±Inf, -0.0, subnormals
    st.text(),
    ARRAYS,
    ARRAYS.filter(lambda a: a.ndim == 0).map(lambda a: a[()]),  # numpy scalars
    GENERATORS,
    st.sampled_from([{1}, b"x", 1j, collections.OrderedDict(), np.zeros(1).view(Masked), range(2)]),  # refused
)
VALUES = st.recursive(
    LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(KEYS, children, max_size=3),
    ),
    max_leaves=8,
)


def storable(value, depth=0):
    """The documented rule: what save_checkpoint accepts."""
    if depth > MAX_DEPTH:
        return False
    if value is None or type(value) in (bool, float, str):
        return True
    if type(value) is int:
        return value.bit_length() <= INT_BITS
    if type(value) in (list, tuple):
        return all(storable(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(is_key(k) and storable(k, depth + 1) and storable(v, depth + 1) for k, v in value.items())
    if type(value) is np.ndarray or isinstance(value, np.generic):
        return value.dtype.kind in "biufc"
    return type(value) is np.random.Generator


def is_key(key):
    if key is None or type(key) in (bool, int, float, str) or isinstance(key, np.generic):
        return True
    return type(key) is tuple and all(is_key(k) for k in key)


EXCLUDED = {"model", "optimizer", "config", "rng", "path", "allow_nonfinite"}  # the function's own names


@given(meta=st.dictionaries(st.text(max_size=6).filter(lambda k: k not in EXCLUDED), VALUES, max_size=3))
def test_generated_metadata_comes_back_exactly_or_is_refused_before_a_file_is_touched(meta):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ckpt.npz"
        path.write_bytes(b"the previous checkpoint")
        try:
            save_checkpoint(path, Scalar(), **meta)
        except (TypeError, ValueError) as error:
            assert str(error).startswith("save_checkpoint: "), error
            assert not storable(meta), f"refused what the format stores: {error}"
            assert path.read_bytes() == b"the previous checkpoint" and os.listdir(folder) == ["ckpt.npz"]
            return
        assert storable(meta), "stored what the format says it refuses"
        loaded = load_checkpoint(path)
        assert list(loaded)[: len(meta)] == list(meta)
        for key, value in meta.items():
            assert_identical(value, loaded[key], key)
        assert_identical(np.array(1.5, np.float32), loaded["model"]["temperature"])
        assert os.listdir(folder) == ["ckpt.npz"]


# ---------------------------------------------------------------------------------------------------
# Non-finite weights
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_save_refuses_non_finite_weights_naming_the_parameter(tmp_path, value):
    model, opt = trained()
    model.transformer.h[0].attn.c_proj.weight.data[1, 2] = value
    path = tmp_path / "ckpt.npz"
    path.write_bytes(b"the last good checkpoint")
    with pytest.raises(ValueError, match=r"parameter transformer.h.0.attn.c_proj.weight holds NaN/Inf.*allow_nonf"):
        save_checkpoint(path, model, opt, step=2)
    assert path.read_bytes() == b"the last good checkpoint" and os.listdir(tmp_path) == ["ckpt.npz"]


def test_save_refuses_non_finite_optimizer_state(tmp_path):
    model, opt = trained()
    opt.state[model.transformer.ln_f.bias]["exp_avg_sq"][3] = np.inf
    with pytest.raises(ValueError, match=r"the optimizer's state\['state'\]\[\d+\]\['exp_avg_sq'\] holds NaN/Inf"):
        save_checkpoint(tmp_path / "ckpt.npz", model, opt)
    assert os.listdir(tmp_path) == []


def test_allow_nonfinite_saves_them_and_loading_them_needs_the_flag_too(tmp_path):
    model, opt = trained()
    model.transformer.wpe.weight.data[0, 0] = np.nan
    path = tmp_path / "diverged.npz"
    save_checkpoint(path, model, opt, allow_nonfinite=True, step=7)
    message = refused(path, r"model/transformer.wpe.weight holds NaN/Inf \(it was saved with allow_nonfinite=True\)")
    assert "pass allow_nonfinite=True to load it" in message
    with pytest.raises(CheckpointError, match="NaN/Inf"):
        load_checkpoint(path)  # also when only reading it: nothing non-finite comes back unasked
    other, other_opt = trained(seed=5)
    meta = load_checkpoint(path, other, other_opt, allow_nonfinite=True)
    assert meta["step"] == 7 and np.isnan(other.transformer.wpe.weight.data[0, 0])


@pytest.mark.parametrize("where", ["model", "optimizer"])
def test_a_file_with_non_finite_weights_it_does_not_admit_to_is_refused(tmp_path, where):
    model, opt = trained()
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, model, opt, step=1)
    entries = entries_of(path)
    name = "model/transformer.ln_f.weight" if where == "model" else min(n for n in entries if n.startswith("optim/"))
    entries[name] = entries[name].copy()
    entries[name].flat[0] = np.nan
    forge(path, entries, document_of(path))  # a valid checksum: only the values are bad
    refused(path, rf"{name if where == 'model' else 'optimizer'}.* holds NaN/Inf \(.*damaged or forged\)")


# ---------------------------------------------------------------------------------------------------
# Forged or older metadata: the whole document is checked, and only CheckpointError comes out
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """A GPT checkpoint with an optimizer and metadata of every kind, and its entries and document."""
    path = tmp_path_factory.mktemp("saved") / "ckpt.npz"
    model, opt = trained()
    save_checkpoint(path, model, opt, step=1, shape=(2, 3), table=np.arange(4.0), data_rng=np.random.default_rng(1))
    return path, entries_of(path), document_of(path)


BIG = 10**400  # valid JSON; far more than INT_BITS bits

# (field, forged value or DELETE, words the error must contain): for documents of both versions ...
FIELD_CASES = [
    (f, "DELETE", f"field '{f}' is missing")
    for f in ("model_type", "config", "model_keys", "tied", "rng", "optimizer_type", "optimizer", "meta")
]
FIELD_CASES += [
    ("format", "DELETE", "not a tinygrad_lm checkpoint"),
    ("version", "DELETE", "format version None"),
    ("version", "2", "format version '2'"),
    ("version", 3, "format version 3, .*newer"),
    ("model_type", 5, "model_type must be a string, got a number"),
    ("config", [], "config must be an object or null, got an array"),
    ("config", {"n_layer": [1]}, r"config\['n_layer'\] must be null"),
    ("config", {"n_layer": BIG}, r"config\['n_layer'\] is an int of"),
    ("config", {"dropout": 1e400}, r"config\['dropout'\] must be .*finite"),  # 1e400 reads as inf
    ("model_keys", 5, "model_keys must be an array of strings"),
    ("model_keys", ["a", 1], "model_keys must be an array of strings"),
    ("model_keys", ["lm_head.weight", "lm_head.weight"], "model_keys names a parameter twice"),
    ("tied", [], "tied must be an object"),
    ("tied", {"lm_head.weight": 5}, r"tied\['lm_head.weight'\] must name another parameter"),
    ("tied", {"lm_head.weight": "nowhere"}, r"tied\['lm_head.weight'\]"),
    ("tied", {"nowhere": "transformer.wte.weight"}, r"tied\['nowhere'\]"),
    ("rng", [], "rng must be an object"),
    ("rng", {"transformer.drop": 5}, r"rng\['transformer.drop'\] is not a random generator"),
    ("optimizer_type", 5, "optimizer_type must be a string or null"),
    ("optimizer_type", None, "optimizer_type and optimizer must both be null"),
    ("optimizer", "adam", "optimizer must be a dict with the keys"),
    ("meta", [], "meta must be an object"),
    ("meta", {"model": 1}, r"meta uses the reserved keys \['model'\]"),
    ("meta", {"step": BIG}, r"meta\['step'\] is an int of"),
    ("meta", {"step": json.loads("[" * (MAX_DEPTH + 2) + "]" * (MAX_DEPTH + 2))}, "nested more than"),
]
# ... for version 2 only (its tags) ...
TAGGED_CASES = [
    ("allow_nonfinite", "DELETE", "field 'allow_nonfinite' is missing"),
    ("allow_nonfinite", "yes", "allow_nonfinite must be true or false"),
    ("rng", {"transformer.drop": {"generator": {"dict": [["bit_generator", "os.system"]]}}},
     r"rng\['transformer.drop'\] is a generator over 'os.system'"),
    ("optimizer", {"dict": [["state", {"dict": []}]]}, "optimizer must be a dict with the keys"),
    ("optimizer", {"dict": [["state", {"dict": []}], ["param_groups", [{"dict": [["params", [BIG]]]}]]]},
     "is an int of"),
    ("optimizer", {"dict": [["state", {"dict": [["0", {"dict": []}]]}], ["param_groups", []]]},
     r"optimizer\['state'\]\['0'\] must be"),
    ("meta", {"step": {"__array__": "meta/0"}}, r"meta\['step'\] is an object with the keys \['__array__'\]"),
    ("meta", {"step": {"array": "meta/99"}}, r"meta\['step'\] refers to the entry 'meta/99', which the file"),
    ("meta", {"step": {"array": "__meta__"}}, r"meta\['step'\] refers to the entry '__meta__'"),
    ("meta", {"step": {"array": "model/transformer.wpe.weight"}}, "which something else uses"),
    ("meta", {"step": {"scalar": "meta/0"}}, "a scalar stored as an array of shape"),
    ("meta", {"step": {"float": "1.5"}}, r"meta\['step'\] is the float '1.5'"),
    ("meta", {"step": 1e400}, r"meta\['step'\] is inf written as a bare JSON number"),
    ("meta", {"step": {"dict": [[[1], 2]]}}, r"meta\['step'\] has the key .* or a key that cannot be one"),
    ("meta", {"step": {"dict": [[1, 2], [1, 3]]}}, r"meta\['step'\] has the key 1 twice"),
    ("meta", {"step": {"generator": {"dict": [["bit_generator", "PCG64"], ["state", {"dict": []}]]}}},
     r"meta\['step'\] has an invalid PCG64 state"),
]  # fmt: skip
# ... and for version 1 only (its markers).
LEGACY_CASES = [
    ("allow_nonfinite", False, r"unexpected fields \['allow_nonfinite'\]"),
    ("rng", {"transformer.drop": {"__generator__": {"bit_generator": "os.system"}}},
     r"rng\['transformer.drop'\] is a generator over 'os.system'"),
    ("rng", {"transformer.drop": {"__generator__": {"bit_generator": "PCG64", "state": {"state": BIG}}}},
     "is an int of"),
    ("optimizer", {"state": {}}, "optimizer must be a dict with the keys"),
    ("optimizer", {"state": {"x": {}}, "param_groups": []}, r"optimizer\['state'\]\['x'\] must be"),
    ("optimizer", {"state": {}, "param_groups": [{"params": "all"}]}, r"\['params'\] must be a list of indices"),
    ("meta", {"step": {"__array__": "meta/nothing"}}, r"meta\['step'\] refers to the entry 'meta/nothing'"),
    ("meta", {"step": {"__array__": "model/transformer.wpe.weight"}}, "which something else uses"),
    ("meta", {"step": {"__generator__": {"bit_generator": "PCG64", "state": {}}}},
     r"meta\['step'\] has an invalid PCG64 state"),
]  # fmt: skip


def document(version, saved_run):
    """(entries, document) of a version-2 checkpoint, or of the version-1 file in tests/data."""
    if version == 2:
        return saved_run[1], saved_run[2]
    entries = entries_of(DATA / "checkpoint_v1.npz")
    return entries, json.loads(entries["__meta__"].tobytes())


@pytest.mark.parametrize(
    "version, field, value, words",
    [(v, *case) for v in (2, 1) for case in FIELD_CASES] + [(2, *c) for c in TAGGED_CASES]
    + [(1, *c) for c in LEGACY_CASES],
    ids=lambda v: str(v)[:40],
)  # fmt: skip
def test_every_field_missing_or_of_the_wrong_type_is_refused_naming_it(saved_run, tmp_path, version, field, value,
                                                                        words):  # fmt: skip
    entries, forged = document(version, saved_run)
    forged = copy.deepcopy(forged)
    if value == "DELETE":
        del forged[field]
    else:
        forged[field] = value
    path = tmp_path / "forged.npz"
    forge(path, entries, forged)
    message = refused(path, words)
    assert "\n" not in message  # one line
    with pytest.raises(CheckpointError, match=words):  # also when only reading it, as demo.py does first
        load_checkpoint(path)


def test_entries_that_nothing_refers_to_are_refused(saved_run, tmp_path):
    _, entries, document = saved_run
    path = tmp_path / "forged.npz"
    forge(path, {**entries, "meta/junk": np.zeros(3)}, document)
    refused(path, r"entries \['meta/junk'\] belong to nothing in the metadata")


def mutations(document):
    """A strategy of (forged document): one place in ``document`` deleted or replaced by any JSON value."""
    json_values = st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.sampled_from([10**400, -(10**400)]), st.floats(),
                  st.text(max_size=4), st.sampled_from(["meta/0", "optim/0", "__meta__", "PCG64", "nan"])),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(
            st.sampled_from(["dict", "tuple", "array", "scalar", "float", "generator", "__array__", "state", "x"]),
            c, max_size=2),
        max_leaves=6,
    )  # fmt: skip

    @st.composite
    def mutate(draw):
        forged = copy.deepcopy(document)
        parent, key = None, None
        node = forged
        while isinstance(node, (dict, list)) and node and draw(st.integers(0, 4)) > 0:
            parent, key = node, draw(st.sampled_from(list(node) if isinstance(node, dict) else range(len(node))))
            node = parent[key]
        if parent is None:
            return draw(json_values)
        if draw(st.booleans()):
            del parent[key]
        else:
            parent[key] = draw(json_values)
        return forged

    return mutate()


@pytest.mark.parametrize("version", [2, 1])
@given(data=st.data())
def test_any_forged_document_is_refused_with_a_checkpoint_error_or_loads(saved_run, version, data):
    entries, original = document(version, saved_run)
    forged = data.draw(mutations(original))
    text = json.dumps(forged, allow_nan=True)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "forged.npz"
        forge(path, entries, text=text)
        model, opt = trained(seed=5)
        before = snapshot(model, opt)
        try:
            load_checkpoint(path, model, opt)
        except CheckpointError as error:
            assert str(path) in str(error)
            assert_same_state(before, snapshot(model, opt))


@pytest.mark.parametrize("version", [2, 1])
def test_a_huge_int_in_a_generator_state_is_a_checkpoint_error(saved_run, tmp_path, version):
    entries, original = document(version, saved_run)
    seed = 1 if version == 2 else 7  # data_rng=np.random.default_rng(seed) in both files
    state = str(np.random.default_rng(seed).bit_generator.state["state"]["state"])
    path = tmp_path / "forged.npz"
    forge(path, entries, text=json.dumps(original).replace(state, str(2**900)))
    refused(path, r"meta\['data_rng'\] has an invalid PCG64 state")


# ---------------------------------------------------------------------------------------------------
# Denial of service: nothing is inflated, sizes are checked before data is read, no blocking
# ---------------------------------------------------------------------------------------------------


def zip_file(members):
    """A zip archive of ``members``: (name, raw stored bytes, method, CRC, uncompressed size), written
    by hand, so a member can declare a size and method its bytes do not back up."""
    out, directory = io.BytesIO(), []
    for name, raw, method, crc, size in members:
        offset, encoded = out.tell(), name.encode()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, len(raw), size, len(encoded), 0))
        out.write(encoded + raw)
        directory.append(
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                20,
                20,
                0,
                method,
                0,
                0x21,
                crc,
                len(raw),
                size,
                len(encoded),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
            + encoded  # fmt: skip
        )
    start = out.tell()
    out.write(b"".join(directory))
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), out.tell() - start, start, 0))
    return out.getvalue()


def npy_header(shape, dtype):
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape})
    return out.getvalue()


def zip_bomb():
    """~2 MB on disk; its one member inflates to 2 GiB of zeros, a float32 array of shape (2**29,).
    Built from one compressed MiB of zeros repeated (each piece ends with a full flush, so pieces
    chain), so making it takes milliseconds."""
    header = npy_header((2**29,), np.float32)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    start = compressor.compress(header) + compressor.flush(zlib.Z_FULL_FLUSH)
    piece = compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    stream = start + piece * 2048 + compressor.flush()
    return zip_file([("meta/0.npy", stream, zipfile.ZIP_DEFLATED, 0, len(header) + 2**31)])


def load_in_a_child(path, seconds=60):
    """Load ``path`` in another process with 1.5 GiB of address space (the bomb inflates to 2): a
    regression that inflates it fails there (MemoryError, or the time limit) instead of taking this
    machine's memory."""
    code = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (3 << 29, 3 << 29))\n"
        "from tinygrad_lm import load_checkpoint\n"
        "try:\n    load_checkpoint(sys.argv[1])\nexcept ValueError as error:\n    print(error)\n"
    )
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=env,
                            timeout=seconds)  # fmt: skip
    return result.stdout + result.stderr, time.perf_counter() - started


def test_a_zip_bomb_is_refused_without_inflating_it(tmp_path):
    bomb = tmp_path / "bomb.npz"
    bomb.write_bytes(zip_bomb())
    assert bomb.stat().st_size < 3_000_000
    output, seconds = load_in_a_child(bomb)
    assert f"checkpoint {bomb}: " in output and "are compressed, and checkpoints never are" in output, output
    assert seconds < 20, f"{seconds:.1f} s: was it inflated?"


def test_a_member_declaring_more_than_its_npy_header_or_the_file_is_refused(tmp_path):
    header = npy_header((2**40,), np.uint8)  # a terabyte, declared by a 200-byte member
    member = header + bytes(100)
    path = tmp_path / "liar.npz"
    path.write_bytes(zip_file([("meta/0.npy", member, zipfile.ZIP_STORED, zlib.crc32(member), len(member))]))
    with time_limit(10):
        refused(
            path, r"corrupted \(entry 'meta/0' declares 1099511627904 bytes in its .npy header, the zip holds 228\)"
        )
    path.write_bytes(zip_file([("meta/0.npy", member, zipfile.ZIP_STORED, zlib.crc32(member), 2**31)]))
    refused(path, r"corrupted \(the zip directory declares more data than the file holds\)")


def test_entries_that_repeat_are_refused(tmp_path):
    member = npy_header((4,), np.uint8) + bytes(4)
    stored = ("meta/0.npy", member, zipfile.ZIP_STORED, zlib.crc32(member), len(member))
    path = tmp_path / "twice.npz"
    path.write_bytes(zip_file([stored, stored]))
    refused(path, r"corrupted \(entries \['meta/0.npy'\] appear more than once\)")


def test_a_model_entry_of_another_shape_is_refused_before_its_data_is_read(saved_run, tmp_path):
    _, entries, document = saved_run
    path = tmp_path / "forged.npz"
    entries = {**entries, "model/transformer.ln_f.bias": np.zeros(5, np.float32)}
    forge(path, entries, {**document, "config": None})  # without a config only the shapes can tell
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("model/transformer.ln_f.bias.npy")
    local_name_and_extra = int.from_bytes(
        raw[info.header_offset + 26 : info.header_offset + 28], "little"
    ) + int.from_bytes(raw[info.header_offset + 28 : info.header_offset + 30], "little")
    raw[info.header_offset + 30 + local_name_and_extra + info.file_size - 1] ^= 0xFF  # its data: a zip CRC error
    path.write_bytes(bytes(raw))
    refused(path, r"does not fit the model.*transformer.ln_f.bias: got \(5,\), expected \(8,\)")  # not the CRC


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "ckpt.npz"
    os.mkfifo(fifo)
    with time_limit(5):  # opening a FIFO to read blocks until someone writes: a regression hangs here
        refused(fifo, r"cannot be read: it is a FIFO \(named pipe\), not a regular file")


def test_a_device_is_refused_without_reading_it():
    with time_limit(5):
        refused(Path("/dev/null"), "cannot be read: it is a character device, not a regular file")


# ---------------------------------------------------------------------------------------------------
# The checksum covers dtypes and shapes
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", ["meta", "model"])
@pytest.mark.parametrize("change", ["dtype", "shape"])
def test_the_same_bytes_under_another_dtype_or_shape_fail_the_checksum(tmp_path, entry, change):
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, Scalar(), table=np.arange(32, dtype=np.float32).reshape(4, 8))
    entries = entries_of(path)
    entry = "model/weight" if entry == "model" else next(name for name in entries if name.startswith("meta/"))
    array = entries[entry]
    entries[entry] = array.view(np.int32) if change == "dtype" else array.reshape(array.shape[::-1])
    assert entries[entry].tobytes() == array.tobytes()
    np.savez(path, **entries)  # the old checksum kept; the zip's own CRCs are right
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_checkpoint(path)


# ---------------------------------------------------------------------------------------------------
# Paths: symlinks, long names
# ---------------------------------------------------------------------------------------------------


def test_saving_through_a_symlink_replaces_its_target_and_keeps_the_link(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    save_checkpoint(store / "ckpt.npz", Scalar(), step=1)
    link = tmp_path / "latest.npz"
    link.symlink_to(Path("store") / "ckpt.npz")  # relative, as `ln -s` makes them
    save_checkpoint(link, Scalar(), step=2)
    assert link.is_symlink() and os.readlink(link) == os.path.join("store", "ckpt.npz")
    assert load_checkpoint(store / "ckpt.npz")["step"] == 2 and load_checkpoint(link)["step"] == 2
    assert sorted(os.listdir(tmp_path)) == ["latest.npz", "store"] and os.listdir(store) == ["ckpt.npz"]

    dangling = tmp_path / "next.npz"
    dangling.symlink_to(store / "new.npz")
    save_checkpoint(dangling, Scalar(), step=3)  # as open() would: the link's target is created
    assert dangling.is_symlink() and load_checkpoint(store / "new.npz")["step"] == 3

    stale = store / ".ckpt.npz.0123456789ab.tmp"  # what a write through the link killed mid-way leaves
    stale.write_bytes(b"half")
    assert remove_stale_temporaries(link) == [str(stale)]


def killed_mid_write(path, monkeypatch):
    """Leave the temporary file of a write of ``path`` behind, as SIGKILL would; return its name."""
    before = set(os.listdir(path.parent))

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(np, "savez", crash)
        patch.setattr(os, "unlink", lambda *args: None)  # no clean-up: the process "died"
        with pytest.raises(KeyboardInterrupt):
            save_checkpoint(path, Scalar())
    (left,) = set(os.listdir(path.parent)) - before
    return left


def test_the_longest_valid_name_saves_and_its_temporaries_are_found(tmp_path, monkeypatch):
    name_max = os.pathconf(tmp_path, "PC_NAME_MAX")
    path = tmp_path / ("c" * (name_max - 4) + ".npz")
    save_checkpoint(path, Scalar(), step=1)
    assert load_checkpoint(path)["step"] == 1 and os.listdir(tmp_path) == [path.name]

    left = killed_mid_write(path, monkeypatch)
    assert len(os.fsencode(left)) <= name_max and left.endswith(".tmp")
    sibling = tmp_path / ("c" * (name_max - 5) + "d.npz")  # the same start: its temporaries are not ours
    sibling_left = killed_mid_write(sibling, monkeypatch)
    assert remove_stale_temporaries(path) == [str(tmp_path / left)]
    assert remove_stale_temporaries(sibling) == [str(tmp_path / sibling_left)]
    assert os.listdir(tmp_path) == [path.name]


def test_a_name_too_long_for_the_filesystem_is_refused_naming_the_path_before_writing(tmp_path):
    path = tmp_path / ("c" * (os.pathconf(tmp_path, "PC_NAME_MAX") - 3) + ".npz")
    with pytest.raises(OSError) as info:
        save_checkpoint(path, Scalar())
    assert info.value.errno == errno.ENAMETOOLONG and info.value.filename == str(path)
    assert "save_checkpoint" in str(info.value) and os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------------
# Format version 1
# ---------------------------------------------------------------------------------------------------


def test_a_version_1_checkpoint_still_loads_as_version_1_returned_it():
    """tests/data/checkpoint_v1.npz was written by the format-1 code (commit 44fe4e5) from `trained()`:

    save_checkpoint(path, model, opt, step=1, note="v1", losses=[2.5, float("nan")],
                    table=np.arange(6, dtype=np.int16).reshape(2, 3), data_rng=np.random.default_rng(7),
                    nested={"a": {"b": [1, 2]}})
    """
    path = DATA / "checkpoint_v1.npz"
    assert document_of(path)["version"] == 1
    model, opt = trained(seed=5)
    meta = load_checkpoint(path, model, opt)
    reference, reference_opt = trained()
    for name, array in reference.state_dict().items():
        np.testing.assert_allclose(model.state_dict()[name], array, rtol=1e-5, atol=1e-7, err_msg=name)
    assert opt.state_dict()["param_groups"] == reference_opt.state_dict()["param_groups"]
    assert meta["step"] == 1 and meta["note"] == "v1" and meta["nested"] == {"a": {"b": [1, 2]}}
    assert meta["losses"][0] == 2.5 and math.isnan(meta["losses"][1])
    assert_identical(np.arange(6, dtype=np.int16).reshape(2, 3), meta["table"])
    assert meta["data_rng"].random() == np.random.default_rng(7).random()
    assert sorted(meta["optimizer"]["state"]) == sorted(str(i) for i in range(16))  # version 1's string keys
