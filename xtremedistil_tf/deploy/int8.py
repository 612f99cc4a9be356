"""int8 students in the runtimes users deploy to, each re-scored on the task's splits in its own runtime.

`export_int8` writes `<folder>/` (atomically, as a whole): every runtime's float and int8 files and
`manifest.json` (each file's size, sha256, the fixed length, the number of labels, the padding bias). Every file
is loaded back through `load_exported` (which refuses a changed, corrupted or mismatched file), run on every split,
scored by the caller's scorer from the runtime's own logits, and timed at batch 1 and 32. A runtime that is not
installed is skipped, with the reason in the result. The exported models mask padded keys with a bias fitted to
the attention scores (`export_padding_bias`), not -1e9.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import statistics
import tempfile
import time
from typing import Callable

import numpy as np
from absl import logging

from xtremedistil_tf import fs, io
from xtremedistil_tf.deploy.runtimes import RUNTIMES, Runner, input_signature, serve_logits
from xtremedistil_tf.errors import UserError
from xtremedistil_tf.models.encoder import INPUT_NAMES

MANIFEST = "manifest.json"
INT8_DIR = "int8"
LATENCY_BATCHES = (1, 32)
SCORE_BATCH = 32
Scorer = Callable[[str, np.ndarray], dict]  # (split, logits) -> metrics


def pad_to(arrays: dict, length: int) -> dict:
    """The inputs padded (or, beyond `length`, refused) to exactly `length` tokens a row, int32."""
    width = arrays["input_ids"].shape[1]
    if width > length:
        raise ValueError(f"inputs of {width} tokens do not fit the exported length {length}")
    return {k: np.pad(np.asarray(arrays[k], np.int32), [(0, 0), (0, length - width)]) for k in INPUT_NAMES}


def predict(run: Runner, arrays: dict, length: int, *, token_level: bool, batch: int = SCORE_BATCH) -> np.ndarray:
    """The runtime's logits for every row of `arrays`; token-level logits cut back to the arrays' own width."""
    width = arrays["input_ids"].shape[1]
    padded = pad_to(arrays, length)
    n = len(padded["input_ids"])
    out = [run({k: v[i:i + batch] for k, v in padded.items()}) for i in range(0, n, batch)]
    logits = np.concatenate(out) if out else np.zeros((0,), np.float32)
    return logits[:, :width] if token_level else logits


def latency(run: Callable[[], object], *, min_repeats: int, min_seconds: float = 1.0, warmup: int = 2) -> float:
    """Median seconds of one call of `run` after `warmup` calls, over at least `min_repeats` calls and
    `min_seconds` (timing by hand: no library times an arbitrary callable's median)."""
    for _ in range(warmup):
        run()
    times, start = [], time.perf_counter()
    while len(times) < min_repeats or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def latency_inputs(arrays: dict, length: int, batch: int) -> dict:
    """`batch` real rows (repeated if the split is smaller) padded to `length`."""
    padded = pad_to(arrays, length)
    rows = np.resize(np.arange(len(padded["input_ids"])), batch)
    return {k: v[rows] for k, v in padded.items()}


def measure(run: Runner, arrays: dict, length: int, *, min_seconds: float = 1.0) -> dict:
    """{"latency_ms": {batch: median ms}, "throughput": {batch: examples/s}} at LATENCY_BATCHES, each over at
    least `min_seconds` of calls."""
    result = {"latency_ms": {}, "throughput": {}}
    for b in LATENCY_BATCHES:
        feed = latency_inputs(arrays, length, b)
        seconds = latency(lambda: run(feed), min_repeats=20 if b == 1 else 5, min_seconds=min_seconds)
        result["latency_ms"][str(b)] = round(seconds * 1000, 3)
        result["throughput"][str(b)] = round(b / seconds, 1)
    return result


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_exported(folder: str, name: str, *, threads: int = 1) -> tuple[Runner, dict]:
    """A runner for the file `name` of an `export_int8` folder, and its manifest entry. Refuses a file the
    manifest does not list, one whose size or sha256 changed since it was written, and one that is not this
    task's student."""
    manifest_path = fs.join(folder, MANIFEST)
    if not fs.exists(manifest_path):
        raise UserError(f"{folder}: no {MANIFEST}; not a folder written by --export_int8")
    manifest = io.read_json(manifest_path)
    entry = manifest["files"].get(name)
    if entry is None:
        raise UserError(f"{fs.join(folder, name)}: not listed in {manifest_path}")
    runtime = RUNTIMES[entry["runtime"]]
    with fs.local_copy(fs.join(folder, name)) as local:
        size, digest = fs.size(local), sha256(local)
        if (size, digest) != (entry["bytes"], entry["sha256"]):
            raise UserError(f"{fs.join(folder, name)}: changed since it was written ({size} bytes, sha256 "
                            f"{digest[:12]}...; {MANIFEST} lists {entry['bytes']} bytes, {entry['sha256'][:12]}...)")
        run = runtime.load(local, threads=threads, num_labels=manifest["num_labels"],
                           token_level=manifest["token_level"])
    return run, entry


def split_scores(model_entry: dict, metric: str) -> dict[str, float]:
    """{split: main metric} of one exported model's results (its entry holds the scored splits beside file, bytes
    and timings)."""
    return {s: v[metric] for s, v in model_entry.items() if isinstance(v, dict) and metric in v}


def _points(value: float, reference: float) -> float:
    return round((value - reference) * 100, 3)


def export_int8(model, folder: str, *, length: int, num_labels: int, token_level: bool, calibration: dict,
                splits: dict[str, dict], score: Scorer, metric: str, threads: int = 1,
                runtimes: tuple[str, ...] = tuple(RUNTIMES), min_seconds: float = 1.0,
                padding_bias: float | None = None, variants: dict[str, tuple[str, ...]] | None = None) -> dict:
    """Writes `model` (a task model) in every runtime, float and int8, re-scores each file on every split in
    its own runtime and times it; returns the results (also the body of the manifest).

    Args:
      folder: the output folder (local or remote), replaced as a whole.
      length: the fixed sequence length of LiteRT files and of every timing.
      calibration: int inputs by name, the sample that calibrates static / full-integer quantization.
      splits: {split: inputs by name} to re-score; `score(split, logits)` turns a runtime's logits into metrics.
      metric: the main metric of `score`'s results, for the float-vs-int8 differences.
      threads: the runtimes' intra-op threads for scoring and timing (0: one per CPU core).
      min_seconds: the least time spent timing each model at each batch size.
      padding_bias: the bias of padded keys in the exports (None: fitted by `export_padding_bias`).
      variants: {runtime: variants} to write (default: all of each runtime's).
    """
    calibration = pad_to(calibration, length)
    threads = threads or os.cpu_count() or 1
    result = {"length": length, "num_labels": num_labels, "token_level": token_level, "threads": threads,
              "metric": metric, "calibration_examples": int(len(calibration["input_ids"])),
              "latency_split": next(iter(splits)), "runtimes": {}, "files": {}}
    result["padding_bias"] = export_padding_bias(model, calibration) if padding_bias is None else padding_bias
    with io.atomic_dir(folder) as out, tempfile.TemporaryDirectory(prefix="xtremedistil-int8-") as scratch, \
            padding_bias_set_to(model, result["padding_bias"]):
        saved_model = os.path.join(scratch, "saved_model")
        _fixed_length_saved_model(model, saved_model, length)
        for name in runtimes:
            runtime = RUNTIMES[name]
            absent = runtime.missing()
            if absent:
                logging.warning("int8: %s skipped (%s)", name, absent)
                result["runtimes"][name] = {"skipped": absent}
                continue
            t0 = time.time()
            paths = runtime.write(model, saved_model, out, calibration, length, (variants or {}).get(name))
            info = {"version": runtime.version(), "convert_seconds": round(time.time() - t0, 1), "models": {}}
            for variant, path in paths.items():
                file = os.path.basename(path)
                result["files"][file] = {"runtime": name, "variant": variant, "bytes": fs.size(path),
                                         "sha256": sha256(path)}
                run = runtime.load(path, threads=threads, num_labels=num_labels, token_level=token_level)
                scores = {split: score(split, predict(run, arrays, length, token_level=token_level))
                          for split, arrays in splits.items()}
                timing = measure(run, splits[result["latency_split"]], length, min_seconds=min_seconds)
                info["models"][variant] = {"file": file, "bytes": result["files"][file]["bytes"], **scores,
                                           **timing}
            _compare(info["models"], metric)
            result["runtimes"][name] = info
            _log_runtime(name, info, metric)
        io.write_json(os.path.join(out, MANIFEST), result)
    return result


PADDING_MARGIN = 30.0


def export_padding_bias(model, calibration: dict, batch: int = 32) -> float:
    """The additive bias of padded keys in exported models: the spread of the attention scores on `calibration`
    (every layer and head, real and padded keys) plus PADDING_MARGIN, negated. A padded key then scores at least
    30 below every real one (weight below e^-30 of the best), as with -1e9, while the score tensor's range, which
    int8 quantizes in 256 steps, stays that of the real scores: with -1e9 every real score falls into one step and
    attention becomes uniform (the reference student lost 8.5 points of accuracy in LiteRT full-integer)."""
    import tensorflow as tf
    low, high = np.inf, -np.inf
    encoder = model.encoder
    for start in range(0, len(calibration["input_ids"]), batch):
        feed = {k: tf.constant(v[start:start + batch]) for k, v in calibration.items() if k in INPUT_NAMES}
        for q, k, _ in encoder(feed, training=False, output_qkv=True)["qkv"]:
            b, t = tf.shape(q)[0], tf.shape(q)[1]
            heads = encoder.num_heads
            size = encoder.hidden_size // heads
            q, k = (tf.reshape(tf.cast(x, tf.float32), [b, t, heads, size]) for x in (q, k))
            scores = tf.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(size)
            low, high = min(low, float(tf.reduce_min(scores))), max(high, float(tf.reduce_max(scores)))
    return -float(np.ceil(high - low + PADDING_MARGIN))


@contextlib.contextmanager
def padding_bias_set_to(model, value: float):
    """`model`'s encoder traces with padding bias `value` inside the block (and its own afterwards)."""
    encoder = model.encoder
    saved = encoder.padding_bias_value
    encoder.padding_bias_value = float(value)
    try:
        yield
    finally:
        encoder.padding_bias_value = saved


def _fixed_length_saved_model(model, path: str, length: int) -> None:
    """A SavedModel of `serve_logits(model)` at `length` tokens, dynamic batch (LiteRT converts from it)."""
    import keras
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", serve_logits(model), input_signature=input_signature(length))
    archive.write_out(path, verbose=False)


def _compare(models: dict, metric: str) -> None:
    """Each int8 model against the same runtime's float model: metric difference in points, size and latency
    ratios (float / int8: above 1 means int8 is smaller or faster)."""
    base = models.get("float")
    if base is None:
        return
    base_scores = split_scores(base, metric)
    for variant, info in models.items():
        if variant == "float":
            continue
        info["vs_float"] = {
            "points": {split: _points(value, base_scores[split])
                       for split, value in split_scores(info, metric).items()},
            "size_ratio": round(base["bytes"] / info["bytes"], 2),
            "speedup": {b: round(base["latency_ms"][b] / info["latency_ms"][b], 2) for b in info["latency_ms"]},
        }


def _log_runtime(name: str, info: dict, metric: str) -> None:
    for variant, m in info["models"].items():
        splits = ", ".join(f"{s} {v:.4f}" for s, v in split_scores(m, metric).items())
        vs = m.get("vs_float")
        extra = ""
        if vs:
            extra = (f"; vs float: {', '.join(f'{s} {p:+.2f} pt' for s, p in vs['points'].items())}, "
                     f"{vs['size_ratio']}x smaller, {vs['speedup']['1']}x / {vs['speedup']['32']}x faster "
                     "at batch 1 / 32")
        logging.info("int8: %s %s: %s %s, %.1f MB, %.1f / %.1f ms at batch 1 / 32%s", name, variant, metric,
                     splits, m["bytes"] / 1e6, m["latency_ms"]["1"], m["latency_ms"]["32"], extra)
