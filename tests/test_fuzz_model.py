"""Fuzzing the GPT with generated input, good and bad: token ids, targets, configs, state dicts, dtypes,
and the arguments of `generate`.

Each call either works and gives what it should (logits of the right shape, the cross-entropy numpy
computes from them, the loaded weights, tokens from the vocabulary) or raises a ValueError, TypeError
or IndexError whose message names what was wrong. Never another exception type, never a hang (each call
runs under a wall-clock alarm), and a refused state dict leaves the model untouched.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from support import ALLOWED, time_limit

from autograd import Tensor
from tinygrad_lm import GPT, GPTConfig

V, BLOCK = 7, 4
CONFIG = GPTConfig(vocab_size=V, block_size=BLOCK, n_layer=1, n_head=2, n_embd=4)
MODEL = GPT(CONFIG, seed=0)  # shared by the examples: a test that changes it puts it back


def outcome(call: Callable[[], Any], problems: list[str]) -> Any:
    """Run ``call``. With ``problems`` (regexes, one per thing wrong with the input) it must raise a
    ValueError/TypeError/IndexError whose message matches one of them; without, it must return."""
    with warnings.catch_warnings(), np.errstate(all="ignore"), time_limit(10.0):
        warnings.simplefilter("ignore")
        try:
            result = call()
        except Exception as error:  # noqa: BLE001 (judged here)
            assert isinstance(error, ALLOWED), f"raised {type(error).__name__}, not ValueError/TypeError/IndexError"
            assert problems, f"valid input refused: {type(error).__name__}: {error}"
            assert any(re.search(p, str(error)) for p in problems), f"{str(error)!r} names none of {problems}"
            return None
    assert not problems, f"bad input accepted ({problems}); returned {type(result).__name__}"
    return result


# ---------------------------------------------------------------------------------------------------
# Token ids and targets
# ---------------------------------------------------------------------------------------------------

ID_DTYPES = [np.int64, np.int32, np.uint8, np.int8, np.float32, np.float64, np.bool_]


@st.composite
def id_arrays(draw: st.DrawFn, shape: Any = None, low: int = -2, high: int = V + 1) -> np.ndarray:
    """Arrays of token ids: any dtype, 0 to 3 dims (often the right 2), ids sometimes out of range."""
    dtype = np.dtype(draw(st.sampled_from(ID_DTYPES)))
    if shape is None:
        two_d = hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=BLOCK + 2)
        shape = draw(st.one_of(two_d, two_d, two_d, hnp.array_shapes(min_dims=0, max_dims=3, max_side=3)))
    if dtype.kind == "b":
        values = st.booleans()
    else:
        lowest = max(low, int(np.iinfo(dtype).min) if dtype.kind in "iu" else low)
        values = st.one_of(st.integers(0, V - 1), st.integers(0, V - 1), st.integers(lowest, high))
    return draw(hnp.arrays(dtype, shape, elements=values))


def as_given(array: np.ndarray, form: str) -> Any:
    """The ids as a user might pass them."""
    return {"array": array, "list": array.tolist(), "tensor": Tensor(array)}[form]


JUNK = [None, "abc", 3, 2.5, [[1], [1, 2]], {"ids": 1}, np.array([["a"]]), np.array([[1, None]], dtype=object)]
forms = st.sampled_from(["array", "array", "list", "tensor"])


def id_problems(given_ids: Any, name: str, max_length: int | None = BLOCK) -> list[str]:
    """Everything wrong with ``given_ids`` as token ids (as regexes its error may name)."""
    data = given_ids.data if isinstance(given_ids, Tensor) else given_ids
    try:
        array = np.asarray(data)
    except ValueError:
        return [f"{name} must be an integer array"]
    if array.dtype.kind not in "iu":
        return [f"{name} must hold integer token ids"]
    problems = []
    if array.ndim != 2:
        return [rf"{name} must have shape \(batch, time\)"]
    if 0 in array.shape:
        problems.append(f"{name} is empty")
    elif max_length is not None and array.shape[1] > max_length:
        problems.append(f"{name} has {array.shape[1]} tokens per row, more than block_size={max_length}")
    if array.size and (array.min() < 0 or array.max() >= V):
        problems.append(rf"{name} holds token id -?\d+, outside the vocabulary")
    return problems


def target_problems(targets: Any, idx_shape: tuple[int, ...]) -> list[str]:
    try:
        array = np.asarray(targets.data if isinstance(targets, Tensor) else targets)
    except ValueError:
        return ["targets must be an integer array"]
    if array.dtype.kind not in "iu":
        return ["targets must hold integer token ids"]
    if array.ndim != 2:
        return [r"targets must have shape \(batch, time\)"]
    if array.shape != idx_shape:
        return [r"targets have shape .*, but idx has shape"]
    if array.size and (array.min() < -1 or array.max() >= V):
        return [r"targets hold id -?\d+, outside the vocabulary"]
    return []


def numpy_cross_entropy(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean of -log softmax(logits)[target] over the targets that are not -1 (0 if there are none)."""
    z = logits.astype(np.float64)
    log_probs = z - z.max(-1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
    keep = targets != -1
    if not keep.any():
        return 0.0
    return float(-log_probs[keep, targets[keep]].mean())


@given(ids=id_arrays(), form=forms)
def test_token_ids(ids: np.ndarray, form: str) -> None:
    given_ids = as_given(ids, form)
    out = outcome(lambda: MODEL(given_ids), id_problems(given_ids, "idx"))
    if out is None:
        return
    logits, loss = out
    B, T = ids.shape
    assert loss is None and logits.shape == (B, T, V) and logits.dtype == np.float32
    assert np.isfinite(logits.data).all()
    first, _ = MODEL(ids[:1].astype(np.int64))  # rows do not see each other
    np.testing.assert_allclose(logits.data[:1], first.data, rtol=1e-5, atol=1e-6)


@given(data=st.data(), form=forms)
def test_targets(data: st.DataObject, form: str) -> None:
    ids = data.draw(id_arrays(shape=st.tuples(st.integers(1, 3), st.integers(1, BLOCK)), low=0, high=V - 1))
    ids = ids.astype(np.int64) if ids.dtype.kind not in "iu" else ids
    same_shape = data.draw(st.integers(0, 3)) > 0
    shape = ids.shape if same_shape else data.draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    targets = as_given(data.draw(id_arrays(shape=shape, low=-3, high=V + 1)), form)
    out = outcome(lambda: MODEL(ids, targets), target_problems(targets, ids.shape))
    if out is None:
        return
    logits, loss = out
    assert loss.shape == () and loss.dtype == np.float32 and loss.requires_grad
    expected = numpy_cross_entropy(logits.data, np.asarray(targets.data if isinstance(targets, Tensor) else targets))
    assert math.isclose(loss.item(), expected, rel_tol=1e-4, abs_tol=1e-5)


@given(junk=st.sampled_from(JUNK), where=st.sampled_from(["idx", "targets", "generate"]))
def test_junk_instead_of_ids(junk: Any, where: str) -> None:
    ids = np.zeros((1, 2), np.int64)
    if where == "idx":
        outcome(lambda: MODEL(junk), id_problems(junk, "idx"))
    elif where == "targets":
        outcome(lambda: MODEL(ids, junk), target_problems(junk, ids.shape) if junk is not None else [])
    else:
        outcome(lambda: MODEL.generate(junk, 1, seed=0), id_problems(junk, "idx", max_length=None))


# ---------------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------------

SIZES = ("vocab_size", "block_size", "n_layer", "n_head", "n_embd")
size_values = st.one_of(st.integers(1, 4), st.integers(-2, 8), st.sampled_from([0, 2.0, "4", None, True, np.int64(4)]))
dropout_values = st.one_of(
    st.floats(-0.5, 1.5), st.sampled_from([0.0, 0.5, 1.0, math.nan, math.inf, "0.1", None, True, np.float32(0.1), 0])
)
bias_values = st.sampled_from([True, False, np.bool_(False), 1, "yes", None])


def config_problems(fields: dict[str, Any]) -> list[str]:
    problems = []
    for name in SIZES:
        value = fields[name]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            problems.append(f"{name} must be an int")
        elif value <= 0:
            problems.append(f"{name} must be positive")
    n_embd, n_head = fields["n_embd"], fields["n_head"]
    if not any(name in p for p in problems for name in ("n_embd", "n_head")) and n_embd % n_head:
        problems.append(f"n_embd={n_embd} is not divisible by n_head={n_head}")
    dropout = fields["dropout"]
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float, np.integer, np.floating)):
        problems.append("dropout must be a number")
    elif not 0.0 <= dropout < 1.0:
        problems.append(r"dropout must be in \[0, 1\)")
    if not isinstance(fields["bias"], (bool, np.bool_)):
        problems.append("bias must be True or False")
    return [f"GPTConfig: {p}" for p in problems]


@st.composite
def valid_configs(draw: st.DrawFn) -> dict[str, Any]:
    n_head = draw(st.integers(1, 2))
    return dict(
        vocab_size=draw(st.integers(1, 8)),
        block_size=draw(st.integers(1, 4)),
        n_layer=draw(st.integers(1, 2)),
        n_head=n_head,
        n_embd=n_head * draw(st.integers(1, 3)),
        dropout=draw(st.sampled_from([0.0, 0.1])),
        bias=draw(st.booleans()),
    )


FIELD_VALUES = {**{name: size_values for name in SIZES}, "dropout": dropout_values, "bias": bias_values}


@given(
    base=valid_configs(),
    changes=st.lists(st.sampled_from(sorted(FIELD_VALUES)), max_size=2, unique=True).flatmap(
        lambda names: st.fixed_dictionaries({name: FIELD_VALUES[name] for name in names})
    ),
)
def test_configs(base: dict[str, Any], changes: dict[str, Any]) -> None:
    """A valid config with one or two fields changed to anything."""
    fields = {**base, **changes}
    config = outcome(lambda: GPTConfig(**fields), config_problems(fields))
    if config is None:
        return
    assert config.n_embd % config.n_head == 0 and type(config.vocab_size) is int and type(config.dropout) is float
    model = GPT(config, seed=1)  # the smallest sizes still make a working model
    T = min(config.block_size, 3)
    logits, loss = model(np.zeros((2, T), np.int64), np.ones((2, T), np.int64) % config.vocab_size)
    assert logits.shape == (2, T, config.vocab_size) and np.isfinite(loss.item())


@given(config=st.sampled_from([None, {"vocab_size": 3}, "gpt2", CONFIG.to_dict()]), seed=st.just(0))
def test_gpt_needs_a_config(config: Any, seed: int) -> None:
    outcome(lambda: GPT(config, seed=seed), ["GPT: config must be a GPTConfig"])


@given(seed=st.sampled_from([0, 7, np.int64(3), None, -1, 1.5, "0", True, [1, 2]]))
def test_gpt_seed(seed: Any) -> None:
    bad = seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0)
    outcome(lambda: GPT(CONFIG, seed=seed), ["GPT: seed must be a non-negative int"] if bad else [])


# ---------------------------------------------------------------------------------------------------
# dtypes: model.to(...)
# ---------------------------------------------------------------------------------------------------


DTYPES = [np.float64, "float64", np.float32, np.float16, np.int32, bool, "complex64", "foo", object]


@given(dtype=st.sampled_from(DTYPES))
def test_model_to_dtype(dtype: Any) -> None:
    model = GPT(CONFIG, seed=0)
    try:
        target = np.dtype(dtype)
    except TypeError:
        target = None
    floating = target is not None and target.kind == "f"
    problems = [] if floating else [r"to: (.* is not a dtype|parameters must be floating)"]
    before = {k: v.copy() for k, v in model.state_dict().items()}
    if outcome(lambda: model.to(dtype), problems) is None:
        assert all(np.array_equal(v, before[k]) and v.dtype == np.float32 for k, v in model.state_dict().items())
        return
    assert all(p.dtype == target for p in model.parameters())
    logits, loss = model(np.array([[1, 2]]), np.array([[2, 3]]))
    assert logits.dtype == target and loss.dtype == target


# ---------------------------------------------------------------------------------------------------
# State dicts: missing, unexpected, wrongly shaped, non-numeric, disagreeing tied entries
# ---------------------------------------------------------------------------------------------------

GOOD = {name: array.copy() for name, array in MODEL.state_dict().items()}
KEYS = sorted(GOOD)
TIED = ("transformer.wte.weight", "lm_head.weight")


def bad_value(array: np.ndarray, how: str) -> Any:
    return {
        "longer": np.zeros(array.shape[:-1] + (array.shape[-1] + 1,), array.dtype),
        "scalar": np.float32(1.0),
        "flat": array.reshape(-1) if array.ndim > 1 else array[None],
        "bool": array > 0,
        "complex": array.astype(np.complex64),
        "object": array.astype(object),
        "strings": array.astype(str),
        "None": None,
        "ragged": [[1.0], [1.0, 2.0]],
    }[how]


SHAPE_FAULTS = ["longer", "scalar", "flat"]
VALUE_FAULTS = ["bool", "complex", "object", "strings", "None", "ragged"]
GOOD_VARIANTS = ["float64", "int64", "list", "tensor"]


def good_variant(array: np.ndarray, how: str) -> Any:
    """The same (whole-number) values in another form that must load: float64, int64, a list, a Tensor."""
    return {
        "float64": array.astype(np.float64),
        "int64": array.astype(np.int64),
        "list": array.tolist(),
        "tensor": Tensor(array),
    }[how]


@given(
    drop=st.lists(st.sampled_from(KEYS), unique=True, max_size=3),
    extra=st.lists(
        st.sampled_from(["foo", "transformer.h.9.ln_1.weight", "lm_head.bias", "h.0.attn"]), unique=True, max_size=2
    ),  # fmt: skip
    faults=st.dictionaries(st.sampled_from(KEYS), st.sampled_from(SHAPE_FAULTS + VALUE_FAULTS), max_size=3),
    variants=st.dictionaries(st.sampled_from(KEYS), st.sampled_from(GOOD_VARIANTS), max_size=3),
    untie=st.booleans(),
    strict=st.booleans(),
)
def test_load_state_dict(drop: list, extra: list, faults: dict, variants: dict, untie: bool, strict: bool) -> None:
    new = {name: np.round(value * 100 + 3).astype(np.float32) for name, value in GOOD.items()}  # whole numbers
    sd: dict[str, Any] = dict(new)
    for name, how in variants.items():
        sd[name] = good_variant(new[name], how)
    if untie:
        sd["lm_head.weight"] = new["lm_head.weight"] + 1.0
    for name, how in faults.items():
        sd[name] = bad_value(new[name], how)
    for name in drop:
        sd.pop(name)
    for name in extra:
        sd[name] = np.zeros(3)

    offending = []  # (key, what the error must say about it)
    if strict:
        offending += [(name, "missing keys") for name in drop if name not in TIED]
        if all(name in drop for name in TIED):
            offending.append((TIED[0], "missing keys"))
        offending += [(name, "unexpected keys") for name in extra]
    for name, how in faults.items():
        if name not in drop:
            offending.append((name, "wrong shapes" if how in SHAPE_FAULTS else "bad values"))
    present = [name for name in TIED if name in sd and name not in faults]
    if untie and len(present) == 2:
        offending.append(("lm_head.weight", "tied"))

    before = {name: value.copy() for name, value in MODEL.state_dict().items()}
    try:
        result = outcome(lambda: MODEL.load_state_dict(sd, strict=strict), ["load_state_dict: "] if offending else [])
        if result is None:  # refused: every offending key named, nothing loaded
            message = _last_error(lambda: MODEL.load_state_dict(sd, strict=strict))
            for name, section in offending:
                assert name in message and section in message, f"{name} ({section}) not named in {message!r}"
            for name, value in MODEL.state_dict().items():
                np.testing.assert_array_equal(value, before[name], err_msg=f"{name} changed by a refused load")
            return
        assert sorted(result.unexpected_keys) == sorted(extra if not strict else [])
        for name, value in MODEL.state_dict().items():
            given_value = sd.get(name, sd.get(TIED[1] if name == TIED[0] else TIED[0]) if name in TIED else None)
            if given_value is None:
                np.testing.assert_array_equal(value, before[name])  # missing under strict=False: kept
            else:
                expected = np.asarray(given_value.data if isinstance(given_value, Tensor) else given_value, np.float32)
                np.testing.assert_array_equal(value, expected, err_msg=name)
        assert MODEL.lm_head.weight is MODEL.transformer.wte.weight
    finally:
        MODEL.load_state_dict(GOOD)


def _last_error(call: Callable[[], Any]) -> str:
    try:
        call()
    except ALLOWED as error:
        return str(error)
    raise AssertionError("expected an error")


@given(sd=st.sampled_from([None, [("a", 1)], "weights.npz", 3, Tensor(1.0)]))
def test_load_state_dict_needs_a_mapping(sd: Any) -> None:
    outcome(lambda: MODEL.load_state_dict(sd), ["load_state_dict: expected a mapping"])


# ---------------------------------------------------------------------------------------------------
# generate
# ---------------------------------------------------------------------------------------------------


def generate_problems(max_new_tokens: Any, temperature: Any, top_k: Any) -> list[str]:
    problems = []
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
        problems.append("generate: max_new_tokens must be a non-negative int")
    if not temperature >= 0.0:
        problems.append("generate: temperature must be >= 0")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1):
        problems.append("generate: top_k must be None or an int >= 1")
    return problems


@given(
    prompt=id_arrays(shape=st.tuples(st.integers(1, 2), st.integers(1, BLOCK + 2)), low=0, high=V - 1),
    max_new_tokens=st.sampled_from([0, 1, 3, np.int64(2), -1, 1.5, True, "2", None]),
    temperature=st.sampled_from([0.0, 0.5, 1.0, 3.0, np.float32(0.7), math.inf, -1.0, -1e-9, math.nan]),
    top_k=st.sampled_from([None, 1, 2, V, V + 5, np.int64(3), 0, -1, 1.5, True]),
    seed=st.sampled_from([0, 1, np.int64(5), None]),
)
def test_generate(prompt: np.ndarray, max_new_tokens: Any, temperature: Any, top_k: Any, seed: Any) -> None:
    problems = id_problems(prompt, "idx", max_length=None) + generate_problems(max_new_tokens, temperature, top_k)
    out = outcome(lambda: MODEL.generate(prompt, max_new_tokens, temperature, top_k, seed), problems)
    if out is None:
        return
    B, T = prompt.shape
    assert out.shape == (B, T + max_new_tokens) and out.dtype == np.int64
    np.testing.assert_array_equal(out[:, :T], prompt)
    assert ((out >= 0) & (out < V)).all()
    if max_new_tokens and (temperature == 0.0 or top_k == 1):  # greedy: the likeliest token after the context
        logits, _ = MODEL(prompt[:, -BLOCK:].astype(np.int64))
        np.testing.assert_array_equal(out[:, T], logits.data[:, -1].argmax(-1))


@pytest.mark.parametrize("temperature", ["hot", None])
def test_generate_names_a_temperature_that_is_not_a_number(temperature: Any) -> None:
    outcome(lambda: MODEL.generate(np.array([[1]]), 1, temperature=temperature), ["temperature"])


@pytest.mark.parametrize("seed", [-1, "a", 1.5])
def test_generate_names_a_bad_seed(seed: Any) -> None:
    outcome(lambda: MODEL.generate(np.array([[1]]), 1, seed=seed), ["seed"])
