"""Crash-safe checkpoints of a training phase: weights, optimizer state, the best weights so far and a JSON state,
written together into one folder that replaces the previous one atomically.

The model's weights are stored explicitly (every variable of `model.weights`, in order, in snapshots.npz):
`tf.train.Checkpoint` does not see the layers a Keras 3 model keeps in Python lists (the encoder's transformer
blocks, the student's projections), so on its own it restores only part of the model. It still carries the
optimizer's state (iterations, moments)."""
from __future__ import annotations

import zipfile

import keras
import numpy as np
import tensorflow as tf

from xtremedistil_tf import fs, io
from xtremedistil_tf.errors import CheckpointError

STATE_FILE = "state.json"
MODEL_SNAPSHOT = "model"  # reserved snapshot name: the model's own weights at save time


def get_weights(model: keras.Model) -> list[np.ndarray]:
    """Copies of every variable of `model.weights`, in order (what tf.train.Checkpoint would miss included)."""
    return [np.array(v.numpy()) for v in model.weights]


def set_weights(model: keras.Model, weights: list[np.ndarray]) -> None:
    """Assigns `weights` (from get_weights) to `model.weights` in order, in place."""
    for v, w in zip(model.weights, weights):
        v.assign(w)


class PhaseCheckpoint:
    """One folder per phase: `ckpt.*` (tf.train.Checkpoint of model + optimizer), `snapshots.npz`, `state.json`."""

    def __init__(self, folder: str, model: keras.Model, optimizer: keras.optimizers.Optimizer | None):
        self.folder = folder
        self.model = model
        self.optimizer = optimizer
        objects = {"model": model}
        if optimizer is not None:
            objects["optimizer"] = optimizer
        self._ckpt = tf.train.Checkpoint(**objects)

    def exists(self) -> bool:
        """Whether the folder holds a committed checkpoint (with its state.json), so a phase resumes instead of
        starting over."""
        return io.committed(self.folder) and fs.isfile(fs.join(self.folder, STATE_FILE))

    def save(self, state: dict, snapshots: dict[str, list[np.ndarray] | None]) -> None:
        """Writes weights, optimizer, named weight snapshots (e.g. the best so far) and the state, all or nothing."""
        with io.atomic_dir(self.folder) as tmp:
            self._ckpt.write(fs.join(tmp, "ckpt"))
            snapshots = {**snapshots, MODEL_SNAPSHOT: get_weights(self.model)}
            arrays = {f"{name}__{i}": w for name, ws in snapshots.items() if ws is not None
                      for i, w in enumerate(ws)}
            with open(fs.join(tmp, "snapshots.npz"), "wb") as f:
                np.savez(f, **arrays)
            io.write_json(fs.join(tmp, STATE_FILE), state)

    def restore(self) -> tuple[dict, dict[str, list[np.ndarray]]]:
        """Restores model and optimizer in place; returns the saved state and weight snapshots. A damaged or
        foreign checkpoint raises CheckpointError naming the folder."""
        try:
            return self._restore()
        except CheckpointError:
            raise
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, tf.errors.OpError) as e:
            text = str(e).strip().splitlines()
            raise CheckpointError(f"{self.folder}: cannot restore this checkpoint ({type(e).__name__}: "
                                  f"{text[0][:300] if text else ''}); remove the folder to redo its phase") from None

    def _restore(self) -> tuple[dict, dict[str, list[np.ndarray]]]:
        status = self._ckpt.read(fs.join(self.folder, "ckpt"))
        status.expect_partial()
        state = io.read_json(fs.join(self.folder, STATE_FILE))
        snapshots: dict[str, list] = {}
        data = io.load_npz(fs.join(self.folder, "snapshots.npz"))
        for k in sorted(data, key=lambda k: (k.rsplit("__", 1)[0], int(k.rsplit("__", 1)[1]))):
            snapshots.setdefault(k.rsplit("__", 1)[0], []).append(data[k])
        weights = snapshots.pop(MODEL_SNAPSHOT, None)
        if weights is not None:  # older checkpoints lack it and rely on tf.train.Checkpoint alone
            shapes = [tuple(v.shape) for v in self.model.weights]
            if [tuple(w.shape) for w in weights] != shapes:
                raise CheckpointError(f"{self.folder}: the checkpoint holds {len(weights)} weights that do not fit "
                                      f"the model's {len(shapes)}; it was written by a different model")
            set_weights(self.model, weights)
        return state, snapshots
