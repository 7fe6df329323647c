"""GPT-2 from and to Hugging Face: the folders that ``transformers`` reads and writes.

A Hugging Face GPT-2 folder holds ``config.json`` (the shape and a few choices of the math) and
``model.safetensors`` (every weight, by name). `load_pretrained` turns one into a `GPT` with
nanoGPT's names; `save_pretrained` writes one that ``transformers`` loads as ``GPT2LMHeadModel``,
which is how a model trained here moves on to many GPUs (``transformers`` + ``accelerate``).

The two layouts differ in three ways, all handled here:

- **Conv1D.** GPT-2's original code (TensorFlow) stored each linear layer as ``x @ W + b`` with ``W``
  of shape (in, out); Hugging Face kept that (its ``Conv1D`` module). Our `Linear` is torch's and
  nanoGPT's, ``x @ W.T + b`` with ``W`` of shape (out, in). So the four projections of each block
  (``attn.c_attn``, ``attn.c_proj``, ``mlp.c_fc``, ``mlp.c_proj``) are transposed on the way in and
  on the way out. The embeddings, LayerNorms and biases are the same both ways.
- **Names.** The hub's own GPT-2 files name the weights from the transformer down (``h.0.ln_1.weight``);
  files that ``GPT2LMHeadModel.save_pretrained`` writes put ``transformer.`` in front. Both are read.
  ``attn.bias`` and ``attn.masked_bias`` in older files are not weights but the causal mask, stored
  as a buffer: they are skipped (our attention builds its mask).
- **Tied unembedding.** ``lm_head.weight`` is the token embedding itself. Files usually leave it out;
  when it is there it must equal ``wte.weight``, else the model is not one our GPT can represent.

Everything is validated (config, every tensor's name, shape and dtype, missing and unexpected
tensors, from the files' headers) before a model is built: a bad folder raises `PretrainedError` in
one line that names the problem, and nothing is half-loaded. The weights are then read one tensor at
a time straight into the new model, so loading needs little more memory than the model itself.

Weights are read only from safetensors (a header of JSON and raw little-endian arrays):
``pytorch_model.bin`` is a pickle, which can run any code when loaded, so it is refused, never
opened, with the command that converts it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from tinygrad_lm.model import GPTConfig
from tinygrad_lm.nn import skip_init

if TYPE_CHECKING:
    from tinygrad_lm.model import GPT

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
SHARDED_INDEX_NAME = "model.safetensors.index.json"
PICKLED_NAMES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.ckpt", "model.pt", "model.pth")
OTHER_FORMATS = ("tf_model.h5", "flax_model.msgpack", "model.ckpt.index")

# The four projections per block that GPT-2 stores as Conv1D, (in, out): transposed relative to ours.
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# Dtypes a tensor may have in the file; each is converted to the model's float32.
READABLE_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64}
# The tanh approximation of GELU (ours) under the names transformers gives it.
TANH_GELU = ("gelu_new", "gelu_pytorch_tanh")

# What GPT2Config (transformers 5) writes for a model made here, besides the fields of our config.
DEFAULT_HF_CONFIG: dict[str, Any] = {
    "activation_function": "gelu_new",
    "add_cross_attention": False,
    "architectures": ["GPT2LMHeadModel"],
    "bos_token_id": 50256,
    "eos_token_id": 50256,
    "initializer_range": 0.02,
    "layer_norm_epsilon": 1e-05,
    "model_type": "gpt2",
    "n_inner": None,
    "pad_token_id": None,
    "reorder_and_upcast_attn": False,
    "scale_attn_by_inverse_layer_idx": False,
    "scale_attn_weights": True,
    "summary_activation": None,
    "summary_first_dropout": 0.1,
    "summary_proj_to_labels": True,
    "summary_type": "cls_index",
    "summary_use_proj": True,
    "tie_word_embeddings": True,
    "use_cache": True,
}


class PretrainedError(ValueError):
    """A Hugging Face folder that cannot become a `GPT` (or cannot be written): missing or pickled
    weights, a config this GPT cannot represent, tensors missing, unexpected or of the wrong shape."""


# ---------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------


def load_pretrained(path: str | os.PathLike, *, dropout: float | None = None, seed: int = 0) -> GPT:
    """The GPT-2 in the Hugging Face folder ``path`` as a `GPT` with nanoGPT's names, in float32.

    ``dropout``: the rate to train with; by default the config's (``resid_pdrop``, ``embd_pdrop``
    and ``attn_pdrop``, which must then agree: this GPT has one rate). Sampling never drops out.
    ``seed`` seeds the model's dropout stream (the weights are the file's). The config as read is
    kept on the model (``model.hf_config``) so that `save_pretrained` writes it back with only what
    changed.
    """
    from tinygrad_lm.model import GPT

    path = os.fspath(path)
    raw_config = read_config(path)
    config = config_from_hf(raw_config, path, dropout)
    layout = read_layout(weight_files(path), config, path)  # every name, shape and dtype checked here
    with skip_init():  # no random weights drawn: each is about to be overwritten
        model = GPT(config, seed=seed)
    copy_weights(layout, model)
    model.hf_config = raw_config
    return model


def read_config(path: str) -> dict[str, Any]:
    """``path/config.json`` as a dict, or a `PretrainedError` saying what is wrong with the folder or the file."""
    if not os.path.exists(path):
        raise PretrainedError(f"from_pretrained: {path}: no such folder")
    if not os.path.isdir(path):
        raise PretrainedError(f"from_pretrained: {path} is a file; give the folder that holds config.json")
    file = os.path.join(path, CONFIG_NAME)
    try:
        with open(file, encoding="utf-8") as f:
            config = json.load(f)
    except FileNotFoundError:
        raise PretrainedError(f"from_pretrained: {path} has no {CONFIG_NAME}; is it a Hugging Face folder?") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PretrainedError(f"from_pretrained: cannot read {file} ({error})") from None
    if not isinstance(config, dict):
        raise PretrainedError(f"from_pretrained: {file} is not a JSON object")
    return config


def config_from_hf(hf: Mapping[str, Any], path: str, dropout: float | None = None) -> GPTConfig:
    """Our `GPTConfig` for a Hugging Face GPT-2 config, refusing (naming the field) what our GPT
    computes differently: another model type or activation, another LayerNorm epsilon, an MLP not
    4x wide, attention not scaled by ``1/sqrt(head_size)`` or scaled per layer, cross-attention,
    an untied unembedding."""
    where = f"from_pretrained: {os.path.join(path, CONFIG_NAME)}"

    def refuse(field: str, why: str) -> PretrainedError:
        return PretrainedError(f"{where}: {field} is {hf.get(field)!r}; {why}")

    if hf.get("model_type", "gpt2") != "gpt2":
        raise refuse("model_type", "only GPT-2 ('gpt2') has the architecture of this GPT")
    sizes = {}
    for field in ("vocab_size", "n_positions", "n_layer", "n_head", "n_embd"):
        value = hf.get(field)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise PretrainedError(f"{where}: {field} is {value!r}, not a positive integer" if field in hf
                                  else f"{where}: {field} is missing")  # fmt: skip
        sizes[field] = value
    if sizes["n_embd"] % sizes["n_head"]:
        raise refuse("n_embd", f"it must be divisible by n_head={sizes['n_head']} (each head gets n_embd / n_head)")
    if hf.get("activation_function", "gelu_new") not in TANH_GELU:
        raise refuse("activation_function", f"this GPT computes GELU's tanh approximation ({' or '.join(TANH_GELU)})")
    epsilon = hf.get("layer_norm_epsilon", 1e-5)
    if not isinstance(epsilon, (int, float)) or not math.isclose(epsilon, 1e-5, rel_tol=1e-6):
        raise refuse("layer_norm_epsilon", "this GPT's LayerNorm uses 1e-05, as GPT-2's")
    if hf.get("n_inner") not in (None, 4 * sizes["n_embd"]):
        raise refuse("n_inner", f"this GPT's MLP is 4 * n_embd = {4 * sizes['n_embd']} wide")
    for field, wanted, why in (
        ("scale_attn_weights", True, "this GPT scales attention scores by 1/sqrt(head size)"),
        ("scale_attn_by_inverse_layer_idx", False, "this GPT scales attention the same in every layer"),
        ("add_cross_attention", False, "this GPT has no cross-attention (it is a decoder only)"),
        ("tie_word_embeddings", True, "this GPT's unembedding is its token embedding (tied)"),
    ):
        if hf.get(field, wanted) != wanted:
            raise refuse(field, why)
    # reorder_and_upcast_attn only changes where fp16 training rounds: the same math in float32.
    if dropout is None:
        rates = {field: hf.get(field, 0.1) for field in ("resid_pdrop", "embd_pdrop", "attn_pdrop")}
        if len(set(rates.values())) != 1:
            shown = ", ".join(f"{k}={v}" for k, v in rates.items())
            raise PretrainedError(f"{where}: {shown} differ; this GPT has one dropout rate: pass dropout=")
        dropout = next(iter(rates.values()))
    try:
        return GPTConfig(vocab_size=sizes["vocab_size"], block_size=sizes["n_positions"], n_layer=sizes["n_layer"],
                         n_head=sizes["n_head"], n_embd=sizes["n_embd"], dropout=dropout, bias=True)  # fmt: skip
    except (TypeError, ValueError) as error:
        raise PretrainedError(f"{where}: {error}") from None


def weight_files(path: str) -> list[str]:
    """The safetensors files that hold the weights: ``model.safetensors``, or the shards listed in
    ``model.safetensors.index.json``. A folder with only pickled (or TensorFlow, Flax) weights is refused."""
    single, index = os.path.join(path, WEIGHTS_NAME), os.path.join(path, SHARDED_INDEX_NAME)
    if os.path.isfile(single):
        return [single]
    if os.path.isfile(index):
        try:
            with open(index, encoding="utf-8") as f:
                weight_map = json.load(f)["weight_map"]
            shards = sorted(set(weight_map.values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise PretrainedError(f"from_pretrained: cannot read {index} ({type(error).__name__}: {error})") from None
        if not all(isinstance(s, str) and os.path.basename(s) == s for s in shards):
            raise PretrainedError(f"from_pretrained: {index} names shards outside its folder")
        return [os.path.join(path, shard) for shard in shards]
    pickled = [name for name in PICKLED_NAMES if os.path.exists(os.path.join(path, name))]
    if pickled:
        raise PretrainedError(
            f"from_pretrained: refusing {os.path.join(path, pickled[0])}: it is a pickle (torch.save), and loading a "
            "pickle can run any code in it, so it is never opened here; get model.safetensors instead (the hub's gpt2 "
            "folders have it: hf download gpt2 model.safetensors config.json), or convert it where you trust the file: "
            f"python -c \"from transformers import GPT2LMHeadModel; GPT2LMHeadModel.from_pretrained('{path}')"
            f".save_pretrained('{path}')\""
        )
    other = [name for name in OTHER_FORMATS if os.path.exists(os.path.join(path, name))]
    found = f" (found {', '.join(other)}, which this loader does not read)" if other else ""
    raise PretrainedError(f"from_pretrained: {path} has no {WEIGHTS_NAME}{found}")


def hf_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    """Every weight of a Hugging Face GPT-2 of this config, by its name without ``transformer.``, and
    its shape as stored there (Conv1D weights (in, out))."""
    C, V = config.n_embd, config.vocab_size
    shapes: dict[str, tuple[int, ...]] = {"wte.weight": (V, C), "wpe.weight": (config.block_size, C)}
    for i in range(config.n_layer):
        block = {
            "ln_1.weight": (C,), "ln_1.bias": (C,),
            "attn.c_attn.weight": (C, 3 * C), "attn.c_attn.bias": (3 * C,),
            "attn.c_proj.weight": (C, C), "attn.c_proj.bias": (C,),
            "ln_2.weight": (C,), "ln_2.bias": (C,),
            "mlp.c_fc.weight": (C, 4 * C), "mlp.c_fc.bias": (4 * C,),
            "mlp.c_proj.weight": (4 * C, C), "mlp.c_proj.bias": (C,),
        }  # fmt: skip
        shapes.update({f"h.{i}.{name}": shape for name, shape in block.items()})
    shapes.update({"ln_f.weight": (C,), "ln_f.bias": (C,)})
    return shapes


_MASK_BUFFER = re.compile(r"h\.\d+\.attn\.(bias|masked_bias)")


Layout = dict[str, tuple[str, str]]  # our short name (``h.0.ln_1.weight``) -> (file, key in it)


def read_layout(files: list[str], config: GPTConfig, path: str) -> Layout:
    """Where each weight is in ``files``, every name, shape and dtype checked against ``config`` from
    the files' headers alone (no tensor is read), every problem named in one line. An ``lm_head.weight``
    in the file is read and compared with ``wte.weight``: it must be the same matrix (tied)."""
    from safetensors import SafetensorError, safe_open

    expected = hf_shapes(config)
    found: dict[str, tuple[str, str, tuple[int, ...], str]] = {}  # short name -> (file, key, shape, dtype)
    problems: list[str] = []
    try:
        for file in files:
            if not os.path.isfile(file):
                raise PretrainedError(f"from_pretrained: {file}: no such file (the index names it)")
            with safe_open(file, framework="np") as f:
                for key in f.keys():  # noqa: SIM118 (a safetensors handle is not a dict)
                    piece = f.get_slice(key)
                    name = key.removeprefix("transformer.")
                    if _MASK_BUFFER.fullmatch(name):
                        continue  # the causal mask, stored as a buffer by older versions: not a weight
                    if name in found:
                        problems.append(f"{key} is in the file twice (with and without 'transformer.')")
                    found[name] = (file, key, tuple(piece.get_shape()), piece.get_dtype())
    except (SafetensorError, OSError) as error:
        raise PretrainedError(f"from_pretrained: cannot read the weights in {path} ({error})") from None
    missing = [name for name in expected if name not in found]
    unexpected = [found[name][1] for name in found if name not in expected and name != "lm_head.weight"]
    wanted = {**expected, "lm_head.weight": expected["wte.weight"]}
    for name, (_, key, shape, dtype) in found.items():
        if name in wanted and shape != wanted[name]:
            problems.append(f"{key} has shape {shape}, config.json says {wanted[name]}")
        if dtype not in READABLE_DTYPES:
            problems.append(f"{key} has dtype {dtype} (readable: {', '.join(READABLE_DTYPES)}; convert it to F32)")
    if missing:
        problems.insert(0, f"missing {len(missing)} tensors: {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors (not GPT-2's): {_few(unexpected)}")
    if problems:
        raise PretrainedError(f"from_pretrained: the weights in {path} do not fit its config: {'; '.join(problems)}")
    layout = {name: (file, key) for name, (file, key, _, _) in found.items()}
    if "lm_head.weight" in layout:
        head, embedding = _read(*layout.pop("lm_head.weight")), _read(*layout["wte.weight"])
        if not np.array_equal(head, embedding):
            raise PretrainedError(
                f"from_pretrained: {path}: lm_head.weight differs from wte.weight; this GPT's unembedding is its "
                "token embedding (tied), so an untied output layer cannot be represented"
            )
    return layout


def copy_weights(layout: Layout, model: GPT) -> None:
    """Read each weight of ``layout`` into ``model`` (a new one), one tensor at a time, so that at most
    one tensor is held besides the model; Conv1D weights are transposed on the way (and converted to
    the model's float32)."""
    from safetensors import safe_open

    parameters = dict(model.named_parameters())
    by_file: dict[str, list[tuple[str, str]]] = {}
    for name, (file, key) in layout.items():
        by_file.setdefault(file, []).append((name, key))
    for file, names in by_file.items():
        with safe_open(file, framework="np") as f:
            for name, key in names:
                array = f.get_tensor(key)
                target = parameters[f"transformer.{name}"].data
                np.copyto(target, array.T if name.endswith(CONV1D) else array, casting="unsafe")


def _read(file: str, key: str) -> np.ndarray:
    from safetensors import safe_open

    with safe_open(file, framework="np") as f:
        return f.get_tensor(key)


def _few(names: list[str], count: int = 4) -> str:
    shown = ", ".join(names[:count])
    return shown + (f" and {len(names) - count} more" if len(names) > count else "")


# ---------------------------------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------------------------------


def save_pretrained(model: GPT, path: str | os.PathLike) -> str:
    """Write ``model`` into the folder ``path`` (created if needed) as ``config.json`` +
    ``model.safetensors``, the layout ``GPT2LMHeadModel.save_pretrained`` writes: names with
    ``transformer.``, Conv1D weights (in, out), no ``lm_head.weight`` (tied). Returns ``path``.

    The config is the one the model was loaded with (``model.hf_config``) with our fields written
    over it, or GPT-2's defaults for a model made here. A model without biases is written with zero
    biases (the same function: GPT-2 always has them). Each file is written under a temporary name
    and renamed into place; the weights are renamed first, so a crash between the two renames can
    leave new weights beside an old config, which `load_pretrained` then refuses whole if they
    disagree.
    """
    from safetensors.numpy import save_file

    from tinygrad_lm.model import GPT

    if not isinstance(model, GPT):
        raise TypeError(f"save_pretrained: expected a GPT, got {type(model).__name__}")
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise PretrainedError(f"save_pretrained: {path} is a file; give a folder")
    tensors = hf_state_dict(model)
    dtypes = {array.dtype for array in tensors.values()}
    config = hf_config(model, dtype=str(dtypes.pop()) if len(dtypes) == 1 else "float32")
    os.makedirs(path, exist_ok=True)
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    _write_atomically(os.path.join(path, WEIGHTS_NAME), lambda f: save_file(tensors, f, metadata={"format": "pt"}))
    _write_atomically(os.path.join(path, CONFIG_NAME), lambda f: _write_text(f, text))
    return path


def hf_state_dict(model: GPT) -> dict[str, np.ndarray]:
    """``model``'s weights under Hugging Face's names and layout, each a C-contiguous array (the
    ``safetensors`` writer copies an array's memory as it lies: a transposed view would be scrambled)."""
    state = model.state_dict()
    out = {}
    for name, shape in hf_shapes(model.config).items():
        array = state.get(f"transformer.{name}")
        if array is None:  # a model without biases: GPT-2 always has them, and zeros change nothing
            array = np.zeros(shape, dtype=state["transformer.wte.weight"].dtype)
        out[f"transformer.{name}"] = _contiguous(array.T if name.endswith(CONV1D) else array)
    return out


def hf_config(model: GPT, dtype: str = "float32") -> dict[str, Any]:
    """The ``config.json`` for ``model``: the one it was loaded with, or GPT-2's defaults, with our
    config's fields written over it."""
    c = model.config
    base = dict(getattr(model, "hf_config", None) or DEFAULT_HF_CONFIG)
    base.update(
        vocab_size=c.vocab_size, n_positions=c.block_size, n_layer=c.n_layer, n_head=c.n_head, n_embd=c.n_embd,
        resid_pdrop=c.dropout, embd_pdrop=c.dropout, attn_pdrop=c.dropout, model_type="gpt2", dtype=dtype,
    )  # fmt: skip
    if "n_ctx" in base:  # older configs repeat the context length under this name
        base["n_ctx"] = c.block_size
    base.setdefault("architectures", ["GPT2LMHeadModel"])
    return base


def _contiguous(array: np.ndarray) -> np.ndarray:
    """``array`` in C order, copied only if it is not already; a 0-d array stays 0-d (numpy's
    ``ascontiguousarray`` would make it 1-d)."""
    return array if array.flags.c_contiguous else np.array(array, order="C")


def _write_text(file: str, text: str) -> None:
    with open(file, "w", encoding="utf-8") as f:
        f.write(text)


def _write_atomically(path: str, write: Callable[[str], None]) -> None:
    """``write(temporary)`` then rename it over ``path``: readers see the old file or the new one,
    never a torn one. The temporary name is unique, in the same folder (a rename across filesystems
    is not atomic), and removed if anything fails."""
    directory, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")
    try:
        write(temporary)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # as an ordinary new file (the safetensors writer makes it 0600)
        with open(temporary, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
