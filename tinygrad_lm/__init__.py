"""tinygrad_lm: a GPT (nanoGPT's layout and GPT-2's math) built only from the `autograd` engine's ops.

    from tinygrad_lm import GPT, GPTConfig
    model = GPT(GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128), seed=0)
    logits, loss = model(idx, targets)

Modules in `tinygrad_lm.nn`, the math in `tinygrad_lm.functional`, the model in
`tinygrad_lm.model`, sampling in `tinygrad_lm.generate`, optimizers in `tinygrad_lm.optim`,
checkpoints in `tinygrad_lm.checkpoint`.
"""

from tinygrad_lm.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tinygrad_lm.model import GPT, GPTConfig

__all__ = ["GPT", "CheckpointError", "GPTConfig", "load_checkpoint", "save_checkpoint"]
