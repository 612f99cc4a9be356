"""TensorBoard event files of a run (train/tensorboard.py): a tiny Trainer.fit writes the training curves by the
run's global step (a second phase continuing the first's), the dev metrics by epoch and the config as text, read
back with TensorBoard's own reader (TF's event-file reader where the tensorboard package is not installed)."""
from __future__ import annotations

import json
import uuid
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from xtremedistil_tf import fs
from xtremedistil_tf.train import loop
from xtremedistil_tf.train.schedules import warmup_linear_decay
from xtremedistil_tf.train.tensorboard import NoRecorder, Recorder, verbatim
from xtremedistil_tf.train.trainer import Batching, LossModel, Trainer

ROWS, BATCH, EVERY = 40, 8, 2  # 5 steps an epoch, a point every 2 global steps and at the end of each epoch


def read_events(logdir: str) -> tuple[dict[str, list[tuple[int, np.ndarray]]], dict[str, str]]:
    """{tag: [(step, value), ...]} and {tag: plugin name} of every summary under `logdir`."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:  # tensorboard is needed to view the files, not to write them
        return _read_with_tf(logdir)
    acc = EventAccumulator(logdir, size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    values = {tag: [(e.step, tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)]
              for tag in acc.Tags()["tensors"]}
    plugins = {tag: acc.SummaryMetadata(tag).plugin_data.plugin_name for tag in values}
    return values, plugins


def _read_with_tf(logdir: str):
    values: dict[str, list] = {}
    plugins: dict[str, str] = {}
    for name in sorted(fs.listdir(logdir)):
        for event in tf.compat.v1.train.summary_iterator(fs.join(logdir, name)):
            for v in event.summary.value:
                values.setdefault(v.tag, []).append((event.step, tf.make_ndarray(v.tensor)))
                if v.metadata.plugin_data.plugin_name:
                    plugins[v.tag] = v.metadata.plugin_data.plugin_name
    return values, plugins


class Toy(LossModel):
    def per_example_loss(self, batch, training):
        return tf.square(self.model(batch["input_ids"], training=training)[:, 0] - batch["target"])


def _fit(trainer, name, tmp_path, *, epochs=2, learning_rate=1e-2, metrics=None):
    rng = np.random.RandomState(0)
    arrays = {"input_ids": rng.normal(size=(ROWS, 4)).astype("float32"),
              "target": rng.normal(size=(ROWS,)).astype("float32")}
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    optimizer = loop.make_optimizer(learning_rate)
    scores = iter(range(100))

    def score(_):
        i = next(scores)
        return float(i), dict(metrics or {"accuracy": 0.5 + i / 10, "f1": 0.25})

    return trainer.fit(name, Toy(model), variables=model.trainable_variables, optimizer=optimizer,
                       batching=Batching(BATCH, token_keys=()), checkpoint_dir=str(tmp_path / name / "checkpoint"),
                       load_chunk=lambda _: {"train": arrays}, score=score, epochs=epochs, patience=5)


def test_fit_writes_training_curves_dev_metrics_and_text(tmp_path):
    logdir = str(tmp_path / "tensorboard")
    recorder = Recorder(logdir, every=EVERY)
    trainer = Trainer(tf.distribute.get_strategy(), seed=1, log_every=0, progress="none", recorder=recorder)
    schedule = warmup_linear_decay(1e-2, 4, 10)
    recorder.text("config", verbatim(json.dumps({"seed": 1, "task": "toy"}, indent=2)))
    _fit(trainer, "teacher", tmp_path, learning_rate=schedule)
    assert recorder.step == 10
    _fit(trainer, "stage-1", tmp_path, metrics={"val_loss": 0.5})
    recorder.close()

    values, plugins = read_events(logdir)
    steps = {tag: [s for s, _ in points] for tag, points in values.items()}
    # by global step: every 2 steps and at the end of an epoch; the second phase follows the first
    for name in ("train_loss", "learning_rate", "examples_per_second"):
        assert steps[f"teacher/{name}"] == [2, 4, 5, 6, 8, 10], name
        assert steps[f"stage-1/{name}"] == [12, 14, 15, 16, 18, 20], name
        assert plugins[f"teacher/{name}"] == "scalars"
    # the learning rate is the schedule's at the optimizer's iteration (the steps taken)
    lr = [float(v) for _, v in values["teacher/learning_rate"]]
    np.testing.assert_allclose(lr, [float(schedule(s)) for s in (2, 4, 5, 6, 8, 10)], rtol=1e-6)
    assert lr[0] < lr[1] > lr[-1]  # warm-up then decay
    assert all(float(v) > 0 for _, v in values["teacher/examples_per_second"])
    assert all(np.isfinite(float(v)) for _, v in values["teacher/train_loss"])
    # by epoch of the phase: dev metrics, or a validation loss
    for tag in ("teacher/dev/accuracy", "teacher/dev/f1", "teacher/epoch_train_loss", "stage-1/val_loss",
                "stage-1/epoch_train_loss"):
        assert steps[tag] == [1, 2], tag
    assert [round(float(v), 4) for _, v in values["teacher/dev/accuracy"]] == [0.5, 0.6]
    assert "stage-1/dev/val_loss" not in values
    # the config as text
    assert plugins["config"] == "text"
    (step, text), = values["config"]
    assert step == 0 and '"seed": 1' in text.item().decode()


def test_a_resumed_phase_continues_the_global_step(tmp_path):
    """The global step is saved with the phase's checkpoint: a rerun in a new process (a new Recorder at 0) whose
    phase is already done picks it up, so the next phase's curve still follows."""
    strategy = tf.distribute.get_strategy()
    first = Recorder(str(tmp_path / "a"), every=EVERY)
    _fit(Trainer(strategy, seed=1, log_every=0, progress="none", recorder=first), "teacher", tmp_path, epochs=1)
    first.close()
    assert first.step == 5
    again = Recorder(str(tmp_path / "b"), every=EVERY)
    _fit(Trainer(strategy, seed=1, log_every=0, progress="none", recorder=again), "teacher", tmp_path, epochs=1)
    assert again.step == 5
    again.close()
    assert not (tmp_path / "b").exists()  # nothing was trained or scored again: no event file


def test_no_recorder_writes_nothing_and_a_recorder_opens_its_file_lazily(tmp_path):
    idle = Recorder(str(tmp_path / "idle"))
    idle.flush()
    idle.close()
    assert not (tmp_path / "idle").exists()
    off = NoRecorder()
    off.scalar("x", 1.0, step=1)
    off.text("t", "s")
    off.close()
    trainer = Trainer(tf.distribute.get_strategy(), seed=1, log_every=0, progress="none")
    _fit(trainer, "p", tmp_path, epochs=1)  # the Trainer's default: no recorder
    assert not list(Path(tmp_path).rglob("events.out.tfevents*"))


def test_a_recorder_on_an_object_store_writes_its_event_file():
    """ram:// stands in for gs://: the writer goes through TensorFlow's file systems."""
    logdir = f"ram://test-tb-{uuid.uuid4().hex[:12]}/run/tensorboard"
    recorder = Recorder(logdir)
    recorder.scalar("stage-1/train_loss", 0.25, step=3)
    recorder.text("stage_plan", verbatim("stage 1: representation loss"))
    recorder.close()
    files = fs.listdir(logdir)
    assert len(files) == 1 and files[0].startswith("events.out.tfevents")
    values, plugins = _read_with_tf(logdir)
    assert [(s, float(v)) for s, v in values["stage-1/train_loss"]] == [(3, 0.25)]
    assert plugins == {"stage-1/train_loss": "scalars", "stage_plan": "text"}


@pytest.mark.parametrize("value", [True, "x", {"per_type": 1}])
def test_scalars_leave_out_what_is_not_a_number(tmp_path, value):
    recorder = Recorder(str(tmp_path / "tb"))
    recorder.scalars("student/dev", {"accuracy": 0.75, "n": 3, "other": value}, step=2)
    recorder.close()
    values, _ = read_events(str(tmp_path / "tb"))
    assert sorted(values) == ["student/dev/accuracy", "student/dev/n"]
