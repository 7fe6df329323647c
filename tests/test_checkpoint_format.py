"""The checkpoint format's promises, one class of problem at a time.

- Version 1 files (written before the tagged encoding) still load, as version 1 returned them.
"""

import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest

from autograd import Tensor
from tinygrad_lm import GPT, CheckpointError, GPTConfig, load_checkpoint
from tinygrad_lm.checkpoint import _checksum
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


def snapshot(model, opt):
    sd = opt.state_dict()
    return (
        {k: v.copy() for k, v in model.state_dict().items()},
        [g.bit_generator.state for _, g in model.named_generators()],
        sd["param_groups"],
        {i: {k: np.copy(v) for k, v in s.items()} for i, s in sd["state"].items()},
    )


def assert_same_state(a, b):
    assert a[0].keys() == b[0].keys() and all(np.array_equal(a[0][k], b[0][k]) for k in a[0])
    assert a[1] == b[1] and a[2] == b[2] and a[3].keys() == b[3].keys()
    for i in a[3]:
        assert all(np.array_equal(a[3][i][k], b[3][i][k]) for k in a[3][i])


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
