"""The TFRecord transfer cache and the shuffled row order."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from xtremedistil_tf.data.pipeline import TransferCache, shuffled_row_order
from xtremedistil_tf.data.readers import DataError, iter_transfer_file
from xtremedistil_tf.data.tokenize import Featurizer, load_tokenizer

tf = pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def tok(minilm_dir):
    return load_tokenizer(str(minilm_dir))


def _write_transfer(path, n, start=0):
    words = ["movie", "great", "terrible", "plot", "actors", "the", "a", "unbelievablyx", "cinematography"]
    with open(path, "w", encoding="utf-8") as f:
        for i in range(start, start + n):
            f.write(" ".join(words[(i * 7 + j) % len(words)] for j in range(1 + i % 13)) + f" {i}\n")
            if i % 17 == 0:
                f.write("\n")  # blank lines are skipped
    return str(path)


def test_transfer_cache_reuse_rebuild_and_chunks(tok, tmp_path):
    transfer = _write_transfer(tmp_path / "transfer.tsv", 250)
    cache_dir = str(tmp_path / "model" / "transfer_cache")
    f = Featurizer(tok, 12)
    cache = TransferCache(cache_dir, transfer, f, shard_size=64)
    assert cache.rebuilt and cache.num_examples == 250 and len(cache.shard_paths) == 4
    manifest = json.load(open(os.path.join(cache_dir, "manifest.json")))
    assert manifest["key"]["seq_len"] == 12 and manifest["key"]["tokenizer"]["vocab_size"] == 30522
    assert manifest["key"]["file"]["size"] == os.path.getsize(transfer) and manifest["num_examples"] == 250
    assert manifest["num_truncated"] > 0 and [s["count"] for s in manifest["shards"]] == [64, 64, 64, 58]
    mtimes = [os.path.getmtime(p) for p in cache.shard_paths]

    direct = f.encode(list(iter_transfer_file(transfer)))
    # Chunks (one across a shard boundary, and the short last one) equal the direct encoding.
    for index, size in ((0, 100), (1, 100), (2, 100), (3, 64), (0, 250)):
        chunk = cache.load_chunk(index, size)
        lo, hi = index * size, min((index + 1) * size, 250)
        for k in ("input_ids", "attention_mask", "token_type_ids"):
            assert chunk[k].dtype == np.int32
            np.testing.assert_array_equal(chunk[k], direct[k][lo:hi])
    assert cache.num_chunks(100) == 3
    with pytest.raises(IndexError):
        cache.load_chunk(3, 100)

    # Unchanged: reused, shards untouched.
    again = TransferCache(cache_dir, transfer, Featurizer(tok, 12), shard_size=64)
    assert not again.rebuilt and [os.path.getmtime(p) for p in again.shard_paths] == mtimes

    # seq_len changes: rebuilt.
    longer = TransferCache(cache_dir, transfer, Featurizer(tok, 20), shard_size=64)
    assert longer.rebuilt and longer.manifest["key"]["seq_len"] == 20
    np.testing.assert_array_equal(longer.load_chunk(0, 250)["input_ids"],
                                  Featurizer(tok, 20).encode(list(iter_transfer_file(transfer)))["input_ids"])

    # The file changes: rebuilt with the new content.
    _write_transfer(tmp_path / "transfer.tsv", 260, start=1)
    changed = TransferCache(cache_dir, transfer, Featurizer(tok, 20), shard_size=64)
    assert changed.rebuilt and changed.num_examples == 260 and len(changed.shard_paths) == 5

    # The tokenizer changes (an added token changes its definition): rebuilt.
    from transformers import AutoTokenizer

    other = AutoTokenizer.from_pretrained(tok.name_or_path)
    assert other.add_tokens(["unbelievablyx"]) == 1
    rebuilt = TransferCache(cache_dir, transfer, Featurizer(other, 20), shard_size=64)
    assert rebuilt.rebuilt and rebuilt.manifest["key"]["tokenizer"]["vocab_size"] == 30523
    assert (rebuilt.load_chunk(0, 260)["input_ids"] == 30522).any()


def test_transfer_cache_pad_longest_and_stream(tok, tmp_path):
    transfer = _write_transfer(tmp_path / "t.tsv", 120)
    f = Featurizer(tok, 64, pad_to="longest")
    cache = TransferCache(str(tmp_path / "c"), transfer, f, shard_size=50)
    direct = f.encode(list(iter_transfer_file(transfer)))
    assert cache.padded_length == cache.max_length == direct["input_ids"].shape[1] < 64
    chunk = cache.load_chunk(1, 50)
    np.testing.assert_array_equal(chunk["input_ids"], direct["input_ids"][50:100])

    batches = list(cache.dataset(32).as_numpy_iterator())
    assert [b["input_ids"].shape[0] for b in batches] == [32, 32, 32, 24]
    streamed = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    for k in ("input_ids", "attention_mask", "token_type_ids"):
        np.testing.assert_array_equal(streamed[k], direct[k])

    def shuffled(seed):
        return np.concatenate([b["input_ids"] for b in cache.dataset(16, shuffle=True, seed=seed, shuffle_buffer=64)])

    s1, s2 = shuffled(3), shuffled(3)
    np.testing.assert_array_equal(s1, s2)
    assert not np.array_equal(s1, direct["input_ids"])
    assert sorted(map(tuple, s1.tolist())) == sorted(map(tuple, direct["input_ids"].tolist()))
    assert len(list(cache.dataset(50, drop_remainder=True))) == 2
    assert len(list(cache.dataset(50, repeat=True).take(5))) == 5


def test_transfer_cache_load_rows_in_the_original_shuffled_order(tok, tmp_path):
    sklearn_utils = pytest.importorskip("sklearn.utils")
    transfer = _write_transfer(tmp_path / "t.tsv", 150)
    f = Featurizer(tok, 64, pad_to="longest")
    cache = TransferCache(str(tmp_path / "c"), transfer, f, shard_size=40)
    direct = f.encode(list(iter_transfer_file(transfer)))
    order = shuffled_row_order(150, 42)
    # The original: sklearn.utils.shuffle(*arrays, random_state=PYTHONHASHSEED) on every file it read.
    expected = sklearn_utils.shuffle(direct["input_ids"], direct["attention_mask"], random_state=42)
    np.testing.assert_array_equal(direct["input_ids"][order], expected[0])
    np.testing.assert_array_equal(direct["attention_mask"][order], expected[1])
    assert not np.array_equal(shuffled_row_order(150, 1), order)
    # Rows across shards, in the order asked for; chunks of the shuffled file cover it once.
    for rows in (order[:64], order[64:128], order[128:], np.array([149, 0, 41, 40, 39])):
        got = cache.load_rows(rows, block=32)
        for k in ("input_ids", "attention_mask", "token_type_ids"):
            assert got[k].dtype == np.int32
            np.testing.assert_array_equal(got[k], direct[k][rows])
    np.testing.assert_array_equal(cache.load_rows(order)["input_ids"], direct["input_ids"][order])
    with pytest.raises(IndexError):
        cache.load_rows([0, 150])
    with pytest.raises(ValueError, match="distinct"):
        cache.load_rows([3, 3])


def test_transfer_cache_pairs_and_ner(tok, tmp_path):
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("".join(f"question {i} here ?\tanswer number {i}\n" for i in range(30)))
    f = Featurizer(tok, 16)
    cache = TransferCache(str(tmp_path / "cp"), str(pairs), f, pairwise=True)
    direct = f.encode(list(iter_transfer_file(str(pairs), pairwise=True)))
    chunk = cache.load_chunk(0, 30)
    np.testing.assert_array_equal(chunk["token_type_ids"], direct["token_type_ids"])
    assert chunk["token_type_ids"].max() == 1

    ner = tmp_path / "ner.tsv"
    ner.write_text("".join(f"Peter Blackburnshire visited Brussels {i}\n" for i in range(10)))
    cache = TransferCache(str(tmp_path / "cn"), str(ner), f, kind="ner")
    direct = f.encode(list(iter_transfer_file(str(ner), kind="ner")))
    np.testing.assert_array_equal(cache.load_chunk(0, 10)["input_ids"], direct["input_ids"])
    # Same file read as classification: another kind, so the key differs.
    assert TransferCache(str(tmp_path / "cn"), str(ner), f).rebuilt


def test_transfer_cache_recovers_from_damage(tok, tmp_path):
    transfer = _write_transfer(tmp_path / "t.tsv", 40)
    f = Featurizer(tok, 16)
    cache_dir = tmp_path / "c"
    cache = TransferCache(str(cache_dir), transfer, f, shard_size=16)
    # A truncated shard, or no manifest (an interrupted build), means a rebuild.
    with open(cache.shard_paths[1], "r+b") as fh:
        fh.truncate(10)
    assert TransferCache(str(cache_dir), transfer, f, shard_size=16).rebuilt
    os.remove(cache_dir / "manifest.json")
    (cache_dir / ".transfer-00009.tfrecord.abc.tmp.tfrecord").write_bytes(b"junk")
    again = TransferCache(str(cache_dir), transfer, f, shard_size=16)
    assert again.rebuilt and again.num_examples == 40
    assert sorted(os.listdir(cache_dir)) == ["manifest.json"] + [f"transfer-0000{i}.tfrecord" for i in range(3)]

    empty = tmp_path / "empty.tsv"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match="empty file"):
        TransferCache(str(tmp_path / "ce"), str(empty), f)
    with pytest.raises(DataError, match="file not found"):
        TransferCache(str(tmp_path / "cm"), str(tmp_path / "missing.tsv"), f)


def test_real_transfer_file(tok, shared_data_dir, tmp_path):
    transfer = str(shared_data_dir / "tasks" / "sst2-small" / "transfer.tsv")
    f = Featurizer(tok, 64, pad_to="longest")
    cache = TransferCache(str(tmp_path / "c"), transfer, f, shard_size=3000)
    assert cache.num_examples == 8000 and len(cache.shard_paths) == 3
    chunk = cache.load_chunk(1, 3000)
    assert chunk["input_ids"].shape == (3000, cache.max_length)
    direct = f.encode(list(iter_transfer_file(transfer)))
    np.testing.assert_array_equal(chunk["input_ids"], direct["input_ids"][3000:6000])
    assert sum(int(b["input_ids"].shape[0]) for b in cache.dataset(1000)) == 8000


def test_caching_a_transfer_file_reports_its_progress(tok, tmp_path, caplog):
    import logging
    path = _write_transfer(tmp_path / "t.txt", 50)
    with caplog.at_level(logging.INFO):
        TransferCache(str(tmp_path / "cache"), str(path), Featurizer(tok, 16), read_batch=8, progress="log")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"caching {path}")]
    assert lines and lines[-1].startswith(f"caching {path} (8 lines a step): step 7/7"), lines
    caplog.clear()
    with caplog.at_level(logging.INFO):
        TransferCache(str(tmp_path / "cache2"), str(path), Featurizer(tok, 16), read_batch=8)  # progress off
    assert not [r for r in caplog.records if r.getMessage().startswith("caching ")]
