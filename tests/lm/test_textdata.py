"""The user's text (``--data``): forms it may take, the leak-free split, byte tokens, bad input."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from loralab.errors import LoralabError
from loralab.lm import BUILTIN_TEXTS, ByteTokenizer, CharTokenizer
from loralab.lm.textdata import (
    MIN_PARAGRAPHS,
    check_data,
    corpus_data,
    load_text,
    split_units,
    token_counts,
)

TEXTS = Path(__file__).resolve().parents[2] / "src" / "loralab" / "lm" / "texts"
ZH = "子曰：学而时习之，不亦说乎？有朋自远方来，不亦乐乎？"


def _lines(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = ("cat", "dog", "sees", "the", "a", "red", "ball", "runs", "park", "in")
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 8))) + f" {i}."
            for i in range(n)]


def _in_order(part: list[str], whole: list[str]) -> bool:
    """``part`` is a subsequence of ``whole`` (the split keeps the data's order)."""
    rest = iter(whole)
    return all(any(u == w for w in rest) for u in part)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# the split --------------------------------------------------------------------------------


def test_split_leaks_nothing_and_keeps_every_copy_on_one_side():
    units = _lines(300) + _lines(40)            # 40 texts occur twice
    train, val = split_units(units, val_fraction=0.2, seed=3)
    assert not set(train) & set(val)
    assert sorted(train + val) == sorted(units)
    distinct = len(set(units))
    assert len(set(val)) == round(0.2 * distinct)
    for text in set(val):
        assert val.count(text) == units.count(text)
    assert _in_order(train, units) and _in_order(val, units)


def test_same_seed_same_split_other_seed_other_split():
    units = _lines(200)
    assert split_units(units, val_fraction=0.1, seed=7) == split_units(units, val_fraction=0.1,
                                                                       seed=7)
    assert split_units(units, val_fraction=0.1, seed=7) != split_units(units, val_fraction=0.1,
                                                                       seed=8)


def test_adding_a_unit_moves_no_other_unit_across_the_split():
    units = _lines(400)
    _, val = split_units(units, val_fraction=0.1, seed=0)
    _, val_more = split_units(units + ["one more line."], val_fraction=0.1, seed=0)
    assert len(set(val) ^ set(val_more)) <= 2   # the new unit in, at most one other out


def test_load_text_split_is_deterministic_and_leak_free(tmp_path):
    path = _write(tmp_path / "a.txt", "\n".join(_lines(100) + _lines(10)) + "\n")
    a = load_text(path, seed=1)
    b = load_text(str(path), seed=1)
    assert (a.train_docs, a.val_docs, a.sha256) == (b.train_docs, b.val_docs, b.sha256)
    assert not set(a.train_docs) & set(a.val_docs)
    assert a.unit == "line" and a.n_units == 110 and a.n_val >= 1
    assert load_text(path, seed=2).sha256 != a.sha256
    copy = _write(tmp_path / "sub" / "b.txt", path.read_text(encoding="utf-8"))
    assert load_text(copy, seed=1).sha256 == a.sha256          # content, not the path


# the byte tokenizer -------------------------------------------------------------------------


def test_byte_tokenizer_round_trips_chinese_and_mixed_text():
    tok = ByteTokenizer()
    assert tok.vocab_size == 256
    for text in (ZH, "naïve café — ok", "Привет, мир", "emoji 🙂\nnew line", ""):
        ids = tok.encode(text)
        assert all(0 <= i < 256 for i in ids) and len(ids) == len(text.encode("utf-8"))
        assert tok.decode(ids) == text
        assert tok.decode(torch.tensor(ids, dtype=torch.long)) == text
    assert len(tok.encode("学")) == 3


def test_byte_tokenizer_decodes_a_cut_character_without_crashing():
    tok = ByteTokenizer()
    ids = tok.encode("学习")[:-1]                      # the second character cut in two
    assert tok.decode(ids) == "学\ufffd"
    with pytest.raises(LoralabError, match="300"):
        tok.decode([65, 300])
    with pytest.raises(LoralabError, match="surrogate|UTF-8"):
        tok.encode("\ud800")


# the forms --data may take ------------------------------------------------------------------


def test_txt_with_paragraphs_splits_by_paragraph(tmp_path):
    paras = [f"SPEAKER {i}:\nline one of {i}\nline two of {i}" for i in range(MIN_PARAGRAPHS + 5)]
    path = _write(tmp_path / "play.txt", "\r\n\r\n".join(paras).replace("\n", "\r\n") + "\r\n")
    corpus = load_text(path)
    assert corpus.unit == "paragraph"
    assert sorted(corpus.train_docs + corpus.val_docs) == sorted(paras)
    short = _write(tmp_path / "few.txt", "one\ntwo\n\nthree\nfour\n")   # too few paragraphs
    assert load_text(short).unit == "line" and load_text(short).n_units == 4


def test_chinese_txt_loads_and_round_trips(tmp_path):
    lines = [f"{ZH}{i}" for i in range(20)]
    path = tmp_path / "论语.txt"
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode("utf-8"))   # with a BOM
    corpus = load_text(path)
    assert sorted(corpus.train_docs + corpus.val_docs) == sorted(lines)
    data = corpus_data(corpus, ByteTokenizer(), block_size=16)
    assert ByteTokenizer().decode(data.val) == "\n".join(corpus.val_docs) + "\n"


def test_folder_reads_txt_files_recursively_in_sorted_order(tmp_path):
    root = tmp_path / "docs"
    for name in ("b.txt", "a.txt", "sub/c.TXT", "sub/deeper/d.txt"):
        _write(root / name, f"document {name}\nsecond line")
    _write(root / "empty.txt", "\n \n")
    _write(root / "notes.md", "not read")
    _write(root / ".hidden" / "e.txt", "not read")
    corpus = load_text(root, val_fraction=0.25)
    assert corpus.unit == "document" and corpus.n_files == 5
    docs = corpus.train_docs + corpus.val_docs
    assert sorted(docs) == sorted(f"document {n}\nsecond line"
                                  for n in ("a.txt", "b.txt", "sub/c.TXT", "sub/deeper/d.txt"))
    order = ["a.txt", "b.txt", "sub/c.TXT", "sub/deeper/d.txt"]
    kept = [n for n in order if f"document {n}\nsecond line" in corpus.train_docs]
    assert corpus.train_docs == [f"document {n}\nsecond line" for n in kept]


def test_jsonl_reads_the_text_field_per_line(tmp_path):
    records = [{"text": f"{ZH} 第{i}条\n第二行", "id": i} for i in range(12)]
    body = "\n".join(json.dumps(r, ensure_ascii=i % 2 == 0) for i, r in enumerate(records))
    path = _write(tmp_path / "d.jsonl", body + "\n\n")
    corpus = load_text(path)
    assert corpus.unit == "document" and corpus.n_units == 12
    assert sorted(corpus.train_docs + corpus.val_docs) == sorted(r["text"] for r in records)


# bad input: one LoralabError naming the value and what is allowed -----------------------------


def _bad(tmp_path: Path) -> dict[str, tuple[Path | str, list[str]]]:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "bin.txt").write_bytes(b"hello\x00world")
    (raw / "latin1.txt").write_bytes("caf\u00e9 ok".encode("latin-1"))
    (raw / "empty.txt").write_bytes(b"")
    (raw / "blank.txt").write_bytes(b"  \n\t\n")
    (raw / "notes.md").write_text("x\ny\n", encoding="utf-8")
    (raw / "one.txt").write_text("only one line, twice\nonly one line, twice\n", encoding="utf-8")
    (raw / "nofolder").mkdir()
    _write(raw / "nofolder" / "a.md", "text")
    _write(raw / "badjson.jsonl", '{"text": "ok"}\n{"text": oops}\n')
    _write(raw / "notext.jsonl", '{"text": "ok"}\n\n{"body": "x"}\n')
    _write(raw / "numtext.jsonl", '{"text": 3}\n')
    _write(raw / "array.jsonl", '["text"]\n')
    return {
        "missing": (raw / "nope.txt", ["nope.txt", "does not exist", ".jsonl", "builtin:"]),
        "binary": (raw / "bin.txt", ["bin.txt", "binary", "offset 5"]),
        "latin1": (raw / "latin1.txt", ["latin1.txt", "not UTF-8", "offset 3", "0xe9"]),
        "empty": (raw / "empty.txt", ["empty.txt", "empty"]),
        "blank": (raw / "blank.txt", ["blank.txt", "empty", "white space"]),
        "suffix": (raw / "notes.md", ["notes.md", "'.md'", ".txt", ".jsonl"]),
        "one unit": (raw / "one.txt", ["one.txt", "1 distinct line", "at least 2"]),
        "empty folder": (raw / "nofolder", ["nofolder", "no .txt file"]),
        "bad json": (raw / "badjson.jsonl", ["badjson.jsonl", "line 2", "not JSON"]),
        "no text": (raw / "notext.jsonl", ["notext.jsonl", "line 3", '"text"', "'body'"]),
        "text not str": (raw / "numtext.jsonl", ["numtext.jsonl", "line 1", "string"]),
        "not an object": (raw / "array.jsonl", ["array.jsonl", "line 1", "array"]),
        "builtin": ("builtin:hamlet", ["builtin:hamlet", "builtin:shakespeare",
                                       "builtin:lunyu"]),
    }


@pytest.mark.parametrize("case", ["missing", "binary", "latin1", "empty", "blank", "suffix",
                                  "one unit", "empty folder", "bad json", "no text",
                                  "text not str", "not an object", "builtin"])
def test_bad_data_gives_one_clear_error(tmp_path, case):
    spec, needles = _bad(tmp_path)[case]
    with pytest.raises(LoralabError) as info:
        load_text(spec)
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))


def test_bad_file_inside_a_folder_is_named(tmp_path):
    _write(tmp_path / "f" / "ok.txt", "fine text")
    (tmp_path / "f" / "sub").mkdir()
    (tmp_path / "f" / "sub" / "bad.txt").write_bytes(b"ok\n\xff\xfe")
    with pytest.raises(LoralabError, match=r"bad\.txt.*offset 3"):
        load_text(tmp_path / "f")
    (tmp_path / "g").mkdir()
    _write(tmp_path / "g" / "a.txt", "\n")
    with pytest.raises(LoralabError, match="empty"):
        load_text(tmp_path / "g")


def test_bad_split_parameters_are_refused(tmp_path):
    path = _write(tmp_path / "a.txt", "\n".join(_lines(50)))
    for fraction in (0.0, 1.0, -0.1, 1.5, "0.1", float("nan")):
        with pytest.raises(LoralabError, match="val_fraction"):
            load_text(path, val_fraction=fraction)
    corpus = load_text(path)
    for block in (0, -3):
        with pytest.raises(LoralabError, match=f"block_size={block}"):
            corpus_data(corpus, ByteTokenizer(), block)


def test_text_shorter_than_a_block_or_its_validation_split_is_refused(tmp_path):
    tok = ByteTokenizer()
    tiny = load_text(_write(tmp_path / "tiny.txt", "ab\ncd\nef\n"))
    with pytest.raises(LoralabError) as info:
        check_data(tiny, tok, block_size=32)
    assert all(s in str(info.value) for s in ("tiny.txt", "9 tokens", "34 tokens"))
    lines = [f"line number {i} of the text" for i in range(40)]      # ~1,100 bytes
    corpus = load_text(_write(tmp_path / "short.txt", "\n".join(lines)), val_fraction=0.05)
    n_val = len("\n".join(corpus.val_docs)) + 1
    with pytest.raises(LoralabError) as info:
        corpus_data(corpus, tok, block_size=200)
    msg = str(info.value)
    assert "validation split" in msg and f"{n_val} tokens" in msg and "202 tokens" in msg
    assert "val_fraction" in msg
    counts = check_data(corpus, tok, block_size=n_val - 2)           # just fits
    assert counts.val_tokens == n_val and counts.val_units == corpus.n_val


def test_a_character_tokenizer_may_refuse_the_text(tmp_path):
    corpus = load_text(_write(tmp_path / "zh.txt", "\n".join(f"{ZH}{i}" for i in range(20))))
    with pytest.raises(LoralabError, match="alphabet"):
        corpus_data(corpus, CharTokenizer(), block_size=8)


# the data made from it ----------------------------------------------------------------------


def test_lm_data_batches_have_the_right_shapes(tmp_path):
    corpus = load_text(_write(tmp_path / "a.txt", "\n".join(_lines(200))))
    tok = ByteTokenizer()
    data = corpus_data(corpus, tok, block_size=24)
    assert data.train.dtype == torch.long and data.train.dim() == 1
    assert tok.decode(data.train) == "\n".join(corpus.train_docs) + "\n"
    assert data.train_lines == corpus.train_docs and data.val_lines == corpus.val_docs
    x, y = data.batch(step=3, batch_size=5, seed=0)
    assert x.shape == y.shape == (5, 24)
    assert torch.equal(x[:, 1:], y[:, :-1])
    for vx, vy in data.val_batches(batch_size=4):
        assert vx.shape == vy.shape and vx.shape[1] == 24 and vx.shape[0] <= 4
    counts = token_counts(data)
    assert counts == check_data(corpus, tok, 24)
    assert counts.train_tokens == len(data.train) and counts.val_tokens == len(data.val)
    assert "tokens" in counts.summary(corpus.unit)


# the built-in texts ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def builtins():
    return {name: load_text(f"builtin:{name}") for name in BUILTIN_TEXTS}


def test_builtin_texts_are_small_documented_and_load(builtins):
    files = [TEXTS / f"{name}.txt" for name in BUILTIN_TEXTS]
    assert sum(f.stat().st_size for f in files) <= 1_000_000
    sources = (TEXTS / "SOURCES.md").read_text(encoding="utf-8")
    tok = ByteTokenizer()
    for name, corpus in builtins.items():
        assert f"{name}.txt" in sources and "public domain" in sources.lower()
        assert corpus.name == f"builtin:{name}" and corpus.n_val >= 10
        assert not set(corpus.train_docs) & set(corpus.val_docs)
        counts = check_data(corpus, tok, block_size=128)
        assert counts.val_tokens > 10 * 130
    assert builtins["shakespeare"].unit == "paragraph"
    lunyu = builtins["lunyu"]
    assert lunyu.unit == "line"
    assert any("学而时习之" in d for d in lunyu.train_docs + lunyu.val_docs)
