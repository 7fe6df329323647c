"""Toy tasks to train a GPT on: text to model character by character, and algorithms with exact answers.

Every task gives batches ``(idx, targets)`` of shape ``(B, T)`` (targets of -1 are not scored),
drawn from a generator the caller passes, so a run's data order is a function of its seed and
step alone. Tasks with exact answers (`SortTask`, `ReverseTask`, `AddTask`) score a model by
exact-match accuracy of its greedy answers on held-out problems, as in minGPT's adder project.
"""

from __future__ import annotations

import bisect
import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# ---------------------------------------------------------------------------------------------------
# Characters <-> token ids
# ---------------------------------------------------------------------------------------------------


class CharTokenizer:
    """Characters to ids and back; the vocabulary is the sorted set of characters seen in the data."""

    def __init__(self, chars: Sequence[str]) -> None:
        self.chars = list(chars)
        if len(set(self.chars)) != len(self.chars) or any(len(c) != 1 for c in self.chars):
            raise ValueError("CharTokenizer: the vocabulary must be distinct single characters")
        self.index = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        if not text:
            raise ValueError("CharTokenizer: cannot build a vocabulary from empty text")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        unknown = sorted(set(text) - self.index.keys())
        if unknown:
            shown = ", ".join(repr(c) for c in unknown[:10])
            raise ValueError(
                f"encode: {len(unknown)} character(s) not in the vocabulary: {shown}; "
                f"the model knows only {''.join(self.chars)!r}"
            )
        return np.array([self.index[c] for c in text], dtype=np.int64)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def to_dict(self) -> dict[str, Any]:
        return {"chars": "".join(self.chars)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CharTokenizer:
        return cls(list(d["chars"]))


def tokenizer_from_dict(d: dict[str, Any]) -> Any:
    """The tokenizer a run saved with ``to_dict``: GPT-2's BPE (``kind: bpe``) or characters."""
    if isinstance(d, dict) and d.get("kind") == "bpe":
        from tinygrad_lm.tokenizer import Tokenizer

        return Tokenizer.from_dict(d)
    return CharTokenizer.from_dict(d)


# ---------------------------------------------------------------------------------------------------
# Character-level language models
# ---------------------------------------------------------------------------------------------------


class TextTask:
    """Predict the next token of a text (for example a file passed with ``--text``).

    The tokens are characters (`CharTokenizer`, built from the text) unless another tokenizer is
    given: anything with ``encode(text)``, ``decode(ids)`` and ``vocab_size``, such as GPT-2's
    byte-level BPE (`tinygrad_lm.tokenizer.Tokenizer`) for fine-tuning GPT-2. The text is split 90/10
    into train and validation parts; a batch is ``B`` random windows of ``block_size + 1`` tokens,
    inputs the first ``block_size`` and targets the last.
    """

    name = "text"
    exact = False
    entropy_floor: float | None = None

    def __init__(self, text: str, block_size: int = 64, tokenizer: Any = None) -> None:
        self.tokenizer = tokenizer or CharTokenizer.from_text(text)
        data = np.asarray(self.tokenizer.encode(text), dtype=np.int64)
        if len(data) < 2 * (block_size + 1):
            unit = "characters" if isinstance(self.tokenizer, CharTokenizer) else "tokens"
            raise ValueError(f"text: {len(data)} {unit} is too short for windows of block_size={block_size}")
        n_val = max(block_size + 1, len(data) // 10)
        self.splits = {"train": data[:-n_val], "val": data[-n_val:]}
        self.block_size = block_size

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def get_batch(self, split: str, batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        data = self.splits[split]
        starts = rng.integers(0, len(data) - self.block_size, size=batch_size)
        windows = data[starts[:, None] + np.arange(self.block_size + 1)]
        return windows[:, :-1], windows[:, 1:]

    def prompt(self, rng: np.random.Generator, length: int = 8) -> np.ndarray:
        """A short piece of validation text to continue when sampling."""
        data = self.splits["val"]
        start = int(rng.integers(0, len(data) - length))
        return data[start : start + length]


@dataclass
class Grammar:
    """A probabilistic grammar without recursion: each symbol expands to one of its alternatives.

    ``rules[symbol] = [(probability, [symbols or words...]), ...]``; strings not in ``rules`` are
    words (terminals). A sentence is its words joined by spaces, then ".\n".
    """

    rules: dict[str, list[tuple[float, list[str]]]]
    start: str = "S"

    def __post_init__(self) -> None:
        for symbol, alternatives in self.rules.items():
            total = sum(p for p, _ in alternatives)
            if not math.isclose(total, 1.0, abs_tol=1e-9):
                raise ValueError(f"Grammar: probabilities for {symbol!r} sum to {total}, not 1")
        self._cumulative = {s: list(itertools.accumulate(p for p, _ in alts)) for s, alts in self.rules.items()}

    def sample(self, rng: np.random.Generator, symbol: str | None = None) -> list[str]:
        """The words of one random derivation of ``symbol`` (the start symbol by default)."""
        symbol = symbol or self.start
        if symbol not in self.rules:
            return [symbol]
        alternatives = self.rules[symbol]
        k = min(bisect.bisect_right(self._cumulative[symbol], rng.random()), len(alternatives) - 1)
        return [w for part in alternatives[k][1] for w in self.sample(rng, part)]

    def entropy(self, symbol: str | None = None) -> float:
        """H(derivation of ``symbol``) in nats: the choice made at ``symbol`` plus, on average, the
        choices made inside the parts of the chosen alternative,
        ``H(X) = -sum_k p_k log p_k + sum_k p_k sum_{Y in alternative k} H(Y)``."""
        symbol = symbol or self.start
        if symbol not in self.rules:
            return 0.0
        return sum(p * (-math.log(p) + sum(self.entropy(y) for y in parts)) for p, parts in self.rules[symbol] if p > 0)

    def expected_words_and_letters(self, symbol: str | None = None) -> tuple[float, float]:
        """E[number of words] and E[number of letters] of a derivation of ``symbol``."""
        symbol = symbol or self.start
        if symbol not in self.rules:
            return 1.0, float(len(symbol))
        words = letters = 0.0
        for p, parts in self.rules[symbol]:
            for y in parts:
                w, c = self.expected_words_and_letters(y)
                words, letters = words + p * w, letters + p * c
        return words, letters


def sentence_text(words: Sequence[str]) -> str:
    """Words joined by spaces, ending with a full stop and a newline: ``a cat sat on the mat.\n``."""
    return " ".join(words) + ".\n"


def entropy_per_char(grammar: Grammar) -> float:
    """The entropy rate, in nats per character, of a stream of independent sentences.

    A stream of i.i.d. sentences, each ending with the unique marker ".\n", has entropy rate
    ``H(sentence) / E[length]``: no model can predict the next character of such a stream better
    on average, so this is the floor of the loss. For an unambiguous grammar (each sentence has one
    derivation, as `CAT_GRAMMAR`: checked by enumeration in the tests) ``H(sentence)`` is the
    entropy of the derivation, and ``E[length] = E[letters] + E[words] - 1 + 2`` (spaces, ".\n").
    """
    words, letters = grammar.expected_words_and_letters()
    return grammar.entropy() / (letters + words - 1 + 2)


def _uniform(*words: str) -> list[tuple[float, list[str]]]:
    return [(1.0 / len(words), [w]) for w in words]


CAT_GRAMMAR = Grammar(
    {
        "S": [(0.6, ["NP", "VP"]), (0.4, ["NP", "VP", "PP"])],
        "NP": [(0.7, ["Det", "N"]), (0.3, ["Det", "Adj", "N"])],
        "VP": [(0.5, ["V"]), (0.5, ["Vt", "NP"])],
        "PP": [(1.0, ["P", "NP"])],
        "Det": [(0.6, ["the"]), (0.4, ["a"])],
        "N": _uniform("cat", "dog", "mat", "bird", "hat"),
        "Adj": _uniform("big", "small", "red"),
        "V": _uniform("sat", "ran", "slept"),
        "Vt": _uniform("saw", "chased"),
        "P": _uniform("on", "under", "near"),
    }
)


def _words(grammar: Grammar) -> set[str]:
    return {w for alts in grammar.rules.values() for _, parts in alts for w in parts if w not in grammar.rules}


class GrammarTask:
    """Character-level modelling of sentences from a small probabilistic grammar ("a cat sat on a mat").

    The model never sees the grammar, only the characters; because the grammar is known, so is
    the best possible loss (`entropy_floor`, nats per character), printed next to the model's.
    Every window starts at the beginning of a sentence, so with enough context a perfect model
    reaches exactly the floor. Held-out ("val") text is simply fresh samples.
    """

    name = "grammar"
    exact = False

    def __init__(self, grammar: Grammar = CAT_GRAMMAR, block_size: int = 64) -> None:
        self.grammar = grammar
        self.block_size = block_size
        self.tokenizer = CharTokenizer.from_text(sentence_text(sorted(_words(grammar))))
        self.entropy_floor = entropy_per_char(grammar)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def get_batch(self, split: str, batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Windows of block_size + 1 characters, each starting at the start of a sentence."""
        windows = np.empty((batch_size, self.block_size + 1), dtype=np.int64)
        for row in range(batch_size):
            text = ""
            while len(text) < self.block_size + 1:
                text += sentence_text(self.grammar.sample(rng))
            windows[row] = self.tokenizer.encode(text[: self.block_size + 1])
        return windows[:, :-1], windows[:, 1:]

    def prompt(self, rng: np.random.Generator, length: int = 0) -> np.ndarray:
        """Sampling starts from the first word of a sentence."""
        return self.tokenizer.encode(self.grammar.sample(rng)[0] + " ")


# ---------------------------------------------------------------------------------------------------
# Algorithmic tasks with exact answers
# ---------------------------------------------------------------------------------------------------


class ExactTask(ABC):
    """A problem is ``n_in`` digit tokens; its answer is ``n_out`` digit tokens.

    A training sequence is ``problem + answer`` without its last token (the model reads it left
    to right), and the targets are the next tokens with the problem's part set to -1, so only
    the answer is learned. A problem is held out for evaluation when a hash of it says so, so
    train and test never share one.
    """

    name = "exact"
    exact = True
    entropy_floor: float | None = None
    vocab_size = 10  # the digits 0-9
    n_in: int
    n_out: int

    def __init__(self, held_out_fraction: float = 0.1) -> None:
        self.held_out_fraction = held_out_fraction
        self.block_size = self.n_in + self.n_out - 1

    def problems(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` random problems, shape (count, n_in): uniformly random digits."""
        return rng.integers(0, 10, size=(count, self.n_in))

    @abstractmethod
    def answers(self, problems: np.ndarray) -> np.ndarray:
        """The exact answers, shape (count, n_out)."""

    @abstractmethod
    def describe(self, problem: Sequence[int], answer: Sequence[int]) -> str:
        """One problem and an answer as a human reads them."""

    def is_held_out(self, problems: np.ndarray) -> np.ndarray:
        """A fixed pseudo-random split of the problem space (a hash of the digits)."""
        weights = np.array([1_000_003**k % 2_147_483_647 for k in range(problems.shape[1])], dtype=np.int64)
        hashed = (problems.astype(np.int64) * weights).sum(axis=1) * 2_654_435_761 % 2**32
        return hashed < self.held_out_fraction * 2**32

    def split_problems(self, split: str, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` random problems of the "train" split, or of the held-out one for any other split."""
        want_held_out = split != "train"
        out = np.empty((0, self.n_in), dtype=np.int64)
        while len(out) < count:
            candidates = self.problems(4 * count + 16, rng)
            out = np.concatenate([out, candidates[self.is_held_out(candidates) == want_held_out]])
        return out[:count]

    def get_batch(self, split: str, batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(idx, targets) of shape (B, n_in + n_out - 1); the problem's targets are -1 (not scored)."""
        problems = self.split_problems(split, batch_size, rng)
        sequences = np.concatenate([problems, self.answers(problems)], axis=1)
        idx, targets = sequences[:, :-1].copy(), sequences[:, 1:].copy()
        targets[:, : self.n_in - 1] = -1  # the problem itself is given, not predicted
        return idx, targets

    def evaluate(self, model: Any, n: int, rng: np.random.Generator, batch_size: int = 256) -> float:
        """Exact-match accuracy of greedy answers on ``n`` held-out problems."""
        problems = self.split_problems("test", n, rng)
        correct = 0
        for start in range(0, n, batch_size):
            chunk = problems[start : start + batch_size]
            predicted = greedy_answers(model, chunk, self.n_out)
            correct += int(np.all(predicted == self.answers(chunk), axis=1).sum())
        return correct / n


def greedy_answers(model: Any, problems: np.ndarray, n_out: int) -> np.ndarray:
    """Extend each problem by ``n_out`` tokens, taking the most likely token each time."""
    generated = model.generate(problems, max_new_tokens=n_out, temperature=1.0, top_k=1, seed=0)
    return np.asarray(generated)[:, problems.shape[1] :]


def _digits_to_int(digits: np.ndarray) -> np.ndarray:
    return (digits * 10 ** np.arange(digits.shape[1] - 1, -1, -1)).sum(axis=1)


class DigitListTask(ExactTask):
    """A list of ``length`` digits in, a list of ``length`` digits out."""

    def __init__(self, length: int = 6, held_out_fraction: float = 0.1) -> None:
        self.n_in = self.n_out = length
        super().__init__(held_out_fraction)

    def describe(self, problem: Sequence[int], answer: Sequence[int]) -> str:
        return f"{self.name} {''.join(map(str, problem))} = {''.join(map(str, answer))}"


class SortTask(DigitListTask):
    """Sort a list of digits: ``3 1 4 1 5 9`` -> ``1 1 3 4 5 9``.

    Encoding: the ``length`` digits of the list, then the same digits in ascending order.
    """

    name = "sort"

    def answers(self, problems: np.ndarray) -> np.ndarray:
        return np.sort(problems, axis=1)


class ReverseTask(DigitListTask):
    """Reverse a list of digits: ``1 2 3 4 5 6`` -> ``6 5 4 3 2 1``."""

    name = "reverse"

    def answers(self, problems: np.ndarray) -> np.ndarray:
        return problems[:, ::-1].copy()


class AddTask(ExactTask):
    """Add two n-digit numbers: ``12 + 09`` -> ``021``.

    Encoding (minGPT's adder): the digits of ``a`` and of ``b`` (zero-padded to n digits), then the
    ``n + 1`` digits of the sum *reversed* (least significant first), the order in which carries
    are computed by hand: ``1 2 0 9 -> 1 2 0`` means 12 + 09 = 021.
    """

    name = "add"

    def __init__(self, n_digits: int = 2, held_out_fraction: float = 0.1) -> None:
        self.n_digits = n_digits
        self.n_in, self.n_out = 2 * n_digits, n_digits + 1
        super().__init__(held_out_fraction)

    def answers(self, problems: np.ndarray) -> np.ndarray:
        a = _digits_to_int(problems[:, : self.n_digits])
        b = _digits_to_int(problems[:, self.n_digits :])
        total = a + b
        return np.stack([(total // 10**k) % 10 for k in range(self.n_out)], axis=1)  # least significant first

    def describe(self, problem: Sequence[int], answer: Sequence[int]) -> str:
        a = "".join(map(str, problem[: self.n_digits]))
        b = "".join(map(str, problem[self.n_digits :]))
        return f"{a} + {b} = {''.join(map(str, answer))[::-1]}"


TASKS: dict[str, Callable[..., Any]] = {
    "grammar": GrammarTask,
    "sort": SortTask,
    "reverse": ReverseTask,
    "add": AddTask,
}
