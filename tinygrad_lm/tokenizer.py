"""GPT-2's tokenizer: byte-level byte-pair encoding (BPE), written out to be read.

A GPT reads integers, so text must become ids. GPT-2 does it in three steps:

1. **Split the text into words** with one regular expression: contractions (``'s``, ``'ll``), runs of
   letters or of digits or of other symbols, each with at most one leading space, and runs of
   whitespace. No merge ever crosses a word's edge, so ``" dog"`` is always tokenized alike,
   wherever it appears.
2. **Bytes, not characters.** Each word becomes its UTF-8 bytes, and each of the 256 byte values has
   a token of its own, so every text can be encoded (emoji, any script, binary junk) with no
   "unknown" token. Each byte is shown as a printable character (`bytes_to_unicode`: a space is
   ``Ġ``, a newline ``Ċ``) so that the vocabulary can be stored as text.
3. **Merge pairs, most frequent first.** Training found, in order, which adjacent pair of symbols was
   most frequent in its corpus and merged it into a new symbol: ``merges.txt`` is that list.
   Encoding a word repeats: among its adjacent pairs, merge the one learned earliest (lowest rank),
   until no pair is in the list. The resulting symbols are looked up in ``vocab.json``.

Decoding is the way back: ids to symbols, symbols to bytes, bytes to UTF-8 text.

    tok = Tokenizer.from_pretrained("gpt2")   # a folder with tokenizer.json, or vocab.json + merges.txt
    ids = tok.encode("Hello world")           # [15496, 995]
    tok.decode(ids)                           # "Hello world"

This is the algorithm of OpenAI's ``encoder.py`` and of Hugging Face's ``tokenizers`` (GPT-2's
``ByteLevel`` pre-tokenizer and ``BPE`` model): the test suite checks the ids against that library,
id for id, on texts with every kind of character. Special tokens (``<|endoftext|>``) written in the
text are one id each, as in Hugging Face's tokenizer.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Iterable, Sequence
from typing import Any

import regex  # the `re` of the standard library has no \p{L} (letter) or \p{N} (number) classes

# GPT-2's word splitter (step 1), exactly as in OpenAI's encoder.py and Hugging Face's ByteLevel:
# contractions; an optional space then letters; or digits; or other symbols; whitespace not followed
# by a non-space (so the last space of a run stays for the next word: "a  b" -> "a", " ", " b"); whitespace.
WORD_PATTERN = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


class TokenizerError(ValueError):
    """A tokenizer's files are missing, malformed, or describe a tokenizer that is not GPT-2's kind."""


@functools.cache
def bytes_to_unicode() -> dict[int, str]:
    """Each byte value 0..255 as one printable character: GPT-2's trick to store byte tokens as text.

    The printable Latin-1 bytes stand for themselves (``a`` is ``a``); the other 68 (control
    characters, space, ...) are given the characters from U+0100 on, in order: a space (0x20) is
    ``Ġ`` (U+0120), a newline (0x0A) is ``Ċ`` (U+010A)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


class Tokenizer:
    """Byte-level BPE: ``vocab`` maps symbols (bytes as `bytes_to_unicode` characters) to ids,
    ``merges`` lists the learned pairs in the order they were learned, ``special_tokens`` maps texts
    that are one token each (``<|endoftext|>``) to their ids.

    ``add_prefix_space``: put a space before the text if it does not start with one (some models
    are tokenized so; GPT-2 is not)."""

    def __init__(
        self,
        vocab: dict[str, int],
        merges: Sequence[tuple[str, str]],
        special_tokens: dict[str, int] | None = None,
        add_prefix_space: bool = False,
    ) -> None:
        self.vocab = dict(vocab)
        self.special_tokens = dict(special_tokens or {})
        self.add_prefix_space = add_prefix_space
        self.ranks = {tuple(pair): rank for rank, pair in enumerate(merges)}  # (a, b) -> when it was learned
        self.id_to_token: dict[int, str] = {i: t for t, i in self.vocab.items()}
        self.id_to_token.update({i: t for t, i in self.special_tokens.items()})
        self.byte_of = {char: b for b, char in bytes_to_unicode().items()}
        self._check()
        # One split for all the special tokens, longest first (so one that begins another wins).
        ordered = sorted(self.special_tokens, key=len, reverse=True)
        self._special_pattern = regex.compile("(" + "|".join(map(regex.escape, ordered)) + ")") if ordered else None
        self._cache: dict[str, list[int]] = {}  # word -> ids: text repeats its words, so most are looked up once

    def _check(self) -> None:
        """Every byte needs a symbol, and every merge's pieces and result need ids: otherwise some
        text could not be encoded, found out only when it comes."""
        missing_bytes = [c for c in bytes_to_unicode().values() if c not in self.vocab]
        if missing_bytes:
            raise TokenizerError(
                f"tokenizer: the vocabulary has no symbol for {len(missing_bytes)} of the 256 bytes "
                f"(e.g. {missing_bytes[0]!r}); a byte-level BPE needs all of them"
            )
        for a, b in self.ranks:
            if a + b not in self.vocab:
                raise TokenizerError(f"tokenizer: the merge {a!r} + {b!r} makes {a + b!r}, not in the vocabulary")
        ids = list(self.vocab.values()) + list(self.special_tokens.values())
        if any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in ids):
            raise TokenizerError("tokenizer: ids must be non-negative integers")

    # -- loading -----------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> Tokenizer:
        """GPT-2's tokenizer from a Hugging Face folder: ``tokenizer.json`` if there is one (it holds the
        vocabulary, the merges and the special tokens), else ``vocab.json`` + ``merges.txt`` (GPT-2's
        original files; ``<|endoftext|>`` is then special if the vocabulary has it, as in
        `transformers`' GPT2Tokenizer). A tokenizer of another kind is refused, naming the field."""
        path = os.fspath(path)
        if not os.path.exists(path):
            raise TokenizerError(f"tokenizer: {path}: no such folder")
        if not os.path.isdir(path):
            raise TokenizerError(f"tokenizer: {path} is not a folder (give the folder that holds tokenizer.json)")
        if os.path.isfile(os.path.join(path, "tokenizer.json")):
            return cls.from_tokenizer_json(os.path.join(path, "tokenizer.json"))
        vocab_file, merges_file = os.path.join(path, "vocab.json"), os.path.join(path, "merges.txt")
        if os.path.isfile(vocab_file) and os.path.isfile(merges_file):
            return cls.from_vocab_and_merges(vocab_file, merges_file)
        raise TokenizerError(f"tokenizer: {path} has neither tokenizer.json nor vocab.json + merges.txt")

    @classmethod
    def from_vocab_and_merges(cls, vocab_file: str, merges_file: str) -> Tokenizer:
        """GPT-2's original pair of files: ``vocab.json`` (symbol -> id) and ``merges.txt`` (one
        ``a b`` pair per line, learned order, after a ``#version`` line)."""
        vocab = _read_json(vocab_file)
        if not isinstance(vocab, dict):
            raise TokenizerError(f"tokenizer: {vocab_file} is not a JSON object of symbol -> id")
        try:
            with open(merges_file, encoding="utf-8") as f:
                lines = f.read().split("\n")
        except (OSError, UnicodeDecodeError) as error:
            raise TokenizerError(f"tokenizer: cannot read {merges_file} ({error})") from None
        merges = []
        for number, line in enumerate(lines, 1):
            if not line or (number == 1 and line.startswith("#version")):
                continue
            parts = line.split(" ")
            if len(parts) != 2:
                raise TokenizerError(f"tokenizer: {merges_file} line {number} is not a pair 'a b': {line[:40]!r}")
            merges.append((parts[0], parts[1]))
        special = {"<|endoftext|>": vocab["<|endoftext|>"]} if "<|endoftext|>" in vocab else {}
        return cls(vocab, merges, special)

    @classmethod
    def from_tokenizer_json(cls, file: str) -> Tokenizer:
        """Hugging Face's one-file format, as written by ``tokenizers``: checked to be GPT-2's kind
        (a BPE model with the ByteLevel pre-tokenizer, no normalizer, no subword prefixes)."""
        document = _read_json(file)

        def refuse(field: str, value: Any, wanted: str) -> TokenizerError:
            return TokenizerError(
                f"tokenizer: {file} is not GPT-2's byte-level BPE: {field} is {value!r}, this tokenizer needs {wanted}"
            )

        if not isinstance(document, dict) or not isinstance(document.get("model"), dict):
            raise TokenizerError(f"tokenizer: {file} has no 'model' object; is it a tokenizer.json?")
        model = document["model"]
        if model.get("type") != "BPE":
            raise refuse("model.type", model.get("type"), "'BPE'")
        for field in ("dropout", "continuing_subword_prefix", "end_of_word_suffix"):
            if model.get(field) not in (None, ""):
                raise refuse(f"model.{field}", model[field], "none")
        for field in ("byte_fallback", "ignore_merges"):
            if model.get(field):
                raise refuse(f"model.{field}", model[field], "false")
        if document.get("normalizer") is not None:
            raise refuse("normalizer", (document["normalizer"] or {}).get("type"), "none")
        pre = document.get("pre_tokenizer") or {}
        if pre.get("type") != "ByteLevel":
            raise refuse("pre_tokenizer.type", pre.get("type"), "'ByteLevel'")
        if not pre.get("use_regex", True):
            raise refuse("pre_tokenizer.use_regex", False, "true (GPT-2's word splitter)")
        vocab, merges = model.get("vocab"), model.get("merges")
        if not isinstance(vocab, dict) or not isinstance(merges, list):
            raise TokenizerError(f"tokenizer: {file}: model.vocab must be an object and model.merges a list")
        pairs = []
        for merge in merges:  # "a b" in older files, ["a", "b"] in newer ones
            pair = merge.split(" ") if isinstance(merge, str) else merge
            if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
                raise TokenizerError(f"tokenizer: {file}: the merge {merge!r} is not a pair of symbols")
            pairs.append((pair[0], pair[1]))
        special = {}
        for token in document.get("added_tokens") or []:
            if not isinstance(token, dict) or not isinstance(token.get("content"), str) or "id" not in token:
                raise TokenizerError(f"tokenizer: {file}: an added token is malformed: {token!r}")
            special[token["content"]] = token["id"]
        return cls(vocab, pairs, special, add_prefix_space=bool(pre.get("add_prefix_space", False)))

    # -- saving with a run -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild this tokenizer, as JSON-like values: a run saves it in its
        checkpoint, so sampling from the run needs only the checkpoint (``kind`` tells it from a
        `CharTokenizer`'s)."""
        merges = [list(pair) for pair, _ in sorted(self.ranks.items(), key=lambda item: item[1])]
        return {"kind": "bpe", "vocab": self.vocab, "merges": merges, "special_tokens": self.special_tokens,
                "add_prefix_space": self.add_prefix_space}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Tokenizer:
        """The tokenizer `to_dict` described (a `TokenizerError` if the description is malformed)."""
        try:
            merges = [(a, b) for a, b in d["merges"]]
            return cls(d["vocab"], merges, d["special_tokens"], bool(d["add_prefix_space"]))
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            if isinstance(error, TokenizerError):
                raise
            raise TokenizerError(f"tokenizer: a malformed saved tokenizer ({type(error).__name__}: {error})") from None

    # -- encoding ----------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """One more than the largest id: the size of the model's embedding table."""
        return max(self.id_to_token) + 1

    def encode(self, text: str) -> list[int]:
        """The ids of ``text``: special tokens split out first, then word by word (steps 1-3 above)."""
        if not isinstance(text, str):
            raise TypeError(f"encode: text must be a str, got {type(text).__name__}")
        if self.add_prefix_space and text and not text.startswith(" "):
            text = " " + text
        ids: list[int] = []
        pieces = self._special_pattern.split(text) if self._special_pattern else [text]
        for i, piece in enumerate(pieces):
            if i % 2:  # the splitter's group: a special token
                ids.append(self.special_tokens[piece])
                continue
            for word in WORD_PATTERN.findall(piece):
                cached = self._cache.get(word)
                if cached is None:
                    cached = self._cache[word] = [self.vocab[symbol] for symbol in self.bpe(word)]
                ids.extend(cached)
        return ids

    def bpe(self, word: str) -> list[str]:
        """One word's symbols: its bytes (as characters), then merged pair by pair, earliest-learned
        pair first, until no adjacent pair is in the merges."""
        byte_char = bytes_to_unicode()
        symbols = [byte_char[b] for b in word.encode("utf-8")]
        while len(symbols) > 1:
            pair = min(zip(symbols, symbols[1:]), key=lambda p: self.ranks.get(p, math.inf))
            if pair not in self.ranks:  # no adjacent pair was ever merged: done
                break
            merged, i = [], 0
            while i < len(symbols):  # merge every occurrence of that pair, left to right
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
                    merged.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        return symbols

    # -- decoding ----------------------------------------------------------------------------------
    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids``: special tokens as they are written, the rest as bytes, read as UTF-8.
        Bytes that are not valid UTF-8 (a character cut between two pieces of output) become U+FFFD."""
        out, pending = [], bytearray()
        for i in ids:
            token = self.id_to_token.get(int(i))
            if token is None:
                raise ValueError(f"decode: id {int(i)} is not in the vocabulary (ids 0 to {self.vocab_size - 1})")
            if token in self.special_tokens:
                out.append(pending.decode("utf-8", errors="replace"))
                pending.clear()
                out.append(token)
            else:
                for c in token:  # a symbol's characters each stand for one byte
                    pending.extend([self.byte_of[c]] if c in self.byte_of else c.encode("utf-8"))
        out.append(pending.decode("utf-8", errors="replace"))
        return "".join(out)

    def __repr__(self) -> str:
        special = sorted(self.special_tokens)
        return f"Tokenizer(vocab_size={self.vocab_size}, merges={len(self.ranks)}, special={special})"


def _read_json(file: str) -> Any:
    try:
        with open(file, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise TokenizerError(f"tokenizer: {file}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TokenizerError(f"tokenizer: cannot read {file} ({error})") from None
