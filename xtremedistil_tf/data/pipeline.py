"""The on-disk token cache of a (large) transfer file, read in chunks, and the original's shuffled row order.
(Training batches are drawn by `train.loop.dataset_from_arrays`.)"""
from __future__ import annotations

import hashlib
import os
import time
from typing import Iterator

import numpy as np
from absl import logging

from xtremedistil_tf import fs
from xtremedistil_tf import io as xio
from xtremedistil_tf.data.readers import Example, MissingFileError, count_lines, iter_transfer_file
from xtremedistil_tf.data.tokenize import Encoded, Featurizer, log_truncation
from xtremedistil_tf.progress import make_progress

# ---------------------------------------------------------------------------------------------------------------
# Transfer cache
# ---------------------------------------------------------------------------------------------------------------

_FORMAT_VERSION = 1
_MANIFEST = "manifest.json"
_SHARD_GLOB = "transfer-*.tfrecord"
_HASH_SPAN = 1 << 20  # bytes hashed at each end of the file (all of it when the file is at most twice that)


def file_fingerprint(path: str, *, full_hash: bool = False) -> dict:
    """Real path (a URL as is), size, mtime (ns; 0 where the store keeps none) and sha256 of the first and last MiB
    (or of all of it)."""
    path = os.fspath(path)
    try:
        size, mtime_ns = fs.size(path), fs.mtime_ns(path)
        f = fs.open(path, "rb")
    except FileNotFoundError:
        raise MissingFileError(path, None, "file not found") from None
    h = hashlib.sha256()
    with f:
        if full_hash or size <= 2 * _HASH_SPAN:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
            what = "full"
        else:
            h.update(f.read(_HASH_SPAN))
            f.seek(size - _HASH_SPAN)
            h.update(f.read(_HASH_SPAN))
            what = "first+last MiB"
    return {"path": fs.realpath(path), "size": int(size), "mtime_ns": int(mtime_ns),
            "sha256": h.hexdigest(), "hashed": what}


class TransferCache:
    """Tokenizes a transfer file once, streaming, into sharded TFRecords under ``cache_dir``, and streams them.

    Each record is one example (``tf.train.Example`` with int32 little-endian bytes ``input_ids`` and
    ``token_type_ids``, unpadded and truncated to seq_len); padding happens on read, to ``seq_len`` or, with the
    featurizer's ``pad_to="longest"``, to the longest example of the whole file (the original's behaviour).
    ``manifest.json`` records the input file (real path, size, mtime, sha256 of its first/last MiB), the
    tokenizer (name, vocabulary size, sha256 of its definition), seq_len, kind, pairwise, the counts and the
    shards. The cache is reused when all of those match and the shards are intact, else rebuilt; shards and the
    manifest are written atomically (the manifest last), so an interrupted build is redone, never half-read.
    Memory stays flat in the file size: the file is read and written in batches of ``read_batch`` examples.
    """

    def __init__(self, cache_dir: str, transfer_file: str, featurizer: Featurizer, *, kind: str = "classification",
                 pairwise: bool = False, shard_size: int = 100_000, read_batch: int = 8192,
                 full_hash: bool = False, build: bool = True, progress: str = "none"):
        if shard_size < 1 or read_batch < 1:
            raise ValueError("shard_size and read_batch must be positive")
        self.cache_dir = os.fspath(cache_dir)
        self.transfer_file = os.fspath(transfer_file)
        self.featurizer = featurizer
        self.kind = kind
        self.pairwise = bool(pairwise)
        self.shard_size = int(shard_size)
        self.read_batch = int(read_batch)
        self.full_hash = full_hash
        self.progress = progress
        self.manifest: dict | None = None
        self.rebuilt = False
        if build:
            self.ensure()

    # -- build / reuse -----------------------------------------------------------------------------------------
    def _key(self) -> dict:
        return {
            "format_version": _FORMAT_VERSION,
            "file": file_fingerprint(self.transfer_file, full_hash=self.full_hash),
            "tokenizer": self.featurizer.fingerprint(),
            "seq_len": self.featurizer.seq_len,
            "kind": self.kind,
            "pairwise": self.pairwise,
        }

    def _stale_reason(self, key: dict) -> str | None:
        path = fs.join(self.cache_dir, _MANIFEST)
        if not fs.exists(path):
            return "no cache yet"
        try:
            manifest = xio.read_json(path)
        except (OSError, ValueError) as e:
            return f"unreadable manifest ({e})"
        old = manifest.get("key", {})
        for field in ("format_version", "file", "tokenizer", "seq_len", "kind", "pairwise"):
            if old.get(field) != key[field]:
                return f"{field} changed ({_short(old.get(field))} -> {_short(key[field])})"
        for shard in manifest.get("shards", []):
            p = fs.join(self.cache_dir, shard["file"])
            if not fs.exists(p) or fs.size(p) != shard["bytes"]:
                return f"shard {shard['file']} missing or changed"
        self.manifest = manifest
        return None

    def ensure(self) -> bool:
        """Builds the cache unless a valid one exists; returns True when it (re)built."""
        key = self._key()
        reason = self._stale_reason(key)
        if reason is None:
            logging.info("transfer cache %s: reusing %d examples of %s", self.cache_dir,
                         self.manifest["num_examples"], self.transfer_file)
            self.rebuilt = False
            return False
        logging.info("transfer cache %s: building from %s (%s)", self.cache_dir, self.transfer_file, reason)
        self._build(key)
        self.rebuilt = True
        return True

    def _build(self, key: dict) -> None:
        import tensorflow as tf

        fs.makedirs(self.cache_dir)
        xio.clean_stale_temporaries(self.cache_dir)
        fs.remove(fs.join(self.cache_dir, _MANIFEST))  # first: a half-rebuilt cache must never look valid
        for old in fs.glob(fs.join(self.cache_dir, _SHARD_GLOB)):
            fs.remove(old)
        start = time.time()
        shards: list[dict] = []
        stats = {"num_examples": 0, "num_truncated": 0, "max_length": 0, "num_tokens": 0}
        state = {"writer": None, "ctx": None, "count": 0, "name": None}

        def close_shard() -> None:
            if state["writer"] is None:
                return
            state["writer"].close()
            state["ctx"].__exit__(None, None, None)
            path = fs.join(self.cache_dir, state["name"])
            shards.append({"file": state["name"], "count": state["count"], "bytes": fs.size(path)})
            state.update(writer=None, ctx=None, count=0, name=None)

        def open_shard() -> None:
            name = f"transfer-{len(shards):05d}.tfrecord"
            ctx = xio.atomic_path(fs.join(self.cache_dir, name))
            tmp = ctx.__enter__()
            state.update(writer=tf.io.TFRecordWriter(tmp), ctx=ctx, count=0, name=name)

        total = -(-count_lines(self.transfer_file) // self.read_batch) if self.progress != "none" else None
        reporter = make_progress(self.progress, log_every=max(1, (total or 0) // 10))
        reporter.start(total, f"caching {self.transfer_file} ({self.read_batch} lines a step)")
        try:
            for step, batch in enumerate(_batched(iter_transfer_file(self.transfer_file, kind=self.kind,
                                                                     pairwise=self.pairwise), self.read_batch), 1):
                enc = self.featurizer.encode_unpadded(batch, kind=self.kind)
                stats["num_examples"] += int(enc.lengths.size)
                stats["num_truncated"] += enc.num_truncated
                stats["num_tokens"] += int(enc.lengths.sum())
                stats["max_length"] = max(stats["max_length"], int(enc.lengths.max()))
                for record in _records(enc):
                    if state["writer"] is None:
                        open_shard()
                    state["writer"].write(record)
                    state["count"] += 1
                    if state["count"] >= self.shard_size:
                        close_shard()
                reporter.update(step)
            close_shard()
        except BaseException as e:
            if state["ctx"] is not None:
                state["writer"].close()
                state["ctx"].__exit__(type(e), e, e.__traceback__)
            raise
        finally:
            reporter.finish()
        seconds = time.time() - start
        manifest = {"key": key, "shards": shards, **stats, "build_seconds": round(seconds, 3),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        xio.write_json(fs.join(self.cache_dir, _MANIFEST), manifest)
        self.manifest = manifest
        log_truncation(self.transfer_file, stats["num_examples"], stats["num_truncated"], self.featurizer.seq_len)
        logging.info("transfer cache %s: %d examples in %d shard(s), %.1f s (%.0f examples/s)", self.cache_dir,
                     stats["num_examples"], len(shards), seconds, stats["num_examples"] / max(seconds, 1e-9))

    # -- reading -----------------------------------------------------------------------------------------------
    def _require(self) -> dict:
        if self.manifest is None:
            self.ensure()
        return self.manifest

    @property
    def num_examples(self) -> int:
        """How many examples the cache holds (building it first if needed)."""
        return int(self._require()["num_examples"])

    @property
    def max_length(self) -> int:
        """The longest (truncated) example of the file, special tokens included."""
        return int(self._require()["max_length"])

    @property
    def padded_length(self) -> int:
        """The length examples are padded to: seq_len, or the file's longest with pad_to="longest"."""
        return self.max_length if self.featurizer.pad_to == "longest" else self.featurizer.seq_len

    @property
    def shard_paths(self) -> list[str]:
        """The cache's TFRecord shard files, in example order."""
        return [fs.join(self.cache_dir, s["file"]) for s in self._require()["shards"]]

    def num_chunks(self, chunk_size: int) -> int:
        """How many chunks of `chunk_size` examples cover the cache (the last may be shorter)."""
        return -(-self.num_examples // int(chunk_size))

    def _parse_fn(self):
        import tensorflow as tf

        length = self.padded_length
        pad_id, pad_type = self.featurizer.pad_id, self.featurizer.pad_type_id
        spec = {"input_ids": tf.io.FixedLenFeature([], tf.string),
                "token_type_ids": tf.io.FixedLenFeature([], tf.string)}

        def parse(serialized):
            feats = tf.io.parse_example(serialized, spec)
            lengths = tf.strings.length(feats["input_ids"]) // 4
            mask = tf.sequence_mask(lengths, length, dtype=tf.int32)
            ids = tf.io.decode_raw(feats["input_ids"], tf.int32, little_endian=True, fixed_length=4 * length)
            types = tf.io.decode_raw(feats["token_type_ids"], tf.int32, little_endian=True, fixed_length=4 * length)
            keep = tf.cast(mask, tf.bool)
            return {"input_ids": tf.where(keep, ids, pad_id), "attention_mask": mask,
                    "token_type_ids": tf.where(keep, types, pad_type)}

        return parse

    def _records_dataset(self, start: int, stop: int):
        """The serialized records [start, stop) as one dataset, opening only the shards that hold them."""
        import tensorflow as tf

        parts = None
        offset = 0
        for shard in self._require()["shards"]:
            lo, hi = offset, offset + shard["count"]
            offset = hi
            if hi <= start or lo >= stop:
                continue
            ds = tf.data.TFRecordDataset(fs.join(self.cache_dir, shard["file"]))
            if start > lo:
                ds = ds.skip(start - lo)
            ds = ds.take(min(hi, stop) - max(lo, start))
            parts = ds if parts is None else parts.concatenate(ds)
        return parts

    def load_chunk(self, index: int, chunk_size: int) -> dict[str, np.ndarray]:
        """Examples [index * chunk_size, (index + 1) * chunk_size) as int32 numpy arrays [n, padded_length]."""
        n = self.num_examples
        index, chunk_size = int(index), int(chunk_size)
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        start = index * chunk_size
        if index < 0 or start >= n:
            raise IndexError(f"chunk {index} of size {chunk_size} is outside the {n} cached examples")
        stop = min(start + chunk_size, n)
        ds = self._records_dataset(start, stop).batch(min(4096, stop - start)).map(self._parse_fn())
        return _concat(ds)

    def load_rows(self, rows, *, block: int = 65536) -> dict[str, np.ndarray]:
        """The examples at positions `rows` (distinct, any order), in that order: one pass over the cache in blocks
        of `block` records, parsing only the selected rows (chunks of a shuffled transfer set)."""
        import tensorflow as tf

        n = self.num_examples
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if rows.size == 0 or rows.min() < 0 or rows.max() >= n:
            raise IndexError(f"rows outside the {n} cached examples")
        wanted = np.zeros(n, dtype=bool)
        wanted[rows] = True
        if int(wanted.sum()) != rows.size:
            raise ValueError("rows must be distinct")
        keep = tf.constant(wanted)

        def select(i, records):
            start = i * block
            return tf.boolean_mask(records, keep[start:start + tf.shape(records, out_type=tf.int64)[0]])

        ds = (self._records_dataset(0, n).batch(block).enumerate().map(select).unbatch()
              .batch(min(4096, rows.size)).map(self._parse_fn()))
        arrays = _concat(ds)
        position = np.searchsorted(np.flatnonzero(wanted), rows)
        return {k: v[position] for k, v in arrays.items()}

    def iter_chunks(self, chunk_size: int) -> Iterator[dict[str, np.ndarray]]:
        """Yields every chunk in order (see load_chunk), so only one chunk is in memory at a time."""
        for i in range(self.num_chunks(chunk_size)):
            yield self.load_chunk(i, chunk_size)

    def dataset(self, batch_size: int, *, shuffle: bool = False, seed: int = 0, shuffle_buffer: int = 10_000,
                drop_remainder: bool = False, repeat: bool = False):
        """Streams every cached example as batches of the inputs dict (global ``batch_size``).

        With ``shuffle``, shard order and a ``shuffle_buffer`` of records are shuffled with ``seed``.
        """
        import tensorflow as tf

        files = self.shard_paths
        if shuffle:
            files_ds = tf.data.Dataset.from_tensor_slices(files).shuffle(len(files), seed=seed,
                                                                         reshuffle_each_iteration=True)
            ds = files_ds.interleave(tf.data.TFRecordDataset, cycle_length=min(2, len(files)),
                                     num_parallel_calls=1, deterministic=True)
            ds = ds.shuffle(int(shuffle_buffer), seed=seed, reshuffle_each_iteration=True)
        else:
            ds = tf.data.TFRecordDataset(files)
        if repeat:
            ds = ds.repeat()
        ds = ds.batch(int(batch_size), drop_remainder=drop_remainder)
        ds = ds.map(self._parse_fn(), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.prefetch(tf.data.AUTOTUNE)


def shuffled_row_order(n: int, seed: int) -> np.ndarray:
    """The row order the original gave every file it read: sklearn.utils.shuffle(..., random_state=seed) after
    tokenisation, that is numpy's legacy RandomState(seed) permutation (frozen across numpy versions)."""
    return np.random.RandomState(seed).permutation(int(n))


def _concat(ds) -> dict[str, np.ndarray]:
    parts = list(ds.as_numpy_iterator())
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _batched(it: Iterator[Example], n: int) -> Iterator[list[Example]]:
    batch: list[Example] = []
    for e in it:
        batch.append(e)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch


def _records(enc: Encoded) -> Iterator[bytes]:
    import tensorflow as tf

    ends = np.cumsum(enc.lengths)
    starts = ends - enc.lengths
    ids = enc.ids.astype("<i4", copy=False)
    types = enc.type_ids.astype("<i4", copy=False) if enc.type_ids is not None else np.zeros_like(ids)
    Feature, BytesList = tf.train.Feature, tf.train.BytesList
    for s, e in zip(starts.tolist(), ends.tolist()):
        yield tf.train.Example(features=tf.train.Features(feature={
            "input_ids": Feature(bytes_list=BytesList(value=[ids[s:e].tobytes()])),
            "token_type_ids": Feature(bytes_list=BytesList(value=[types[s:e].tobytes()])),
        })).SerializeToString()


def _short(value) -> str:
    if isinstance(value, dict):
        keys = ("path", "size", "mtime_ns", "sha256", "name", "vocab_size")
        return "{" + ", ".join(f"{k}={str(value[k])[:16]}" for k in keys if k in value) + "}"
    return repr(value)
