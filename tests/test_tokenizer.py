"""GPT-2's byte-level BPE (tinygrad_lm.tokenizer) gives Hugging Face's ids, id for id.

The committed ids (tests/fixtures/tiny_gpt2/reference.json, written by the `tokenizers` library)
are checked without it; where `tokenizers` is installed (it is a dev dependency) the ids are also
compared live, on generated text from every part of Unicode."""

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygrad_lm.tasks import tokenizer_from_dict
from tinygrad_lm.tokenizer import Tokenizer, TokenizerError, bytes_to_unicode

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "tiny_gpt2"
CORPUS = json.loads((FIXTURE / "reference.json").read_text(encoding="utf-8"))["tokenizer"]
OURS = Tokenizer.from_pretrained(FIXTURE)


@pytest.fixture(scope="module")
def theirs():
    tokenizers = pytest.importorskip("tokenizers", reason="the tokenizers library is not installed")
    return tokenizers.Tokenizer.from_file(str(FIXTURE / "tokenizer.json"))


@pytest.mark.parametrize("entry", CORPUS, ids=[repr(e["text"][:20]) for e in CORPUS])
def test_ids_are_those_the_tokenizers_library_gave(entry):
    assert OURS.encode(entry["text"]) == entry["ids"]
    assert OURS.decode(entry["ids"]) == entry["text"]


def test_vocab_json_and_merges_txt_give_the_same_ids(tmp_path):
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(FIXTURE / name, tmp_path)
    original_files = Tokenizer.from_pretrained(tmp_path)
    assert original_files.special_tokens == {"<|endoftext|>": 0} == OURS.special_tokens
    for entry in CORPUS:
        assert original_files.encode(entry["text"]) == entry["ids"]


def test_a_word_is_split_and_merged_as_gpt2_does():
    assert len(bytes_to_unicode()) == 256 and bytes_to_unicode()[ord(" ")] == "Ġ" and bytes_to_unicode()[10] == "Ċ"
    pieces = [OURS.decode([i]) for i in OURS.encode("a cat sat on a mat.")]
    assert "".join(pieces) == "a cat sat on a mat." and " cat" in pieces  # a word keeps its leading space
    assert OURS.encode("a cat<|endoftext|>") == OURS.encode("a cat") + [0]  # a special token is one id


def test_decode_joins_the_bytes_of_a_character_split_between_tokens():
    ids = OURS.encode("🦒")  # four bytes, not in the training text: more than one token
    assert len(ids) > 1 and OURS.decode(ids) == "🦒"
    assert OURS.decode(ids[:-1]) == "\ufffd"  # part of a character: the replacement character, as Hugging Face


def test_the_tokenizer_travels_with_a_run():
    again = tokenizer_from_dict(json.loads(json.dumps(OURS.to_dict())))
    assert isinstance(again, Tokenizer)
    for entry in CORPUS:
        assert again.encode(entry["text"]) == entry["ids"]


def test_bad_input_and_bad_files_get_one_clear_line(tmp_path):
    with pytest.raises(TypeError, match="must be a str"):
        OURS.encode(b"bytes")
    with pytest.raises(ValueError, match="id 400 is not in the vocabulary"):
        OURS.decode([1, 400])
    cases = {
        "no such": tmp_path / "missing",
        "neither tokenizer.json nor": tmp_path,
    }
    for needle, path in cases.items():
        with pytest.raises(TokenizerError, match=needle):
            Tokenizer.from_pretrained(path)
    document = json.loads((FIXTURE / "tokenizer.json").read_text())
    changes = {
        "model.type is 'WordPiece'": lambda d: d["model"].update(type="WordPiece"),
        "normalizer is 'NFC'": lambda d: d.update(normalizer={"type": "NFC"}),
        "pre_tokenizer.type is 'Whitespace'": lambda d: d.update(pre_tokenizer={"type": "Whitespace"}),
        "model.continuing_subword_prefix is '##'": lambda d: d["model"].update(continuing_subword_prefix="##"),
        "model.byte_fallback is True": lambda d: d["model"].update(byte_fallback=True),
        "has no symbol for 1 of the 256 bytes": lambda d: d["model"]["vocab"].pop("Ġ"),
    }
    for needle, change in changes.items():
        broken = json.loads(json.dumps(document))
        change(broken)
        (tmp_path / "tokenizer.json").write_text(json.dumps(broken))
        with pytest.raises(TokenizerError, match=needle.replace("(", r"\(").replace(")", r"\)")) as info:
            Tokenizer.from_pretrained(tmp_path)
        assert "\n" not in str(info.value)
    (tmp_path / "tokenizer.json").write_text("{broken")
    with pytest.raises(TokenizerError, match="cannot read"):
        Tokenizer.from_pretrained(tmp_path)


# ---------------------------------------------------------------------------------------------------
# Live against the tokenizers library
# ---------------------------------------------------------------------------------------------------

# Characters GPT-2's splitter treats differently: letters and digits of many scripts, every kind of
# whitespace (Unicode's and Python's disagree on some), marks, symbols, emoji parts, apostrophes.
SPECIAL_CHARACTERS = list(" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2007\u200a\u200b\u2028\u2029"
                          "\u202f\u205f\u3000\ufeff'’sStTdDmMlLvVrReE0129½²٣४a.,!?-_😀🏽\u200d👍日本ïé\u0301\u0308"
                          "\x00\x7f")  # fmt: skip
TEXT = st.lists(
    st.one_of(st.sampled_from(SPECIAL_CHARACTERS + ["'s", "'ll", "'ve", "'re", "<|endoftext|>", "  ", "\n\n"]),
              st.characters(codec="utf-8")),
    max_size=40,
).map("".join)  # fmt: skip


@given(TEXT)
def test_generated_text_gets_the_same_ids_as_the_tokenizers_library(theirs, text):
    assert OURS.encode(text) == theirs.encode(text).ids
    assert OURS.decode(OURS.encode(text)) == text


def test_every_kind_of_character_gets_the_same_ids_as_the_tokenizers_library(theirs):
    """Every code point below U+3000 and a sample of those above, each alone and between letters,
    digits and spaces: where GPT-2's splitter draws its lines (letter, number, space, other)."""
    points = [*range(0x3000), *range(0x3000, 0x110000, 97)]
    chars = [chr(c) for c in points if not 0xD800 <= c <= 0xDFFF]
    texts = [s for c in chars for s in (f"a{c}b", f" {c}{c}  {c}'s", f"1{c} 2")]
    assert [OURS.encode(t) for t in texts] == [e.ids for e in theirs.encode_batch(texts)]
