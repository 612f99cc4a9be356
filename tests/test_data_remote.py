"""Data files on a file system with a scheme (TF's in-memory ram://, standing in for gs://) read exactly as the same
files on the local disk: readers, task loading, the transfer cache, the tokenizer, and the missing-file errors."""
from __future__ import annotations

import json
import logging
import uuid

import numpy as np
import pytest

from xtremedistil_tf import fs, io
from xtremedistil_tf.data.pipeline import TransferCache, file_fingerprint
from xtremedistil_tf.data.readers import (
    DataError,
    Example,
    MissingFileError,
    count_lines,
    iter_transfer_file,
    read_conll,
    read_glue,
    read_squad_json,
    read_task_file,
    read_task_folder,
)
from xtremedistil_tf.data.tasks import load_task
from xtremedistil_tf.data.tokenize import Featurizer, load_tokenizer, tokenizer_fingerprint
from xtremedistil_tf.errors import ConfigError

pytest.importorskip("tensorflow")

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "config.json")


@pytest.fixture
def roots(tmp_path):
    """(local root, ram:// root): the same files are written under both by `put`."""
    remote = f"ram://xd-test-{uuid.uuid4().hex}"
    yield str(tmp_path / "data"), remote
    fs.rmtree(remote)


def put(roots, rel: str, content: str | bytes) -> tuple[str, str]:
    """Writes `content` at `rel` under both roots; returns the (local, remote) paths."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    paths = tuple(fs.join(root, *rel.split("/")) for root in roots)
    for p in paths:
        io.write_bytes(p, data)
    return paths


def same_task(local, remote, local_root, remote_root):
    """Two TaskData (or QAData) read from the two roots are equal but for the root in their paths."""
    assert remote.path == local.path.replace(local_root, remote_root, 1)
    assert remote.examples == local.examples and len(local.examples) > 0
    for field in ("label_names", "kind", "pairwise", "version"):
        assert getattr(remote, field, None) == getattr(local, field, None), field


def logged(caplog, fn, root):
    """`fn()`'s result and its log lines with `root` replaced, so the two sides' logs can be compared."""
    caplog.clear()
    with caplog.at_level(logging.INFO):
        out = fn()
    return out, [r.getMessage().replace(root, "<root>") for r in caplog.records if r.name == "absl"]


def error_of(fn, root):
    """The error `fn()` raises: its type, and its message with `root` replaced."""
    with pytest.raises(Exception) as info:
        fn()
    return type(info.value), str(info.value).replace(root, "<root>")


# ------------------------------------------------------------------------------------------------------------
# Readers and load_task
# ------------------------------------------------------------------------------------------------------------


def test_task_folder_reads_alike(roots, caplog):
    local_root, remote_root = roots
    # A BOM, CRLF endings, a lone \r inside a text (kept: only \n ends a line), blank lines, non-ASCII text.
    put(roots, "task/train.tsv", b"\xef\xbb\xbfgood film\tpos\r\nbad\rfilm\tneg\n\n\nso so\tpos\ncaf\xc3\xa9\tneg\n")
    put(roots, "task/dev.tsv", "fine\tpos\nworse\tneg\n")
    put(roots, "task/test.tsv", "unseen\tpos\n")
    put(roots, "task/labels.tsv", "neg\n\npos\n")
    (local, local_logs), (remote, remote_logs) = (
        logged(caplog, lambda r=r: read_task_folder(fs.join(r, "task")), r) for r in roots)
    assert set(local) == set(remote) == {"train", "dev", "test"}
    for split in local:
        same_task(local[split], remote[split], local_root, remote_root)
    assert local["train"].examples[1].text_a == "bad\rfilm" and local["train"].label_names == ["neg", "pos"]
    assert remote_logs == local_logs and any("skipped 2 blank line(s)" in m for m in local_logs)

    local_task, remote_task = (load_task(fs.join(r, "task")) for r in roots)
    for split in local_task.splits:
        same_task(local_task.splits[split], remote_task.splits[split], local_root, remote_root)

    # A malformed line: the same error, naming the file and the line.
    put(roots, "bad.tsv", "one\tpos\ntwo\tpos\textra\n")
    errors = [error_of(lambda r=r: read_task_file(fs.join(r, "bad.tsv"), kind="classification", pairwise=False,
                                                  label_names=None), r) for r in roots]
    assert errors[0] == errors[1] == (DataError, "<root>/bad.tsv:2: expected 2 tab-separated column(s) "
                                                 "(text<TAB>label), found 3")
    # A NER task folder reads alike too.
    put(roots, "ner/train.tsv", "John lives here\tB-PER O O\n")
    put(roots, "ner/labels.tsv", "O\nB-PER\n")
    local_ner, remote_ner = (read_task_folder(fs.join(r, "ner"), do_NER=True) for r in roots)
    same_task(local_ner["train"], remote_ner["train"], local_root, remote_root)


def test_glue_folder_reads_alike(roots, caplog):
    local_root, remote_root = roots
    put(roots, "glue/SST-2/train.tsv", "sentence\tlabel\nnice film \t1\nawful\t0\n\nbad\t5\n")
    put(roots, "glue/SST-2/dev.tsv", "sentence\tlabel\nok \t1\n")
    put(roots, "glue/SST-2/test.tsv", "index\tsentence\n7\tunknown .\n8\tmore .\n")
    (local, local_logs), (remote, remote_logs) = (
        logged(caplog, lambda r=r: read_glue("sst2", fs.join(r, "glue"), skip_bad_lines=True), r) for r in roots)
    assert set(local) == set(remote) == {"train", "dev", "test"}
    for split in local:
        same_task(local[split], remote[split], local_root, remote_root)
    assert [e.idx for e in remote["test"].examples] == [7, 8]
    assert remote_logs == local_logs and any("skipped 1 bad line(s)" in m for m in local_logs)

    # load_task does not skip bad lines: the same error, at the same line.
    errors = [error_of(lambda r=r: load_task(fs.join(r, "glue"), glue_task="SST-2"), r) for r in roots]
    assert errors[0] == errors[1] == (DataError, "<root>/glue/SST-2/train.tsv:5: label '5' is not in the label set "
                                                 "(0, 1 = negative, positive)")
    put(roots, "glue/SST-2/train.tsv", "sentence\tlabel\nnice film \t1\nawful\t0\n")
    local_task, remote_task = (load_task(fs.join(r, "glue"), glue_task="SST-2") for r in roots)
    assert set(remote_task.splits) == {"train", "dev", "test"}
    for split in local_task.splits:
        same_task(local_task.splits[split], remote_task.splits[split], local_root, remote_root)
    errors = [error_of(lambda r=r: read_glue("mrpc", fs.join(r, "glue")), r) for r in roots]
    assert errors[0] == errors[1] and errors[0][0] is MissingFileError


def test_conll_reads_alike(roots, caplog):
    local_root, remote_root = roots
    conll = "-DOCSTART- -X- O O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\r\n"
    put(roots, "ner/train.txt", conll)
    put(roots, "ner/dev.txt", "Blackburn NNP B-NP B-PER\n")
    (local, local_logs), (remote, remote_logs) = (
        logged(caplog, lambda r=r: read_conll(fs.join(r, "ner", "train.txt")), r) for r in roots)
    same_task(local, remote, local_root, remote_root)
    assert len(remote.examples) == 2 and remote_logs == local_logs

    local_task, remote_task = (load_task(fs.join(r, "ner"), do_NER=True) for r in roots)
    assert set(local_task.splits) == set(remote_task.splits) == {"train", "dev"}
    for split in local_task.splits:
        same_task(local_task.splits[split], remote_task.splits[split], local_root, remote_root)
    # A tag outside the label set: the same error at the same line.
    errors = [error_of(lambda r=r: read_conll(fs.join(r, "ner", "train.txt"), label_names=["O", "B-ORG"]), r)
              for r in roots]
    assert errors[0] == errors[1] == (DataError, "<root>/ner/train.txt:6: tag 'B-PER' is not in the label set "
                                                 "('O', 'B-ORG')")


def test_squad_json_reads_alike(roots):
    local_root, remote_root = roots
    ctx = "The Ash flows through Brontis. Its mayor is Ada Lind, elected in 1990."
    doc = {"version": "v2.0", "data": [{"title": "Brontis", "paragraphs": [{"context": ctx, "qas": [
        {"id": "a1", "question": "Who is the mayor?", "answers": [{"text": "Ada Lind", "answer_start": 44}]},
        {"id": "a2", "question": "Who was mayor before?", "answers": [], "is_impossible": True,
         "plausible_answers": [{"text": "1990", "answer_start": 65}]}]}]}]}
    text = json.dumps(doc, indent=1)
    put(roots, "qa/train.json", b"\xef\xbb\xbf" + text.encode("utf-8"))
    put(roots, "qa/dev.json", text)
    local, remote = (read_squad_json(fs.join(r, "qa", "train.json")) for r in roots)
    same_task(local, remote, local_root, remote_root)
    assert remote.version == "2.0" and remote.examples[1].is_impossible

    local_task, remote_task = (load_task(fs.join(r, "qa"), do_QA=True) for r in roots)
    assert remote_task.glue_task == local_task.glue_task == "squad_v2"
    for split in local_task.splits:
        same_task(local_task.splits[split], remote_task.splits[split], local_root, remote_root)
    # An answer that is not at its offset: the same error, at the line of the question's id.
    put(roots, "qa/bad.json", text.replace('"answer_start": 44', '"answer_start": 40'))
    errors = [error_of(lambda r=r: read_squad_json(fs.join(r, "qa", "bad.json")), r) for r in roots]
    assert errors[0] == errors[1] and errors[0][0] is DataError and errors[0][1].startswith("<root>/qa/bad.json:")


def test_missing_remote_files_are_clear_errors(roots):
    local_root, remote_root = roots
    put(roots, "task/dev.tsv", "x\tpos\n")
    for read in (lambda r: read_task_folder(fs.join(r, "nope")),
                 lambda r: read_task_folder(fs.join(r, "task")),  # no train.tsv
                 lambda r: read_task_file(fs.join(r, "nope.tsv"), kind="classification", pairwise=False,
                                          label_names=None),
                 lambda r: read_conll(fs.join(r, "nope.txt")),
                 lambda r: read_squad_json(fs.join(r, "nope.json")),
                 lambda r: read_glue("sst2", fs.join(r, "nope")),
                 lambda r: list(iter_transfer_file(fs.join(r, "nope.tsv"))),
                 lambda r: count_lines(fs.join(r, "nope.tsv")),
                 lambda r: file_fingerprint(fs.join(r, "nope.tsv"))):
        local, remote = (error_of(lambda r=r: read(r), r) for r in roots)
        assert local == remote and local[0] is MissingFileError, local
        with pytest.raises(FileNotFoundError, match=remote_root):
            read(remote_root)
    # A folder where a file is expected.
    local, remote = (error_of(lambda r=r: read_conll(fs.join(r, "task")), r) for r in roots)
    assert local == remote == (DataError, "<root>/task: is a folder; expected a data file")


# ------------------------------------------------------------------------------------------------------------
# Transfer file, transfer cache, tokenizer
# ------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tok(minilm_dir):
    return load_tokenizer(str(minilm_dir))


def _transfer_text(n: int, start: int = 0) -> str:
    words = ["movie", "great", "terrible", "plot", "actors", "the", "a", "unbelievablyx", "cinematography"]
    lines = []
    for i in range(start, start + n):
        lines.append(" ".join(words[(i * 7 + j) % len(words)] for j in range(1 + i % 13)) + f" {i}")
        if i % 17 == 0:
            lines.append("")
    return "\r\n".join(lines) + "\n"


def test_transfer_file_and_cache_alike(roots, tok):
    local_root, remote_root = roots
    local_file, remote_file = put(roots, "transfer.tsv", _transfer_text(150))
    assert list(iter_transfer_file(remote_file)) == list(iter_transfer_file(local_file))
    assert count_lines(remote_file) == count_lines(local_file) == 150

    local_fp, remote_fp = file_fingerprint(local_file), file_fingerprint(remote_file)
    assert remote_fp["path"] == remote_file and remote_fp["size"] == local_fp["size"]
    assert remote_fp["sha256"] == local_fp["sha256"]

    caches = {r: fs.join(r, "model", "transfer_cache") for r in roots}
    built = {r: TransferCache(caches[r], f, Featurizer(tok, 12), shard_size=64)
             for r, f in ((local_root, local_file), (remote_root, remote_file))}
    local, remote = built[local_root], built[remote_root]
    assert local.rebuilt and remote.rebuilt and remote.num_examples == local.num_examples == 150
    assert remote.shard_paths == [fs.join(caches[remote_root], f"transfer-{i:05d}.tfrecord") for i in range(3)]
    assert all(fs.isfile(p) for p in remote.shard_paths)
    assert remote.manifest["shards"] == local.manifest["shards"]
    direct = Featurizer(tok, 12).encode(list(iter_transfer_file(local_file)))
    for index, size in ((0, 100), (1, 100), (0, 150)):
        lo, hi = index * size, min((index + 1) * size, 150)
        a, b = local.load_chunk(index, size), remote.load_chunk(index, size)
        for k in ("input_ids", "attention_mask", "token_type_ids"):
            np.testing.assert_array_equal(b[k], a[k])
            np.testing.assert_array_equal(b[k], direct[k][lo:hi])
    rows = np.random.RandomState(0).permutation(150)[:40]
    np.testing.assert_array_equal(remote.load_rows(rows)["input_ids"], local.load_rows(rows)["input_ids"])

    # Unchanged: reused, on both sides.
    again = TransferCache(caches[remote_root], remote_file, Featurizer(tok, 12), shard_size=64)
    assert not again.rebuilt and again.manifest == remote.manifest

    # The file changes (ram:// keeps no mtime: the size and hash tell): rebuilt with the new content.
    for path in (local_file, remote_file):
        io.write_text(path, _transfer_text(170, start=1))
    changed = {r: TransferCache(caches[r], f, Featurizer(tok, 12), shard_size=64)
               for r, f in ((local_root, local_file), (remote_root, remote_file))}
    assert all(c.rebuilt and c.num_examples == 170 and len(c.shard_paths) == 3 for c in changed.values())
    np.testing.assert_array_equal(changed[remote_root].load_chunk(0, 170)["input_ids"],
                                  changed[local_root].load_chunk(0, 170)["input_ids"])
    assert fs.glob(fs.join(caches[remote_root], "transfer-*.tfrecord")) == changed[remote_root].shard_paths
    assert not [n for n in fs.listdir(caches[remote_root]) if n.startswith(".")]  # no temporaries left


def test_load_tokenizer_from_a_ram_copy(minilm_dir, tok):
    remote = f"ram://xd-test-{uuid.uuid4().hex}/tokenizer"
    try:
        for name in TOKENIZER_FILES:
            io.write_bytes(fs.join(remote, name), (minilm_dir / name).read_bytes())
        remote_tok = load_tokenizer(remote)
        assert remote_tok.name_or_path == remote
        assert tokenizer_fingerprint(remote_tok)["sha256"] == tokenizer_fingerprint(tok)["sha256"]
        texts = ["Hello, World! Distillation of café prices.", "unbelievablyx cinematography"]
        assert remote_tok(texts)["input_ids"] == tok(texts)["input_ids"]
        a, b = Featurizer(tok, 16), Featurizer(remote_tok, 16)
        rows = [Example(t, None, None, i) for i, t in enumerate(texts)]
        np.testing.assert_array_equal(b.encode(rows)["input_ids"], a.encode(rows)["input_ids"])
        with pytest.raises(ConfigError, match=f"{remote}-missing"):
            load_tokenizer(remote + "-missing")
    finally:
        fs.rmtree(fs.dirname(remote))
