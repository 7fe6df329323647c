"""Checkpoints: a round trip restores identical training; the file is written atomically; anything
missing, truncated, corrupted, foreign or pickled is refused with the model and optimizer untouched."""

import os
import pathlib
import pickle
import zipfile

import numpy as np
import pytest

from tinygrad_lm import GPT, CheckpointError, GPTConfig, load_checkpoint, save_checkpoint
from tinygrad_lm.optim import SGD, AdamW

CFG = GPTConfig(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=0.1)


def batches(n, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, 13, (4, 8)), rng.integers(0, 13, (4, 8))) for _ in range(n)]


def train(model, opt, data):
    for idx, targets in data:
        _, loss = model(idx, targets)
        loss.backward()
        opt.step()
        opt.zero_grad()


def snapshot(model, opt=None):
    state = {k: v.copy() for k, v in model.state_dict().items()}
    gens = [g.bit_generator.state for _, g in model.named_generators()]
    opt_state = None
    if opt is not None:
        sd = opt.state_dict()
        opt_state = (sd["param_groups"], {i: {k: np.copy(v) for k, v in s.items()} for i, s in sd["state"].items()})
    return state, gens, opt_state


def assert_same(a, b):
    (sa, ga, oa), (sb, gb, ob) = a, b
    assert sa.keys() == sb.keys() and all(np.array_equal(sa[k], sb[k]) for k in sa)
    assert ga == gb
    if oa is not None:
        assert oa[0] == ob[0] and oa[1].keys() == ob[1].keys()
        for i in oa[1]:
            assert all(np.array_equal(oa[1][i][k], ob[1][i][k]) for k in oa[1][i])


@pytest.fixture
def trained(tmp_path):
    model = GPT(CFG, seed=0)
    opt = model.configure_optimizers(0.1, 1e-2)
    train(model, opt, batches(3))
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, model, opt, step=3, note="hello", losses=[1.5, 1.25])
    return model, opt, path


def fresh():
    model = GPT(CFG, seed=99)
    return model, model.configure_optimizers(0.1, 1e-2)


# ---------------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------------


def test_round_trip_restores_model_optimizer_rng_and_meta(trained):
    model, opt, path = trained
    other, other_opt = fresh()
    meta = load_checkpoint(path, other, other_opt)
    assert meta["step"] == 3 and meta["note"] == "hello" and meta["losses"] == [1.5, 1.25]
    assert meta["config"] == CFG.to_dict()
    assert list(meta["model"]) == list(model.state_dict())
    assert meta["model"]["lm_head.weight"] is meta["model"]["transformer.wte.weight"]
    assert_same(snapshot(model, opt), snapshot(other, other_opt))
    assert other.lm_head.weight is other.transformer.wte.weight  # tying survives the load


def test_resuming_from_a_checkpoint_trains_bit_for_bit_like_never_stopping(tmp_path):
    data = batches(7, seed=1)
    straight, opt = GPT(CFG, seed=0), None
    opt = straight.configure_optimizers(0.1, 1e-2)
    train(straight, opt, data)

    first = GPT(CFG, seed=0)
    first_opt = first.configure_optimizers(0.1, 1e-2)
    train(first, first_opt, data[:4])
    save_checkpoint(tmp_path / "mid.npz", first, first_opt, step=4)
    del first, first_opt

    resumed, resumed_opt = fresh()  # another seed: everything must come from the file (dropout too)
    assert load_checkpoint(tmp_path / "mid.npz", resumed, resumed_opt)["step"] == 4
    train(resumed, resumed_opt, data[4:])
    assert_same(snapshot(straight, opt), snapshot(resumed, resumed_opt))


def test_load_without_targets_returns_the_state(trained):
    model, opt, path = trained
    meta = load_checkpoint(str(path))
    assert meta["optimizer"]["param_groups"][0]["weight_decay"] == 0.1
    assert np.array_equal(meta["model"]["transformer.wpe.weight"], model.transformer.wpe.weight.data)
    sgd_free = GPT(CFG)
    save_checkpoint(path, sgd_free)  # a model alone: overwrites the previous file
    assert load_checkpoint(path)["optimizer"] is None


def test_transposed_and_strided_arrays_round_trip(tmp_path):
    model = GPT(CFG, seed=0)
    w = model.transformer.h[0].attn.c_proj.weight
    values = np.arange(w.size, dtype=np.float32).reshape(w.shape)
    w.data = values.T  # a transposed view: not C-contiguous
    assert not w.data.flags.c_contiguous
    strided = np.arange(60.0).reshape(6, 10)[::2, ::3]
    save_checkpoint(tmp_path / "t.npz", model, transposed=np.arange(12).reshape(3, 4).T, strided=strided)
    meta = load_checkpoint(tmp_path / "t.npz", GPT(CFG, seed=1))
    np.testing.assert_array_equal(meta["model"]["transformer.h.0.attn.c_proj.weight"], values.T)
    np.testing.assert_array_equal(meta["transposed"], np.arange(12).reshape(3, 4).T)
    np.testing.assert_array_equal(meta["strided"], strided)


def test_generators_and_numpy_values_in_meta(tmp_path):
    rng = np.random.default_rng(5)
    rng.random(3)
    save_checkpoint(tmp_path / "g.npz", GPT(CFG), data_rng=rng, lr=np.float32(0.5), shape=(2, 3))
    meta = load_checkpoint(tmp_path / "g.npz")
    assert meta["data_rng"].random() == rng.random()  # continues the same stream
    assert type(meta["lr"]) is np.float32 and meta["lr"] == 0.5  # a numpy scalar stays one
    assert meta["shape"] == (2, 3)  # a tuple stays a tuple


def test_sgd_checkpoints_and_optimizer_type_is_checked(tmp_path):
    model = GPT(CFG)
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    train(model, opt, batches(1))
    save_checkpoint(tmp_path / "s.npz", model, opt)
    other = GPT(CFG, seed=3)
    other_opt = SGD(other.parameters(), lr=0.5, momentum=0.9)
    load_checkpoint(tmp_path / "s.npz", other, other_opt)
    assert other_opt.param_groups[0]["lr"] == 0.1
    before = snapshot(other)
    with pytest.raises(CheckpointError, match="holds SGD state, not AdamW state"):
        load_checkpoint(tmp_path / "s.npz", other, AdamW(other.parameters()))
    assert_same(before, snapshot(other))


def test_meta_must_be_storable(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(tmp_path / "x.npz", GPT(CFG), config={"a": 1})
    with pytest.raises(TypeError, match=r"meta\['thing'\] is of type object, which a checkpoint cannot store"):
        save_checkpoint(tmp_path / "x.npz", GPT(CFG), thing=object())
    with pytest.raises(TypeError, match="Module"):
        save_checkpoint(tmp_path / "x.npz", {"a": np.zeros(2)})
    assert not os.listdir(tmp_path)


# ---------------------------------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------------------------------


def test_a_crash_mid_write_leaves_the_previous_checkpoint_intact(trained, monkeypatch):
    model, opt, path = trained
    before = path.read_bytes()

    def crash(file, *args, **kwargs):
        file.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model, opt, step=4)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == ["ckpt.npz"]  # the temporary file was removed
    assert load_checkpoint(path)["step"] == 3


def test_written_file_is_a_plain_npz_without_pickles(trained):
    _, _, path = trained
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    assert "__meta__.npy" in names and "model/transformer.wte.weight.npy" in names
    assert "model/lm_head.weight.npy" not in names  # tied: stored once
    with np.load(path, allow_pickle=False) as data:
        assert all(data[name].dtype != object for name in data.files)


# ---------------------------------------------------------------------------------------------------
# Bad files are refused, nothing changes
# ---------------------------------------------------------------------------------------------------


def refused(path, words):
    """Loading ``path`` raises CheckpointError naming the file and ``words``; the targets are untouched."""
    model, opt = fresh()
    train(model, opt, batches(1))
    before = snapshot(model, opt)
    with pytest.raises(CheckpointError, match=words) as info:
        load_checkpoint(path, model, opt)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)
    assert_same(before, snapshot(model, opt))


def test_missing_file(tmp_path):
    refused(tmp_path / "nope.npz", "no such file")


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_truncated_file(trained, keep):
    _, _, path = trained
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    refused(path, "empty file" if keep == 0 else "truncated|corrupted|not a checkpoint")


@pytest.mark.parametrize("where", [0.2, 0.5, 0.8])
def test_flipped_bit_is_detected(trained, where):
    _, _, path = trained
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0x10
    path.write_bytes(bytes(data))
    refused(path, "corrupted|checksum|truncated|not a")


def test_checksum_catches_an_edited_entry(trained, tmp_path):
    _, _, path = trained
    with np.load(path, allow_pickle=False) as data:
        entries = {name: data[name] for name in data.files}
    entries["model/transformer.wpe.weight"] = entries["model/transformer.wpe.weight"] + 1.0  # zip CRCs stay valid
    edited = tmp_path / "edited.npz"
    np.savez(edited, **entries)
    refused(edited, "checksum mismatch")


class Payload:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_pickles_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "payload_ran"
    payload = pickle.dumps(Payload(marker))
    pickle.loads(payload)  # the payload works: loading it with pickle runs it
    assert marker.exists()
    marker.unlink()

    raw_pickle = tmp_path / "raw.npz"
    raw_pickle.write_bytes(payload)
    refused(raw_pickle, "found a pickle")

    object_array = np.empty(1, dtype=object)
    object_array[0] = Payload(marker)
    npz_with_object = tmp_path / "object.npz"
    np.savez(npz_with_object, __meta__=np.zeros(3, np.uint8), evil=object_array)  # np.savez pickles it
    refused(npz_with_object, "pickled object array")

    npy_pickle = tmp_path / "object.npy"
    np.save(npy_pickle, object_array)
    refused(npy_pickle, "found a .npy array")
    assert not marker.exists()  # none of it ran


def test_foreign_files(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    refused(text, "some other format")
    plain = tmp_path / "plain.npz"
    np.savez(plain, a=np.zeros(3))
    refused(plain, "not a tinygrad_lm checkpoint")
    a_zip = tmp_path / "other.zip"
    with zipfile.ZipFile(a_zip, "w") as archive:
        archive.writestr("readme.txt", "not numpy")
    refused(a_zip, r"entries \['readme.txt'\] are not numpy arrays")
    with zipfile.ZipFile(a_zip, "w") as archive:
        archive.writestr("__meta__.npy", "{}")
        archive.writestr("__checksum__.npy", "0")
    refused(a_zip, "are not numpy arrays")


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    small = GPT(GPTConfig(vocab_size=13, block_size=8, n_layer=1, n_head=2, n_embd=16, dropout=0.1))
    save_checkpoint(tmp_path / "small.npz", small)
    refused(tmp_path / "small.npz", "another config .*n_layer: saved 1, model 2")
    heads = GPT(GPTConfig(vocab_size=13, block_size=8, n_layer=2, n_head=4, n_embd=16, dropout=0.1))
    save_checkpoint(tmp_path / "heads.npz", heads)  # same shapes, other heads: still refused
    refused(tmp_path / "heads.npz", "n_head: saved 4, model 2")


def test_a_shape_mismatch_names_the_parameters(tmp_path):
    model = GPT(CFG)
    save_checkpoint(tmp_path / "m.npz", model)
    with np.load(tmp_path / "m.npz") as data:
        entries = {name: data[name] for name in data.files}
    import json

    document = json.loads(entries["__meta__"].tobytes())
    document["config"] = None  # pretend it came without a config, so the shapes are what catch it
    entries["__meta__"] = np.frombuffer(json.dumps(document).encode(), np.uint8)
    entries["model/transformer.ln_f.bias"] = np.zeros(5, np.float32)
    from tinygrad_lm.checkpoint import _checksum

    entries["__checksum__"] = np.frombuffer(_checksum(entries).encode(), np.uint8)
    np.savez(tmp_path / "m.npz", **entries)
    refused(tmp_path / "m.npz", r"(?s)does not fit the model.*transformer.ln_f.bias: got \(5,\), expected \(16,\)")


def test_model_only_checkpoint_cannot_restore_an_optimizer(tmp_path):
    save_checkpoint(tmp_path / "m.npz", GPT(CFG))
    refused(tmp_path / "m.npz", "holds no optimizer state")
