"""Toy tasks: encodings, held-out splits, evaluation, and the grammar's entropy floor."""

import itertools
import math

import numpy as np
import pytest

from tinygrad_lm.tasks import (
    CAT_GRAMMAR,
    AddTask,
    CharTokenizer,
    Grammar,
    GrammarTask,
    ReverseTask,
    SortTask,
    TextTask,
    entropy_per_char,
    sentence_text,
)

TINY = Grammar(
    {
        "S": [(0.75, ["N", "V"]), (0.25, ["N", "V", "N"])],
        "N": [(0.5, ["ab"]), (0.3, ["c"]), (0.2, ["dd"])],
        "V": [(0.9, ["x"]), (0.1, ["yz"])],
    }
)


def brute_force_sentences(grammar: Grammar, symbol: str = "S") -> dict[str, float]:
    """Every sentence string with its total probability, by enumerating every derivation."""

    def expand(sym):
        if sym not in grammar.rules:
            yield 1.0, [sym]
            return
        for p, parts in grammar.rules[sym]:
            for combo in itertools.product(*(list(expand(part)) for part in parts)):
                yield p * math.prod(c[0] for c in combo), [w for c in combo for w in c[1]]

    out: dict[str, float] = {}
    for p, words in expand(symbol):
        out[sentence_text(words)] = out.get(sentence_text(words), 0.0) + p
    return out


def brute_force_rate(grammar: Grammar) -> float:
    sentences = brute_force_sentences(grammar)
    entropy = -sum(p * math.log(p) for p in sentences.values())
    return entropy / sum(p * len(s) for s, p in sentences.items())


def test_entropy_floor_matches_brute_force_on_a_tiny_grammar():
    assert math.isclose(entropy_per_char(TINY), brute_force_rate(TINY), rel_tol=1e-12)


def test_cat_grammar_is_unambiguous_so_its_floor_is_exact():
    sentences = brute_force_sentences(CAT_GRAMMAR)
    assert len(sentences) == 401_720  # as many distinct strings as derivations
    assert math.isclose(entropy_per_char(CAT_GRAMMAR), brute_force_rate(CAT_GRAMMAR), rel_tol=1e-9)
    assert 0.3 < GrammarTask().entropy_floor < 0.4


def test_grammar_samples_follow_its_probabilities():
    rng = np.random.default_rng(0)
    expected = brute_force_sentences(TINY)
    n = 20_000
    counts: dict[str, int] = {}
    for _ in range(n):
        text = sentence_text(TINY.sample(rng))
        counts[text] = counts.get(text, 0) + 1
    assert set(counts) <= set(expected)
    for text, p in expected.items():
        assert abs(counts.get(text, 0) / n - p) < 4 * math.sqrt(p * (1 - p) / n) + 1e-3


def test_grammar_rejects_probabilities_that_do_not_sum_to_one():
    with pytest.raises(ValueError, match="'S' sum to 0.9"):
        Grammar({"S": [(0.5, ["a"]), (0.4, ["b"])]})


def test_grammar_batches_start_at_sentence_starts_and_shift_by_one():
    task = GrammarTask(block_size=40)
    idx, targets = task.get_batch("train", 4, np.random.default_rng(1))
    assert idx.shape == targets.shape == (4, 40) and idx.dtype == np.int64
    np.testing.assert_array_equal(idx[:, 1:], targets[:, :-1])
    for row in idx:
        first_word = task.tokenizer.decode(row).split(" ")[0]
        assert first_word in ("the", "a")
    with pytest.raises(ValueError):
        task.tokenizer.encode("a cat!")


def test_tokenizer_round_trip_and_unknown_characters():
    tok = CharTokenizer.from_text("hello world")
    assert tok.decode(tok.encode("hello")) == "hello"
    assert CharTokenizer.from_dict(tok.to_dict()).chars == tok.chars
    with pytest.raises(ValueError, match=r"character\(s\) not in the vocabulary: 'Z', 'x'"):
        tok.encode("helloxZ")
    with pytest.raises(ValueError, match="empty"):
        CharTokenizer.from_text("")


def test_text_task_windows_and_split():
    text = "".join(f"line {i}\n" for i in range(200))
    task = TextTask(text, block_size=16)
    idx, targets = task.get_batch("val", 3, np.random.default_rng(0))
    assert idx.shape == (3, 16)
    np.testing.assert_array_equal(idx[:, 1:], targets[:, :-1])
    assert len(task.splits["val"]) >= len(text) // 10
    with pytest.raises(ValueError, match="too short"):
        TextTask("abc", block_size=16)


@pytest.mark.parametrize(
    "task, problem, answer, text",
    [
        (SortTask(length=6), [3, 1, 4, 1, 5, 9], [1, 1, 3, 4, 5, 9], "sort 314159 = 113459"),
        (ReverseTask(length=4), [1, 2, 3, 4], [4, 3, 2, 1], "reverse 1234 = 4321"),
        (AddTask(n_digits=2), [1, 2, 0, 9], [1, 2, 0], "12 + 09 = 021"),  # 21, least significant first
        (AddTask(n_digits=2), [9, 9, 9, 9], [8, 9, 1], "99 + 99 = 198"),
        (AddTask(n_digits=3), [5, 0, 0, 5, 0, 0], [0, 0, 0, 1], "500 + 500 = 1000"),
    ],
)
def test_exact_task_answers(task, problem, answer, text):
    np.testing.assert_array_equal(task.answers(np.array([problem]))[0], answer)
    assert task.describe(problem, answer) == text


@pytest.mark.parametrize("task", [SortTask(), ReverseTask(), AddTask(2), AddTask(3)])
def test_exact_task_batches_mask_the_problem_and_keep_held_out_problems_out(task):
    rng = np.random.default_rng(0)
    idx, targets = task.get_batch("train", 64, rng)
    assert idx.shape == (64, task.block_size) and idx.max() < task.vocab_size
    assert (targets[:, : task.n_in - 1] == -1).all() and (targets[:, task.n_in - 1 :] >= 0).all()
    full = np.concatenate([idx, targets[:, -1:]], axis=1)
    np.testing.assert_array_equal(full[:, task.n_in :], task.answers(full[:, : task.n_in]))
    assert not task.is_held_out(idx[:, : task.n_in]).any()
    test_problems = task.split_problems("test", 64, rng)
    assert task.is_held_out(test_problems).all()
    assert 0.05 < task.is_held_out(task.problems(20_000, rng)).mean() < 0.15


class Oracle:
    """A stand-in model whose greedy answers are right (or wrong, on request)."""

    def __init__(self, task, wrong=False):
        self.task, self.wrong = task, wrong

    def generate(self, idx, max_new_tokens, temperature, top_k, seed):
        answers = self.task.answers(idx)
        return np.concatenate([idx, (answers + 1) % 10 if self.wrong else answers], axis=1)


@pytest.mark.parametrize("task", [SortTask(), AddTask(2)])
def test_exact_match_accuracy(task):
    rng = np.random.default_rng(0)
    assert task.evaluate(Oracle(task), 300, rng) == 1.0
    assert task.evaluate(Oracle(task, wrong=True), 300, rng) == 0.0
