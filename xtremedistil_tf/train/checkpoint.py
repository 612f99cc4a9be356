"""Crash-safe checkpoints of a training phase: weights, optimizer state, the best weights so far and a JSON state,
written together into one folder that replaces the previous one atomically.

Everything is stored explicitly, variable by variable in order, in snapshots.npz: the model's weights
(`tf.train.Checkpoint` does not see the layers a Keras 3 model keeps in Python lists), the optimizer's variables
(step, moments), and named weight snapshots such as the best so far. A snapshot equal to the model's weights is
stored once, as a reference (after an improving epoch the best weights are the current ones), and a finished phase
drops the optimizer state it will never use. Checkpoints of earlier versions (a `ckpt` of model and optimizer
beside the snapshots) still restore."""
from __future__ import annotations

import zipfile

import keras
import numpy as np
import tensorflow as tf

from xtremedistil_tf import fs, io
from xtremedistil_tf.errors import CheckpointError

STATE_FILE = "state.json"
MODEL_SNAPSHOT = "model"  # reserved snapshot names: the model's own weights at save time,
OPTIMIZER_STATE = "optimizer"  # and the optimizer's variables
SAME_AS_MODEL = "model"  # the key `<name>__model` marks a snapshot equal to the model's weights


def get_weights(model: keras.Model) -> list[np.ndarray]:
    """Copies of every variable of `model.weights`, in order (what tf.train.Checkpoint would miss included)."""
    return [np.array(v.numpy()) for v in model.weights]


def set_weights(model: keras.Model, weights: list[np.ndarray]) -> None:
    """Assigns `weights` (from get_weights) to `model.weights` in order, in place."""
    for v, w in zip(model.weights, weights):
        v.assign(w)


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b))


class PhaseCheckpoint:
    """One folder per phase: `snapshots.npz` (model, optimizer, named snapshots) and `state.json`."""

    def __init__(self, folder: str, model: keras.Model, optimizer: keras.optimizers.Optimizer | None):
        self.folder = folder
        self.model = model
        self.optimizer = optimizer

    def exists(self) -> bool:
        """Whether the folder holds a committed checkpoint (with its state.json), so a phase resumes instead of
        starting over."""
        return io.committed(self.folder) and fs.isfile(fs.join(self.folder, STATE_FILE))

    def save(self, state: dict, snapshots: dict[str, list[np.ndarray] | None], *, optimizer_state: bool = True) -> None:
        """Writes the weights, the optimizer's state (unless `optimizer_state` is False: a finished phase), named
        weight snapshots (e.g. the best so far) and the state, all or nothing."""
        reserved = {MODEL_SNAPSHOT, OPTIMIZER_STATE} & set(snapshots)
        if reserved:
            raise ValueError(f"reserved snapshot names: {sorted(reserved)}")
        weights = get_weights(self.model)

        def arrays():
            yield from ((f"{MODEL_SNAPSHOT}__{i}", w) for i, w in enumerate(weights))
            if optimizer_state and self.optimizer is not None:
                yield from ((f"{OPTIMIZER_STATE}__{i}", v.numpy()) for i, v in enumerate(self.optimizer.variables))
            for name, ws in snapshots.items():
                if ws is None:
                    continue
                if _same(ws, weights):
                    yield f"{name}__{SAME_AS_MODEL}", np.zeros(0, np.int8)
                else:
                    yield from ((f"{name}__{i}", w) for i, w in enumerate(ws))

        with io.atomic_dir(self.folder) as tmp:
            with open(fs.join(tmp, "snapshots.npz"), "wb") as f:
                io.write_npz(f, arrays())
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
        if fs.exists(fs.join(self.folder, "ckpt.index")):  # an earlier version's optimizer state
            objects = {"model": self.model, **({"optimizer": self.optimizer} if self.optimizer is not None else {})}
            tf.train.Checkpoint(**objects).read(fs.join(self.folder, "ckpt")).expect_partial()
        state = io.read_json(fs.join(self.folder, STATE_FILE))
        parts: dict[str, dict[int, np.ndarray]] = {}
        same_as_model = []
        for key, array in io.load_npz(fs.join(self.folder, "snapshots.npz")).items():
            name, index = key.rsplit("__", 1)
            if index == SAME_AS_MODEL:
                same_as_model.append(name)
            else:
                parts.setdefault(name, {})[int(index)] = array
        snapshots = {name: [p[i] for i in sorted(p)] for name, p in parts.items()}
        weights = snapshots.pop(MODEL_SNAPSHOT, None)
        optimizer_state = snapshots.pop(OPTIMIZER_STATE, None)
        if weights is not None:  # the oldest checkpoints lack it and rely on tf.train.Checkpoint alone
            self._check(weights, self.model.weights, "weights", "model")
            set_weights(self.model, weights)
            snapshots.update({name: weights for name in same_as_model})
        if optimizer_state is not None and self.optimizer is not None:
            self._check(optimizer_state, self.optimizer.variables, "optimizer variables", "optimizer")
            for v, w in zip(self.optimizer.variables, optimizer_state):
                v.assign(w)
        return state, snapshots

    def _check(self, arrays: list[np.ndarray], variables, what: str, owner: str) -> None:
        shapes = [tuple(v.shape) for v in variables]
        if [tuple(a.shape) for a in arrays] != shapes:
            raise CheckpointError(f"{self.folder}: the checkpoint holds {len(arrays)} {what} that do not fit the "
                                  f"{owner}'s {len(shapes)}; it was written by a different {owner}")
