"""The teacher: loaded from a Hugging Face checkpoint, fine-tuned on the labelled data (or reloaded when
teacher_model_dir already holds it), and its outputs on the transfer set computed once per chunk and cached."""
from __future__ import annotations

import hashlib
import os
import zipfile

import keras
import numpy as np
from absl import logging

from xtremedistil_tf import io
from xtremedistil_tf.convert.hf import load_hf_encoder
from xtremedistil_tf.errors import CheckpointError
from xtremedistil_tf.models.heads import TaskModel

TEACHER_WEIGHTS = "teacher.weights.h5"
TEACHER_CONFIG = "teacher-config.json"


def save_model(model: keras.Model, folder: str, weights_name: str, config_name: str, extra: dict | None = None):
    """Keras weights plus the JSON config that rebuilds the model, each written atomically."""
    os.makedirs(folder, exist_ok=True)
    with io.atomic_path(os.path.join(folder, weights_name)) as tmp:
        model.save_weights(tmp)
    io.write_json(os.path.join(folder, config_name),
                  {"class_name": type(model).__name__, "config": model.get_config(), **(extra or {})})


def load_model(folder: str, weights_name: str, config_name: str, dtype=None) -> keras.Model:
    """Rebuilds a model saved by `save_model`; a damaged config or weights file raises CheckpointError naming it."""
    config_path, weights_path = os.path.join(folder, config_name), os.path.join(folder, weights_name)
    spec = io.read_json(config_path)
    try:
        config = dict(spec["config"])
        cls = {"TaskModel": TaskModel}.get(spec["class_name"])
        if cls is None:
            from xtremedistil_tf.distill.student import Student
            cls = Student
        model = cls.from_config(config)
        model.build()
    except Exception as e:  # noqa: BLE001 - any failure to rebuild is one clear message
        raise CheckpointError(f"{config_path}: cannot rebuild the model ({type(e).__name__}: "
                              f"{_first_line(e)}); remove {folder} to start it again") from None
    try:
        model.load_weights(weights_path)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{weights_path}: cannot load the weights ({type(e).__name__}: {_first_line(e)}); "
                              f"remove {folder} to start it again") from None
    return model


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else ""


def has_saved_teacher(teacher_model_dir: str) -> bool:
    return bool(teacher_model_dir) and all(
        os.path.isfile(os.path.join(teacher_model_dir, f)) for f in (TEACHER_WEIGHTS, TEACHER_CONFIG))


def build_teacher(checkpoint: str, *, num_labels: int, kind: str, faithful: bool, dropout=None):
    """A TaskModel on the teacher's encoder. Faithful mode uses the original's head (dropout -> linear on the
    first token, no pooler); the default mode uses the checkpoint's own head style (pooler for BERT)."""
    loaded = load_hf_encoder(checkpoint, name="teacher")
    encoder = loaded.encoder
    if faithful and encoder.pooler is not None:
        kwargs = encoder.get_config()
        kwargs["use_pooler"] = False
        weights = {v.path.split("/", 1)[1]: v.numpy() for v in encoder.weights if "pooler" not in v.path}
        encoder = type(encoder)(**kwargs)
        encoder.build()
        for v in encoder.weights:
            v.assign(weights[v.path.split("/", 1)[1]])
    model = TaskModel(encoder, num_labels, kind=kind, dropout=dropout, name="teacher_model",
                      head_style="bert" if faithful else None)
    model.build()
    return model, loaded


def weights_id(path: str) -> str:
    """A cheap identity of a weights file: its size and the sha256 of its first and last MiB."""
    h = hashlib.sha256()
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        if size > 2 << 20:
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read())
    return f"{size}-{h.hexdigest()[:16]}"


class TeacherOutputCache:
    """Teacher logits (and first-token representations) per transfer chunk, as `chunk-{i}.npz` in model_dir,
    keyed by the teacher's weights and the transfer cache so a changed teacher is never reused."""

    def __init__(self, folder: str, key: dict):
        self.folder = folder
        self.key = key
        manifest = os.path.join(folder, "manifest.json")
        if os.path.isfile(manifest) and io.read_json(manifest) != key:
            logging.info("teacher outputs: the teacher or the transfer set changed; recomputing")
            for name in os.listdir(folder):
                if name.startswith("chunk-"):
                    os.remove(os.path.join(folder, name))
        os.makedirs(folder, exist_ok=True)
        io.write_json(manifest, key)

    def path(self, index: int) -> str:
        return os.path.join(self.folder, f"chunk-{index}.npz")

    def get(self, index: int, compute) -> dict[str, np.ndarray]:
        path = self.path(index)
        if os.path.isfile(path):
            try:
                with np.load(path) as data:
                    return {k: data[k] for k in data.files}
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # damaged by hand: recompute it
                logging.warning("teacher outputs: %s is unreadable (%s); recomputing it", path, e)
        outputs = compute()
        with io.atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **outputs)
        return outputs
