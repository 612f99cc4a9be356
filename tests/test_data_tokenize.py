"""Tokenization: parity with transformers' own call, padding modes, truncation counts, NER alignment."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from xtremedistil_tf.data.readers import Example, TaskData, read_conll, read_glue
from xtremedistil_tf.data.tokenize import Featurizer, x_subword_labels, load_tokenizer, tokenizer_fingerprint
from xtremedistil_tf.errors import ConfigError


@pytest.fixture(scope="module")
def tok(minilm_dir):
    return load_tokenizer(str(minilm_dir))


SENTENCES = ["hide new secretions from the parental units ", "contains no wit , only labored gags",
             "a", "", "Unbelievably well-crafted, heart-warming cinema!"]


def test_load_tokenizer(tok, minilm_dir, tmp_path):
    assert tok.is_fast and tok.pad_token_id == 0
    fp = tokenizer_fingerprint(tok)
    assert fp["vocab_size"] == 30522 and len(fp["sha256"]) == 64 and fp["name"] == str(minilm_dir)
    with pytest.raises(ConfigError, match="cannot load a tokenizer from the folder"):
        load_tokenizer(str(tmp_path))
    with pytest.raises(ConfigError, match="not a local folder"):
        load_tokenizer(str(tmp_path / "no" / "such" / "folder"))


def test_matches_transformers_call(tok):
    f = Featurizer(tok, 16)
    out = f.encode([Example(s, None, i % 2) for i, s in enumerate(SENTENCES)])
    ref = tok(SENTENCES, truncation=True, max_length=16, padding="max_length", return_tensors="np")
    for k in ("input_ids", "attention_mask", "token_type_ids"):
        assert out[k].dtype == np.int32 and out[k].shape == (5, 16)
        np.testing.assert_array_equal(out[k], ref[k])
    np.testing.assert_array_equal(out["labels"], [0, 1, 0, 1, 0])
    assert out["labels"].dtype == np.int32 and "word_index" not in out

    a, b = SENTENCES, SENTENCES[::-1]
    out = Featurizer(tok, 12, pad_to="longest").encode([Example(x, y) for x, y in zip(a, b)])
    ref = tok(a, b, truncation=True, max_length=12, padding=True, return_tensors="np")
    assert "labels" not in out
    for k in ("input_ids", "attention_mask", "token_type_ids"):
        np.testing.assert_array_equal(out[k], ref[k])
    assert out["token_type_ids"].max() == 1


def test_pad_to_longest_vs_seq_len_and_truncation(tok, caplog):
    examples = [Example("short"), Example("a somewhat longer sentence here"), Example(" ".join(["word"] * 50))]
    f = Featurizer(tok, 32)
    with caplog.at_level(logging.INFO):
        out = f.encode(examples, name="mine.tsv")
    assert out["input_ids"].shape == (3, 32)
    assert f.last_stats["num_truncated"] == 1 and f.last_stats["padded_length"] == 32
    assert "mine.tsv: 1 of 3 examples (33.33%) truncated to seq_len 32" in caplog.text
    assert out["attention_mask"].sum(1).tolist() == [3, 7, 32]
    assert out["input_ids"][2, -1] == tok.sep_token_id

    f = Featurizer(tok, 32, pad_to="longest")
    out = f.encode(examples[:2])
    assert out["input_ids"].shape == (2, 7) and f.last_stats["num_truncated"] == 0
    np.testing.assert_array_equal(out["input_ids"][0], [101, tok.convert_tokens_to_ids("short"), 102, 0, 0, 0, 0])
    assert Featurizer(tok, 32, pad_to="longest").encode(examples)["input_ids"].shape == (3, 32)  # capped


def test_regression_and_label_checks(tok):
    data = TaskData([Example("a", "b", 3.5), Example("c", "d", 0.25)], None, "regression", "x.tsv", True)
    out = Featurizer(tok, 8).encode(data)
    assert out["labels"].dtype == np.float32 and out["labels"].tolist() == [3.5, 0.25]
    with pytest.raises(ValueError, match="all or none"):
        Featurizer(tok, 8).encode([Example("a", None, 1), Example("b")])
    with pytest.raises(ValueError, match="pairs"):
        Featurizer(tok, 8).encode([Example("a", "b"), Example("b")])
    with pytest.raises(ValueError, match="pad_to"):
        Featurizer(tok, 8, pad_to="max")
    with pytest.raises(ValueError, match="x_label_id"):
        Featurizer(tok, 8, ner_subword_label="x")


def _reference_alignment(tok, words, tags, seq_len):
    """Independent reference: tokenize word by word; the tag on the first piece, -1 elsewhere."""
    ids, labels, word_index = [tok.cls_token_id], [-1], [-1]
    for i, (w, t) in enumerate(zip(words, tags)):
        pieces = tok.convert_tokens_to_ids(tok.tokenize(w))
        ids += pieces
        labels += [t] + [-1] * (len(pieces) - 1)
        word_index += [i] + [-1] * (len(pieces) - 1)
    ids, labels, word_index = ids[:seq_len - 1], labels[:seq_len - 1], word_index[:seq_len - 1]
    ids, labels, word_index = ids + [tok.sep_token_id], labels + [-1], word_index + [-1]
    pad = seq_len - len(ids)
    return ids + [0] * pad, labels + [-1] * pad, word_index + [-1] * pad


def test_ner_alignment_on_real_sentence(tok, shared_data_dir):
    data = read_conll(str(shared_data_dir / "conll2003" / "train.txt"))
    names = data.label_names
    sentence = data.examples[2]
    assert sentence.text_a == ("BRUSSELS", "1996-08-22")
    f = Featurizer(tok, 16)
    out = f.encode([sentence])
    tokens = tok.convert_ids_to_tokens(out["input_ids"][0][:8].tolist())
    assert tokens == ["[CLS]", "brussels", "1996", "-", "08", "-", "22", "[SEP]"]
    assert [names[t] if t >= 0 else None for t in out["labels"][0][:8]] == [None, "B-LOC", "O", None, None, None, None, None]
    assert out["word_index"][0][:8].tolist() == [-1, 0, 1, -1, -1, -1, -1, -1]
    assert (out["labels"][0][8:] == -1).all() and (out["word_index"][0][8:] == -1).all()

    # The first 300 training sentences against the word-by-word reference (truncation included).
    sample = data.examples[:300]
    out = Featurizer(tok, 24).encode(sample)
    multi = 0
    for i, e in enumerate(sample):
        ids, labels, word_index = _reference_alignment(tok, e.text_a, e.label, 24)
        np.testing.assert_array_equal(out["input_ids"][i], ids)
        np.testing.assert_array_equal(out["labels"][i], labels)
        np.testing.assert_array_equal(out["word_index"][i], word_index)
        multi += any(len(tok.tokenize(w)) > 1 for w in e.text_a)
    assert multi > 20  # many sentences do have words split into several pieces


def test_ner_faithful_x_labels(tok):
    names, kwargs = x_subword_labels(["O", "B-PER", "I-PER"], tok)
    assert names == ["O", "B-PER", "I-PER", "[PAD]", "X", "[SEP]", "[CLS]"]
    assert kwargs == {"ner_subword_label": "x", "x_label_id": 4, "special_label_ids": {"pad": 3, "eos": 5, "bos": 6}}
    f = Featurizer(tok, 10, **kwargs)
    e = Example(("Peter", "Blackburnshire", "spoke"), None, (1, 2, 0))
    out = f.encode([e])
    tokens = tok.convert_ids_to_tokens(out["input_ids"][0].tolist())
    n = len(tok.tokenize("Blackburnshire"))
    assert n > 1
    expected = ["[CLS]", "B-PER", "I-PER"] + ["X"] * (n - 1) + ["O", "[SEP]"]
    expected += ["[PAD]"] * (10 - len(expected))
    assert [names[i] for i in out["labels"][0]] == expected
    assert tokens[-1] == "[PAD]" and out["attention_mask"][0].sum() == n + 4
    # Without special_label_ids the specials and pads are ignored (-1) and only sub-tokens get X.
    out = Featurizer(tok, 10, ner_subword_label="x", x_label_id=4).encode([e])
    assert out["labels"][0].tolist() == [-1, 1, 2] + [4] * (n - 1) + [0, -1] + [-1] * (10 - n - 4)


def test_ner_truncation_and_unlabelled(tok, caplog):
    words = tuple(f"w{i}" for i in range(20))
    f = Featurizer(tok, 8)
    with caplog.at_level(logging.INFO):
        out = f.encode([Example(words, None, tuple([0] * 20)), Example(("a", "b"), None, (1, 0))])
    assert f.last_stats["num_truncated"] == 1 and f.last_stats["words_cut"] > 0
    assert "word(s) lost to truncation" in caplog.text
    assert out["labels"].shape == (2, 8) and out["word_index"][1].tolist()[:4] == [-1, 0, 1, -1]
    out = f.encode([Example(("a", "b"))])
    assert "labels" not in out and out["word_index"].shape == (1, 8)


def test_real_sst2_dev_matches_transformers(tok, shared_data_dir):
    dev = read_glue("sst2", str(shared_data_dir / "glue"), splits=["dev"])["dev"]
    f = Featurizer(tok, 64, pad_to="longest")
    out = f.encode(dev)
    ref = tok([e.text_a for e in dev.examples], truncation=True, max_length=64, padding=True, return_tensors="np")
    for k in ("input_ids", "attention_mask", "token_type_ids"):
        np.testing.assert_array_equal(out[k], ref[k])
    assert out["labels"].shape == (872,) and f.last_stats["num_examples"] == 872
