"""One training phase with early stopping over one or more data chunks, checkpointed after every epoch.

This is the control flow shared by teacher fine-tuning, every distillation stage and run_glue.py. Within a chunk,
training stops after `patience` epochs without a better score; across chunks (the transfer set is read in chunks),
a chunk that does not beat the best score so far counts against the same patience and its weights are reverted.
Scores are "higher is better" (pass minus a loss). A `StoppingRule` says when the best epoch's weights come back
and which epoch scores a chunk (a mode policy picks it). Every epoch ends with a checkpoint, so a killed run resumes
at the next epoch with the same weights, optimizer state and early-stopping counters.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable

import numpy as np
from absl import logging

from xtremedistil_tf.train.checkpoint import PhaseCheckpoint, get_weights, set_weights

NEG_INF = -math.inf


@dataclasses.dataclass(frozen=True)
class StoppingRule:
    """Early-stopping choices that differ between modes.

    Args:
      always_restore_best: restore the best epoch at the end of every chunk; False restores it only when
        training stopped early (Keras' EarlyStopping(restore_best_weights=True) in TF 2.3-2.5).
      score_chunk_by_best: a chunk counts with its best epoch's score; False: with its last epoch's.
    """
    always_restore_best: bool = True
    score_chunk_by_best: bool = True

    def restores(self, stopped: bool) -> bool:
        """Whether a chunk's best epoch comes back at its end (`stopped`: early stopping ended the chunk)."""
        return stopped or self.always_restore_best


@dataclasses.dataclass
class PhaseResult:
    """What a phase reports: its best score, the per-epoch history, the best weights and the wall time (time spent
    before a resume included)."""
    best_score: float
    history: list[dict]
    best_weights: list | None
    wall_time: float


def _size(data) -> dict:
    """Training examples and real (unpadded) tokens of a chunk, so the history gives examples and tokens a second."""
    train = data.get("train") if isinstance(data, dict) else None
    parts = [t for t in (train if isinstance(train, list) else [train]) if t is not None]  # a list: several sources
    if not parts or not all(isinstance(t, dict) and "attention_mask" in t for t in parts):
        return {}
    return {"examples": sum(int(len(t["attention_mask"])) for t in parts),
            "tokens": sum(int(np.sum(t["attention_mask"])) for t in parts)}


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def run_phase(name: str, *, model, checkpoint: PhaseCheckpoint, num_chunks: int,
              load_chunk: Callable[[int], Any], train_epoch: Callable[[Any, int, int], float],
              score: Callable[[Any], tuple[float, dict]], epochs: int, patience: int,
              rule: StoppingRule = StoppingRule(),
              cross_chunk: bool = True, carried: tuple[float, list] | None = None, recorder=None) -> PhaseResult:
    """Runs (or resumes) a phase; leaves the model holding the phase's final weights.

    `recorder` (a `tensorboard.Recorder`) gets each epoch's train loss and `score`'s metrics by epoch of the phase
    (`<name>/epoch_train_loss`, losses as `<name>/<key>`, the others as `<name>/dev/<key>`); its global step is
    saved with the checkpoint and set back on resume, so a resumed phase's curves continue where they stopped."""
    snapshots: dict[str, list | None] = {"chunk_best": None, "phase_best": carried[1] if carried else None}
    state = {"chunk": 0, "epoch": 0, "chunk_best": None, "chunk_wait": 0, "last_score": None,
             "phase_best": _finite(carried[0]) if carried else None, "phase_wait": 0, "history": [],
             "done": False, "elapsed": 0.0}
    if checkpoint.exists():
        state, saved = checkpoint.restore()
        snapshots.update(saved)
        if recorder is not None and "global_step" in state:
            recorder.step = state["global_step"]
        logging.info("%s: resuming at chunk %d, epoch %d", name, state["chunk"], state["epoch"])
        if state["done"]:
            return PhaseResult(_val(state["phase_best"]), state["history"], snapshots.get("phase_best"),
                               state["elapsed"])
    start = time.time() - state["elapsed"]

    def save():
        state["elapsed"] = time.time() - start
        if recorder is not None and recorder.enabled:
            state["global_step"] = recorder.step
        checkpoint.save(state, snapshots, optimizer_state=not state["done"])

    while state["chunk"] < num_chunks and not state["done"]:
        chunk = state["chunk"]
        data = load_chunk(chunk)
        stopped = False
        while state["epoch"] < epochs:
            epoch = state["epoch"]
            t0 = time.time()
            loss = train_epoch(data, chunk, epoch)
            value, metrics = score(data)
            state["history"].append({"chunk": chunk, "epoch": epoch, "loss": loss, "score": value,
                                     "seconds": round(time.time() - t0, 3), **_size(data), **metrics})
            logging.info("%s chunk %d epoch %d: train loss %.5f, score %.5f %s", name, chunk, epoch + 1, loss,
                         value, " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float)))
            if recorder is not None:
                _record_epoch(recorder, name, len(state["history"]), loss, metrics)
            state["last_score"] = value
            if value > _val(state["chunk_best"]):
                state["chunk_best"], state["chunk_wait"] = value, 0
                snapshots["chunk_best"] = get_weights(model)
            else:
                state["chunk_wait"] += 1
            state["epoch"] += 1
            stopped = state["chunk_wait"] >= patience
            if stopped or state["epoch"] >= epochs:
                break
            save()
        # End of the chunk: restore its best epoch, then compare with the best chunk so far.
        if snapshots["chunk_best"] is not None and rule.restores(stopped):
            set_weights(model, snapshots["chunk_best"])
        chunk_score = _val(state["chunk_best"]) if rule.score_chunk_by_best else state["last_score"]
        if not cross_chunk or chunk_score > _val(state["phase_best"]):
            if not cross_chunk:  # the score of the weights the model now holds
                chunk_score = _val(state["chunk_best"]) if rule.restores(stopped) else state["last_score"]
            state["phase_best"], state["phase_wait"] = chunk_score, 0
            snapshots["phase_best"] = get_weights(model)
        else:
            state["phase_wait"] += 1
            if snapshots["phase_best"] is not None:
                set_weights(model, snapshots["phase_best"])
            logging.info("%s: chunk %d did not improve (%d/%d)", name, chunk, state["phase_wait"], patience)
            if state["phase_wait"] >= patience:
                state["done"] = True
        state.update(chunk=chunk + 1, epoch=0, chunk_best=None, chunk_wait=0, last_score=None)
        snapshots["chunk_best"] = None
        if state["chunk"] >= num_chunks:
            state["done"] = True
        save()
    return PhaseResult(_val(state["phase_best"]), state["history"], snapshots.get("phase_best"), state["elapsed"])


def _val(x):
    return NEG_INF if x is None else x


def _record_epoch(recorder, name: str, epoch: int, loss: float, metrics: dict) -> None:
    """An epoch's train loss and metrics at `epoch` (counted over the phase's chunks, from 1)."""
    recorder.scalar(f"{name}/epoch_train_loss", loss, step=epoch)
    recorder.scalars(name, {k: v for k, v in metrics.items() if k.endswith("loss")}, step=epoch)
    recorder.scalars(f"{name}/dev", {k: v for k, v in metrics.items() if not k.endswith("loss")}, step=epoch)
