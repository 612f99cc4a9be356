"""TensorBoard event files of a run: training curves by step, dev metrics by epoch, the config and the plan as text.

`Recorder(logdir)` writes with `tf.summary.create_file_writer`, which goes through TensorFlow's file systems, so a
gs:// logdir is written in place. Summaries are written with `tf.summary.write` and the scalars/text plugins'
metadata, which is what `tf.summary.scalar` / `tf.summary.text` write, without needing the tensorboard package
(only viewing needs it). The writer is opened at the first summary, so a run that has nothing to do (a finished
run rerun) leaves no event file behind. `NoRecorder` is the disabled variant (non-chief workers, --notensorboard).

Tags: `<phase>/train_loss`, `<phase>/learning_rate`, `<phase>/examples_per_second` by the run's global step
(`Recorder.step`: phases continue where the previous one ended); `<phase>/epoch_train_loss`, `<phase>/val_loss`,
`<phase>/dev/<metric>` by epoch of the phase; text `config` and `stage_plan`.
"""
from __future__ import annotations

import json
import time
from typing import Callable

import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from xtremedistil_tf import fs

TENSORBOARD_DIR = "tensorboard"  # the event files' folder in a run's output folder

SCALARS = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
TEXT = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="text"))


class Recorder:
    """Summaries into TensorBoard event files in `logdir` (local or gs://).

    Args:
      logdir: the folder of the event files (created with the first summary).
      every: how often (in steps) a phase writes its training curves (`StepScalars`).

    `step` is the run's global training step, advanced by the phases' `StepScalars`, so the curve of a phase
    follows the previous phase's; a resumed phase sets it back from its checkpoint (`phase.run_phase`).
    """

    enabled = True

    def __init__(self, logdir: str, *, every: int = 50):
        self.logdir = logdir
        self.every = max(int(every), 1)
        self.step = 0
        self._writer = None

    def _write(self, tag: str, tensor, step: int, metadata) -> None:
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.logdir, max_queue=1000, flush_millis=30_000)
        with self._writer.as_default():
            tf.summary.write(tag, tensor, step=int(step), metadata=metadata)

    def scalar(self, tag: str, value: float, step: int | None = None) -> None:
        """`value` under `tag` at `step` (default: the global step)."""
        self._write(tag, tf.constant(float(value), tf.float32), self.step if step is None else step, SCALARS)

    def scalars(self, prefix: str, values: dict, step: int | None = None) -> None:
        """Every number of `values` as `<prefix>/<key>` (other values, e.g. per-type tables, are left out)."""
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.scalar(f"{prefix}/{key}", value, step)

    def record_config(self, values: dict) -> None:
        """The run's configuration as the text summary `config`, shown as written."""
        self.text("config", verbatim(json.dumps(values, indent=2, default=str)))

    def text(self, tag: str, s: str, step: int = 0) -> None:
        """`s` as a text summary (TensorBoard renders it as Markdown; indent by four spaces for verbatim text)."""
        self._write(tag, tf.constant(s), step, TEXT)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flushes and closes the event file; a later summary opens a new one."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()


class NoRecorder(Recorder):
    """A Recorder that writes nothing (TensorBoard off, or a non-chief worker)."""

    enabled = False

    def __init__(self):
        super().__init__("", every=50)

    def _write(self, tag, tensor, step, metadata) -> None:
        pass


def run_recorder(folder: str, config, *, chief: bool) -> Recorder:
    """A run's Recorder: `folder/tensorboard` for the chief with --tensorboard (a point every --log_every steps, 50
    when that is 0), else a NoRecorder (non-chief workers record nothing)."""
    if not (chief and config.tensorboard):
        return NoRecorder()
    return Recorder(fs.join(folder, TENSORBOARD_DIR), every=config.log_every or 50)


def verbatim(s: str) -> str:
    """`s` as a Markdown code block, so TensorBoard's text tab shows it as written."""
    return "\n".join("    " + line for line in s.splitlines())


class StepScalars:
    """A phase's training curves, an `on_batch(index, loss)` hook of `loop.run_epoch`: every `recorder.every` steps
    (and at the end of an epoch) the mean loss of the steps since the last point, the optimizer's learning rate
    (a schedule evaluated at its current iteration) and the examples a second, at the run's global step.

    Args:
      recorder: the Recorder (its `step` advances by one a step).
      prefix: the phase's name, the tags' prefix.
      global_batch_size: examples a step (the last batch of an epoch may hold fewer: see `start_epoch`).
      learning_rate: the optimizer's current learning rate.
    """

    def __init__(self, recorder: Recorder, prefix: str, *, global_batch_size: int,
                 learning_rate: Callable[[], float]):
        self.recorder, self.prefix = recorder, prefix
        self.global_batch_size = global_batch_size
        self.learning_rate = learning_rate
        self.start_epoch(None)

    def start_epoch(self, examples: int | None) -> None:
        """A new epoch over `examples` rows (None: unknown, every step counted as a whole batch)."""
        self.examples = examples
        self._reset_window(0)

    def _reset_window(self, seen: int) -> None:
        self.loss_sum, self.steps, self.seen_at_start, self.t0 = 0.0, 0, seen, time.time()

    def _seen(self, index: int) -> int:
        done = (index + 1) * self.global_batch_size
        return done if self.examples is None else min(done, self.examples)

    def __call__(self, index: int, loss: float) -> None:
        self.recorder.step += 1
        self.loss_sum += loss
        self.steps += 1
        self.index = index
        if self.recorder.step % self.recorder.every == 0:
            self._write()

    def end_epoch(self) -> None:
        """Writes the steps since the last point."""
        if self.steps:
            self._write()

    def _write(self) -> None:
        r, p = self.recorder, self.prefix
        seen = self._seen(self.index)
        r.scalar(f"{p}/train_loss", self.loss_sum / self.steps)
        r.scalar(f"{p}/learning_rate", self.learning_rate())
        r.scalar(f"{p}/examples_per_second", (seen - self.seen_at_start) / max(time.time() - self.t0, 1e-9))
        self._reset_window(seen)
