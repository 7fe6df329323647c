"""GPT-2 from and to Hugging Face, against what `transformers` itself computed (tests/fixtures/tiny_gpt2,
made by tests/fixtures/make_tiny_gpt2.py): same logits, same greedy tokens, files it can read back.

None of this needs torch or transformers; the one test that hands our output to transformers is
skipped where they are not installed (CI has neither, on purpose)."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from tinygrad_lm import GPT, GPTConfig
from tinygrad_lm.pretrained import PretrainedError, _contiguous

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "tiny_gpt2"
REFERENCE = json.loads((FIXTURE / "reference.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def model():
    return GPT.from_pretrained(FIXTURE).eval()


@pytest.fixture(scope="module")
def reference_logits():
    with np.load(FIXTURE / "reference_logits.npz") as archive:
        return {name: archive[name] for name in archive.files}


def copy_fixture(tmp_path, *, config=None, tensors=None) -> Path:
    """A copy of the fixture folder, with its config.json updated by ``config`` and its weights
    replaced by ``tensors`` (a function of the original {name: array})."""
    folder = tmp_path / "gpt2"
    shutil.copytree(FIXTURE, folder)
    if config is not None:
        document = json.loads((folder / "config.json").read_text())
        document.update(config)
        (folder / "config.json").write_text(json.dumps(document))
    if tensors is not None:
        save_file(tensors(load_file(folder / "model.safetensors")), folder / "model.safetensors",
                  metadata={"format": "pt"})  # fmt: skip
    return folder


# ---------------------------------------------------------------------------------------------------
# The same numbers as transformers
# ---------------------------------------------------------------------------------------------------


def test_the_config_becomes_our_config(model):
    assert model.config == GPTConfig(vocab_size=400, block_size=64, n_layer=2, n_head=4, n_embd=32, dropout=0.1)
    assert model.transformer.wte.weight is model.lm_head.weight  # tied, one parameter
    assert all(p.dtype == np.float32 for p in model.parameters())


@pytest.mark.parametrize("which", [0, 1, 2, "full_context"])
def test_logits_match_transformers_within_1e_5(model, reference_logits, which):
    ids = REFERENCE["full_context"] if which == "full_context" else REFERENCE["prompts"][which]["ids"]
    expected = reference_logits["full_context" if which == "full_context" else f"prompt_{which}"]
    logits, _ = model(np.array([ids]))
    assert logits.dtype == np.float32 and logits.shape == (1, *expected.shape)
    np.testing.assert_allclose(logits.data[0], expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_generation_matches_transformers(model, use_cache):
    for prompt in REFERENCE["prompts"]:
        ids = np.array([prompt["ids"]])
        out = model.generate(ids, max_new_tokens=len(prompt["greedy"]), temperature=0.0, use_cache=use_cache)
        assert out[0, ids.shape[1] :].tolist() == prompt["greedy"]


def test_greedy_generation_of_a_batch_matches_one_by_one(model):
    prompts = [p["ids"][:2] for p in REFERENCE["prompts"]]
    out = model.generate(np.array(prompts), max_new_tokens=10, temperature=0.0)
    for row, ids in zip(out, prompts):
        assert row.tolist() == model.generate(np.array([ids]), max_new_tokens=10, temperature=0.0)[0].tolist()


# ---------------------------------------------------------------------------------------------------
# Names, layout and round trips
# ---------------------------------------------------------------------------------------------------


def test_names_without_the_transformer_prefix_and_old_buffers_load_the_same(model, tmp_path):
    """The hub's own gpt2 files have no 'transformer.' prefix, keep the causal mask as attn.bias /
    attn.masked_bias buffers and may include the tied lm_head.weight: all of that loads the same."""

    def hub_style(tensors):
        out = {name.removeprefix("transformer."): array for name, array in tensors.items()}
        for i in range(2):
            out[f"h.{i}.attn.bias"] = np.tril(np.ones((64, 64), np.float32))[None, None]
            out[f"h.{i}.attn.masked_bias"] = np.array(-1e4, dtype=np.float32)
        out["lm_head.weight"] = out["wte.weight"]
        return out

    other = GPT.from_pretrained(copy_fixture(tmp_path, tensors=hub_style))
    for name, array in model.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[name], array, err_msg=name)


def test_conv1d_weights_are_transposed_into_nanogpt_layout(model):
    with safe_open(FIXTURE / "model.safetensors", framework="np") as f:
        hf = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
    ours = model.state_dict()
    assert hf["transformer.h.0.attn.c_attn.weight"].shape == (32, 96)  # Conv1D: (in, out)
    assert ours["transformer.h.0.attn.c_attn.weight"].shape == (96, 32)  # Linear: (out, in)
    for name in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
        np.testing.assert_array_equal(ours[f"transformer.h.1.{name}.weight"], hf[f"transformer.h.1.{name}.weight"].T)
    np.testing.assert_array_equal(ours["lm_head.weight"], hf["transformer.wte.weight"])


def test_save_pretrained_writes_the_fixture_back_exactly(model, tmp_path):
    """Loaded and saved again: config.json byte for byte, the same tensor names, dtypes and values bit for bit."""
    out = Path(model.save_pretrained(tmp_path / "saved"))
    assert sorted(os.listdir(out)) == ["config.json", "model.safetensors"]
    assert (out / "config.json").read_text() == (FIXTURE / "config.json").read_text()
    with safe_open(FIXTURE / "model.safetensors", framework="np") as a, safe_open(out / "model.safetensors", "np") as b:
        assert sorted(a.keys()) == sorted(b.keys())
        assert b.metadata() == {"format": "pt"}  # transformers refuses a safetensors file without it
        for name in a.keys():  # noqa: SIM118
            x, y = a.get_tensor(name), b.get_tensor(name)
            assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), name
    again = GPT.from_pretrained(out)
    for name, array in model.state_dict().items():
        assert again.state_dict()[name].tobytes() == array.tobytes(), name


def test_a_model_made_here_saves_and_loads_bit_for_bit(tmp_path):
    made = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=8, dropout=0.0), seed=3)
    made.save_pretrained(tmp_path / "made")
    config = json.loads((tmp_path / "made" / "config.json").read_text())
    assert config["architectures"] == ["GPT2LMHeadModel"] and config["model_type"] == "gpt2"
    assert (config["n_positions"], config["n_embd"], config["n_layer"], config["n_head"]) == (16, 8, 2, 2)
    assert config["activation_function"] == "gelu_new" and config["layer_norm_epsilon"] == 1e-5
    loaded = GPT.from_pretrained(tmp_path / "made")
    assert loaded.config == made.config
    for name, array in made.state_dict().items():
        assert loaded.state_dict()[name].tobytes() == array.tobytes(), name
    ids = np.arange(16)[None] % 50
    np.testing.assert_array_equal(made(ids)[0].data, loaded(ids)[0].data)


def test_a_model_without_biases_is_saved_with_zero_biases_and_computes_the_same(tmp_path):
    made = GPT(GPTConfig(vocab_size=30, block_size=8, n_layer=1, n_head=2, n_embd=8, bias=False), seed=1)
    loaded = GPT.from_pretrained(made.save_pretrained(tmp_path / "nobias"))
    assert not loaded.transformer.h[0].attn.c_attn.bias.data.any()
    ids = np.arange(8)[None]
    np.testing.assert_array_equal(made(ids)[0].data, loaded(ids)[0].data)


def test_contiguous_copies_only_views_and_keeps_0d_arrays_0d():
    """safetensors 0.8 writes a non-contiguous array's memory in the order it lies, scrambling a
    transposed view: every array is made C-contiguous first (a 0-d array stays 0-d)."""
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert _contiguous(a) is a
    assert _contiguous(a.T).flags.c_contiguous and np.array_equal(_contiguous(a.T), a.T)
    assert _contiguous(np.float32(2.0) * np.ones(())).shape == ()


def test_save_pretrained_is_atomic_a_failed_write_keeps_the_previous_files(model, tmp_path, monkeypatch):
    out = Path(model.save_pretrained(tmp_path / "saved"))
    before = {name: (out / name).read_bytes() for name in os.listdir(out)}

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("safetensors.numpy.save_file", fail)
    other = GPT(GPTConfig(vocab_size=400, block_size=64, n_layer=2, n_head=4, n_embd=32), seed=9)
    with pytest.raises(OSError, match="No space"):
        other.save_pretrained(out)
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == before  # no temporary left either


def test_save_pretrained_output_loads_in_transformers_with_the_same_logits(model, tmp_path):
    torch = pytest.importorskip("torch", reason="torch is not installed (CI has neither torch nor transformers)")
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    made = GPT(GPTConfig(vocab_size=400, block_size=64, n_layer=2, n_head=4, n_embd=32), seed=5)
    for source in (model, made):
        folder = source.save_pretrained(tmp_path / f"for_transformers_{id(source)}")
        theirs = transformers.GPT2LMHeadModel.from_pretrained(folder).eval()
        ids = np.array([REFERENCE["full_context"]])
        with torch.no_grad():
            expected = theirs(torch.tensor(ids)).logits.numpy()
        np.testing.assert_allclose(source.eval()(ids)[0].data, expected, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------------
# Refusals: one clear line, and nothing built
# ---------------------------------------------------------------------------------------------------


@pytest.fixture
def no_model_is_built(monkeypatch):
    """Fails the test if a GPT is constructed: a refusal must come before anything is built."""
    built = []
    original = GPT.__init__

    def spy(self, *args, **kwargs):
        built.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(GPT, "__init__", spy)
    yield
    assert not built, "a GPT was built before the folder was refused"


def refused(folder, *needles):
    with pytest.raises(PretrainedError) as info:
        GPT.from_pretrained(folder)
    message = str(info.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, message
    return message


def test_pickled_weights_are_refused_unopened_with_how_to_convert(tmp_path, no_model_is_built):
    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(FIXTURE / "config.json", folder)
    marker = tmp_path / "payload_ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    import pickle

    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(Payload()))
    message = refused(folder, "pytorch_model.bin", "pickle", "run any code", "save_pretrained", "model.safetensors")
    assert not marker.exists(), "the pickle was opened"
    assert "never opened" in message


@pytest.mark.parametrize(
    "change, needles",
    [
        ({"activation_function": "relu"}, ["activation_function is 'relu'", "tanh"]),
        ({"activation_function": "gelu"}, ["activation_function is 'gelu'"]),  # the exact erf GELU differs
        ({"layer_norm_epsilon": 1e-6}, ["layer_norm_epsilon is 1e-06", "1e-05"]),
        ({"n_inner": 100}, ["n_inner is 100", "4 * n_embd = 128"]),
        ({"scale_attn_weights": False}, ["scale_attn_weights is False"]),
        ({"scale_attn_by_inverse_layer_idx": True}, ["scale_attn_by_inverse_layer_idx is True"]),
        ({"add_cross_attention": True}, ["add_cross_attention is True", "cross-attention"]),
        ({"tie_word_embeddings": False}, ["tie_word_embeddings is False", "tied"]),
        ({"model_type": "llama"}, ["model_type is 'llama'"]),
        ({"n_head": 5}, ["n_embd is 32", "divisible by n_head=5"]),
        ({"n_layer": 0}, ["n_layer is 0, not a positive integer"]),
        ({"vocab_size": "400"}, ["vocab_size is '400'"]),
        ({"attn_pdrop": 0.0}, ["attn_pdrop=0.0", "pass dropout="]),
    ],
)
def test_a_config_this_gpt_cannot_represent_is_refused_naming_the_field(tmp_path, no_model_is_built, change, needles):
    refused(copy_fixture(tmp_path, config=change), "config.json", *needles)


def test_upcast_attention_is_the_same_math_in_float32_and_loads(tmp_path):
    GPT.from_pretrained(copy_fixture(tmp_path, config={"reorder_and_upcast_attn": True}))


def test_dropout_can_be_chosen_when_loading(tmp_path):
    assert GPT.from_pretrained(FIXTURE, dropout=0.0).config.dropout == 0.0
    assert GPT.from_pretrained(copy_fixture(tmp_path, config={"attn_pdrop": 0.0}), dropout=0.2).config.dropout == 0.2


def drop(name):
    return lambda tensors: {k: v for k, v in tensors.items() if k != name}


@pytest.mark.parametrize(
    "tensors, needles",
    [
        (drop("transformer.h.1.mlp.c_fc.bias"), ["missing 1 tensors: h.1.mlp.c_fc.bias"]),
        (drop("transformer.wte.weight"), ["missing 1 tensors: wte.weight"]),
        (lambda t: {**t, "transformer.h.0.attn.c_attn.weight": np.zeros((96, 32), np.float32)},
         ["transformer.h.0.attn.c_attn.weight has shape (96, 32), config.json says (32, 96)"]),
        (lambda t: {**t, "transformer.wpe.weight": np.zeros((128, 32), np.float32)},
         ["transformer.wpe.weight has shape (128, 32)"]),
        (lambda t: {**t, "transformer.h.2.ln_1.weight": np.ones(32, np.float32)},
         ["unexpected tensors (not GPT-2's): transformer.h.2.ln_1.weight"]),
        (lambda t: {**t, "score.weight": np.ones((2, 32), np.float32)}, ["unexpected tensors", "score.weight"]),
        (lambda t: {**t, "transformer.ln_f.bias": np.zeros(32, np.int32)}, ["ln_f.bias has dtype I32"]),
        (lambda t: {**t, "lm_head.weight": t["transformer.wte.weight"] + 1},
         ["lm_head.weight differs from wte.weight", "tied"]),
        (lambda t: {**t, "h.0.ln_1.weight": t["transformer.h.0.ln_1.weight"]}, ["in the file twice"]),
    ],
)  # fmt: skip
def test_weights_that_do_not_fit_are_refused_naming_each_problem(tmp_path, no_model_is_built, tensors, needles):
    refused(copy_fixture(tmp_path, tensors=tensors), *needles)


def test_every_problem_is_named_in_one_line(tmp_path, no_model_is_built):
    def many(t):
        t = {k: v for k, v in t.items() if "h.1." not in k}
        t["transformer.wte.weight"] = np.zeros((10, 32), np.float32)
        t["extra"] = np.zeros(1, np.float32)
        return t

    refused(copy_fixture(tmp_path, tensors=many), "missing 12 tensors: h.1.ln_1.weight", "and 8 more",
            "wte.weight has shape (10, 32)", "unexpected tensors (not GPT-2's): extra")  # fmt: skip


def test_folders_that_are_not_a_gpt2_are_refused(tmp_path, no_model_is_built):
    refused(tmp_path / "nothing", "no such folder")
    refused(FIXTURE / "config.json", "is a file")
    (tmp_path / "empty").mkdir()
    refused(tmp_path / "empty", "has no config.json")
    folder = copy_fixture(tmp_path)
    (folder / "model.safetensors").unlink()
    refused(folder, "has no model.safetensors")
    (folder / "tf_model.h5").write_bytes(b"\x89HDF")
    refused(folder, "found tf_model.h5")
    (folder / "config.json").write_text("{not json")
    refused(folder, "cannot read", "config.json")


def test_a_truncated_or_corrupted_weights_file_is_refused(tmp_path, no_model_is_built):
    folder = copy_fixture(tmp_path)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    refused(folder, "cannot read the weights")
    (folder / "model.safetensors").write_bytes(b"\xff" * 64)
    refused(folder, "cannot read the weights")


def test_sharded_weights_load_through_their_index(model, tmp_path):
    folder = copy_fixture(tmp_path)
    tensors = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for shard, shard_names in shards.items():
        save_file({n: tensors[n] for n in shard_names}, folder / shard, metadata={"format": "pt"})
    weight_map = {n: shard for shard, shard_names in shards.items() for n in shard_names}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    loaded = GPT.from_pretrained(folder)
    for name, array in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[name], array)
    (folder / "model-00002-of-00002.safetensors").unlink()
    refused(folder, "model-00002-of-00002.safetensors: no such file")


def test_half_precision_weights_load_as_float32(model, tmp_path):
    folder = copy_fixture(tmp_path, tensors=lambda t: {k: v.astype(np.float16) for k, v in t.items()})
    half = GPT.from_pretrained(folder)
    assert all(p.dtype == np.float32 for p in half.parameters())
    for name, array in model.state_dict().items():
        np.testing.assert_array_equal(half.state_dict()[name], array.astype(np.float16).astype(np.float32))
