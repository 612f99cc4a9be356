"""The teacher: built from a Hugging Face checkpoint (fine-tuned by the run, or reloaded when teacher_model_dir
already holds it), and its outputs on the transfer set computed once per chunk and cached."""
from __future__ import annotations

import hashlib
import time
import zipfile

import numpy as np
import tensorflow as tf
from absl import logging

from xtremedistil_tf import fs, io
from xtremedistil_tf.convert.hf import load_hf_encoder
from xtremedistil_tf.models.encoder import INPUT_NAMES
from xtremedistil_tf.models.heads import TaskModel

TEACHER_WEIGHTS = "teacher.weights.h5"
TEACHER_CONFIG = "teacher-config.json"


def has_saved_teacher(teacher_model_dir: str) -> bool:
    """Whether the folder holds a fine-tuned teacher (weights and config), so it is reloaded, not fine-tuned."""
    return bool(teacher_model_dir) and all(
        fs.isfile(fs.join(teacher_model_dir, f)) for f in (TEACHER_WEIGHTS, TEACHER_CONFIG))


def build_teacher(checkpoint: str, *, num_labels: int, kind: str, first_token_head: bool, dropout=None):
    """A TaskModel on the teacher's encoder: with `first_token_head` the original's head (dropout -> linear on the
    first token, no pooler), otherwise the checkpoint's own head style (pooler for BERT)."""
    loaded = load_hf_encoder(checkpoint, name="teacher")
    encoder = loaded.encoder
    if first_token_head and encoder.pooler is not None:
        kwargs = encoder.get_config()
        kwargs["use_pooler"] = False
        weights = {v.path.split("/", 1)[1]: v.numpy() for v in encoder.weights if "pooler" not in v.path}
        encoder = type(encoder)(**kwargs)
        encoder.build()
        for v in encoder.weights:
            v.assign(weights[v.path.split("/", 1)[1]])
    model = TaskModel(encoder, num_labels, kind=kind, dropout=dropout, name="teacher_model",
                      head_style="bert" if first_token_head else None)
    model.build()
    return model, loaded


def weights_id(path: str) -> str:
    """A cheap identity of a weights file: its size and the sha256 of its first and last MiB."""
    h = hashlib.sha256()
    size = fs.size(path)
    with fs.open(path, "rb") as f:
        h.update(f.read(1 << 20))
        if size > 2 << 20:
            f.seek(size - (1 << 20))
            h.update(f.read())
    return f"{size}-{h.hexdigest()[:16]}"


class TeacherOutputCache:
    """Teacher logits (and first-token representations) per transfer chunk, as `chunk-{i}.npz` in model_dir,
    keyed by the teacher's weights and the transfer cache so a changed teacher is never reused."""

    def __init__(self, folder: str, key: dict):
        self.folder = folder
        self.key = key
        manifest = fs.join(folder, "manifest.json")
        if fs.isfile(manifest) and io.read_json(manifest) != key:
            logging.info("teacher outputs: the teacher or the transfer set changed; recomputing")
            for name in fs.listdir(folder):
                if name.startswith("chunk-"):
                    fs.remove(fs.join(folder, name))
        fs.makedirs(folder)
        io.write_json(manifest, key)

    def path(self, index: int) -> str:
        """The cache file of transfer chunk `index`."""
        return fs.join(self.folder, f"chunk-{index}.npz")

    def get(self, index: int, compute) -> dict[str, np.ndarray]:
        """Chunk `index`'s cached outputs, or `compute()`'s result saved atomically first (also when the file is
        unreadable), so the teacher runs once per chunk across stages and reruns."""
        path = self.path(index)
        if fs.isfile(path):
            try:
                return io.load_npz(path)
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # damaged by hand: recompute it
                logging.warning("teacher outputs: %s is unreadable (%s); recomputing it", path, e)
        outputs = compute()
        with io.atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **outputs)
        return outputs


class TeacherOutputs:
    """The teacher's logits (and, where the representation stage reads them from the cache, first-token
    representations) on each transfer chunk, computed once and cached in `cache`.

    Args:
      teacher: the fine-tuned teacher.
      cache: the `TeacherOutputCache`.
      predict: `predict(fn, arrays, token_outputs)` runs a function over arrays under the run's strategy.
      with_representation: also cache the first-token representation (`rep_0`).
      token_level: logits have a token axis (NER).
    """

    def __init__(self, teacher, cache: TeacherOutputCache, predict, *, with_representation: bool, token_level: bool):
        self.cache = cache
        self._predict = predict
        self._token_outputs = ("logits",) if token_level else ()

        # One function object for the teacher, so every chunk reuses its compiled predict step (a new closure
        # per chunk retraced the teacher and kept every trace).
        def fn(batch):
            out = teacher(batch, training=False)
            result = {"logits": tf.cast(out["logits"], "float32")}
            if with_representation:
                result["rep_0"] = tf.cast(out["sequence_output"][:, 0], "float32")
            return result

        self._fn = fn

    def for_chunk(self, index: int, chunk: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """`chunk` with the teacher's outputs added as `t_logits` (and `t_rep_0`)."""
        def compute():
            t0 = time.time()
            out = self._predict(self._fn, {k: chunk[k] for k in INPUT_NAMES}, self._token_outputs)
            logging.info("teacher outputs for transfer chunk %d (%d examples): %.1f s", index,
                         len(chunk["input_ids"]), time.time() - t0)
            return out

        outputs = self.cache.get(index, compute)
        return {**chunk, **{f"t_{k}": v for k, v in outputs.items()}}
