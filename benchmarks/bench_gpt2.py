"""GPT-2 124M on this engine beside transformers on torch: loading, sampling, one fine-tuning step.

For the 124M shape (12 layers, 12 heads, width 768, context 1024, 50257 tokens; random weights of
that shape, written once with `save_pretrained`, since there is no network to fetch the real ones:
speed and memory do not depend on the values), each measured in a fresh process of its own, the
engine and torch alternating round by round (a shared machine drifts; medians over rounds):

- load: ``GPT.from_pretrained(dir)`` / ``GPT2LMHeadModel.from_pretrained(dir)``: seconds, and the
  process's peak resident memory;
- generate: greedy continuation of a 64-token prompt by 64 tokens with the key/value cache: tokens/s;
- train: one fine-tuning step at B=1, T=128 (forward, loss, backward, AdamW, zero grads): the median
  of steps 3.., seconds, and the process's peak resident memory (weights, gradients, AdamW's two
  moments, activations);
- tokenizer: our BPE's encoding speed in MB/s beside the ``tokenizers`` library's (a 16k-token BPE
  trained by that library on this repository's text; needs ``tokenizers``).

    python benchmarks/bench_gpt2.py --torch-python ../hf-venv/bin/python     # both sides, 3 rounds
    python benchmarks/bench_gpt2.py --rounds 5 --only load,generate          # fewer parts
    python benchmarks/bench_gpt2.py                                          # this engine only

``--torch-python``: a Python with torch and transformers (never this project's dependencies); the
torch side is skipped without it. ``--threads N`` (default 1): the BLAS and torch threads of both
sides. On a shared 2-core machine one thread each measures the code; with two, both sides' threads
wait on the other tenants (a step varied tenfold between rounds), and ``--threads 0`` keeps each
library's default.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE = dict(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)
PROMPT, NEW_TOKENS, TRAIN_T, TRAIN_STEPS = 64, 64, 128, 5


def sizes(folder: str) -> tuple[int, int, int, int]:
    """(vocabulary, prompt length, new tokens, training T) for the model in ``folder``: the figures
    above, or less for a model with a shorter context (the test suite runs this on its tiny fixture)."""
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    context = config["n_positions"]
    return config["vocab_size"], min(PROMPT, context // 2), min(NEW_TOKENS, context // 2), min(TRAIN_T, context)


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# ---------------------------------------------------------------------------------------------------
# Workers: one measurement in a fresh process, printed as one JSON line
# ---------------------------------------------------------------------------------------------------


def engine_worker(task: str, folder: str) -> dict:
    import numpy as np

    import autograd as ag
    from tinygrad_lm import GPT

    vocab, prompt_length, new_tokens, T = sizes(folder)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    model = GPT.from_pretrained(folder, dropout=0.0)
    result = {"load_s": time.perf_counter() - t0}
    if task == "generate":
        prompt = rng.integers(0, vocab, size=(1, prompt_length))
        t0 = time.perf_counter()
        model.generate(prompt, max_new_tokens=new_tokens, temperature=0.0)
        result["tokens_per_s"] = new_tokens / (time.perf_counter() - t0)
    if task == "train":
        model.compile()
        ag.memory.keep_freed_memory()  # as the Trainer does
        optimizer = model.configure_optimizers(0.1, 1e-4)
        idx = rng.integers(0, vocab, size=(1, T + 1))
        times = []
        for _ in range(TRAIN_STEPS):
            t0 = time.perf_counter()
            _, loss = model(idx[:, :-1], idx[:, 1:])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            times.append(time.perf_counter() - t0)
        result["step_s"] = statistics.median(times[2:])  # the first calls trace (model.compile)
    result["peak_mib"] = peak_mib()
    return result


def torch_worker(task: str, folder: str) -> dict:
    import torch
    from transformers import GPT2LMHeadModel

    vocab, prompt_length, new_tokens, T = sizes(folder)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = GPT2LMHeadModel.from_pretrained(folder)
    result = {"load_s": time.perf_counter() - t0}
    if task == "generate":
        model.eval()
        prompt = torch.randint(0, vocab, (1, prompt_length))
        with torch.no_grad():
            t0 = time.perf_counter()
            model.generate(prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                           use_cache=True, pad_token_id=0)  # fmt: skip
            result["tokens_per_s"] = new_tokens / (time.perf_counter() - t0)
    if task == "train":
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
        idx = torch.randint(0, vocab, (1, T))
        times = []
        for _ in range(TRAIN_STEPS):
            t0 = time.perf_counter()
            loss = model(idx, labels=idx).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            times.append(time.perf_counter() - t0)
        result["step_s"] = statistics.median(times[2:])
    result["peak_mib"] = peak_mib()
    return result


# ---------------------------------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------------------------------


def make_folder(folder: str) -> None:
    """A 124M-shaped GPT-2 (random weights) in Hugging Face's layout, written by our save_pretrained."""
    if os.path.isfile(os.path.join(folder, "model.safetensors")):
        return
    from tinygrad_lm import GPT, GPTConfig

    print(f"writing a random 124M GPT-2 to {folder} ...", flush=True)
    GPT(GPTConfig(**SHAPE, dropout=0.0), seed=0).save_pretrained(folder)


def run_worker(python: str, side: str, task: str, folder: str, threads: int) -> dict:
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if threads:  # numpy's BLAS and torch's intra-op pool both read these at start-up
        env.update(OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    command = [python, os.path.abspath(__file__), "--worker", side, "--task", task, "--folder", folder]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"{side} {task} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def tokenizer_speed() -> dict:
    """MB/s of our BPE and of the tokenizers library on this repository's text (ids checked equal)."""
    try:
        from tokenizers import ByteLevelBPETokenizer
        from tokenizers import Tokenizer as Library
    except ImportError:
        return {}
    from tinygrad_lm.tokenizer import Tokenizer

    text = ""
    for directory, _, files in sorted(os.walk(ROOT)):
        if any(part.startswith(".") for part in directory.split(os.sep)):
            continue
        for name in sorted(files):
            if name.endswith((".py", ".md", ".txt")):
                with open(os.path.join(directory, name), encoding="utf-8", errors="replace") as f:
                    text += f.read()
    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator([text], vocab_size=16000, min_frequency=2, special_tokens=["<|endoftext|>"])
    with tempfile.TemporaryDirectory() as folder:
        trainer.save(os.path.join(folder, "tokenizer.json"))
        ours, theirs = Tokenizer.from_pretrained(folder), Library.from_file(os.path.join(folder, "tokenizer.json"))
    megabytes = len(text.encode("utf-8")) / 1e6
    result = {"megabytes": megabytes}
    for name, encode in (("ours_cold", lambda: Tokenizer.from_dict(ours.to_dict()).encode(text)),
                         ("ours_warm", lambda: ours.encode(text)), ("tokenizers", lambda: theirs.encode(text).ids)):
        t0 = time.perf_counter()
        ids = encode()
        result[f"{name}_mb_per_s"] = megabytes / (time.perf_counter() - t0)
        result.setdefault("ids", ids)
        assert ids == result["ids"], f"{name} gave other ids"
    del result["ids"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--torch-python", help="a Python with torch + transformers (the torch side is skipped without)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="BLAS / torch threads per side (0: the defaults)")
    parser.add_argument("--only", default="load,generate,train,tokenizer")
    parser.add_argument("--folder", default=os.path.join(tempfile.gettempdir(), "gpt2-124m-random"),
                        help="the GPT-2 folder to measure (written first, random 124M, if it has no weights)")
    parser.add_argument("--worker", choices=["engine", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--task", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker = engine_worker if args.worker == "engine" else torch_worker
        print(json.dumps(worker(args.task, args.folder)))
        return
    sys.path.insert(0, ROOT)  # this checkout's tinygrad_lm, as the workers get through PYTHONPATH
    make_folder(args.folder)
    parts = args.only.split(",")
    sides = [("engine", sys.executable)] + ([("torch", args.torch_python)] if args.torch_python else [])
    results: dict[tuple[str, str], list[dict]] = {}
    for round_number in range(args.rounds):
        for task in [p for p in ("load", "generate", "train") if p in parts]:
            for side, python in sides if round_number % 2 == 0 else sides[::-1]:  # alternate who goes first
                measured = run_worker(python, side, task, args.folder, args.threads)
                results.setdefault((side, task), []).append(measured)
                shown = json.dumps({key: round(value, 3) for key, value in measured.items()})
                print(f"round {round_number + 1} {side:6s} {task:8s} {shown}", flush=True)
    _, prompt_length, new_tokens, T = sizes(args.folder)
    if not results:
        rows = []
    else:
        threads = f"{args.threads} thread(s) per side" if args.threads else "default threads"
        print(f"\nmedians over {args.rounds} rounds ({args.folder}; {os.cpu_count()} cores, {threads}):")
        rows = [("load", "load_s", "load: seconds"), ("load", "peak_mib", "load: peak memory, MiB"),
                ("generate", "tokens_per_s", f"generate {new_tokens} tokens after {prompt_length}, KV cache: tokens/s"),
                ("train", "step_s", f"train step B=1 T={T}: seconds"),
                ("train", "peak_mib", f"train step B=1 T={T}: peak memory, MiB")]  # fmt: skip
        print(f"| {'measure':55s} | {'engine':>9s} | {'torch':>9s} |\n|{'-' * 57}|{'-' * 10}:|{'-' * 10}:|")
    for task, key, label in rows:
        if task not in parts:
            continue
        cells = []
        for side, _ in sides:
            values = [m[key] for m in results.get((side, task), [])]
            cells.append(f"{statistics.median(values):9.2f}" if values else f"{'-':>9s}")
        cells += [f"{'-':>9s}"] * (2 - len(cells))
        print(f"| {label:55s} | {cells[0]} | {cells[1]} |")
    if "tokenizer" in parts:
        speed = tokenizer_speed()
        if speed:
            print(f"\ntokenizer on {speed['megabytes']:.2f} MB of this repository's text (16k-token BPE): ours "
                  f"{speed['ours_cold_mb_per_s']:.2f} MB/s with an empty cache, {speed['ours_warm_mb_per_s']:.2f} MB/s "
                  f"warm; tokenizers {speed['tokenizers_mb_per_s']:.2f} MB/s (same ids)")  # fmt: skip
        else:
            print("\ntokenizer: skipped (the tokenizers library is not installed)")


if __name__ == "__main__":
    main()
