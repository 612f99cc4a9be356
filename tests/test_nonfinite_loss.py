"""A NaN or Inf loss stops the stage with one clear error naming the stage, the chunk, the epoch and the step, and
the last good checkpoint stays on disk, loadable, holding the weights from before the blow-up."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

import tiny_setup
from test_fault_injection import check_all_loadable, temporaries


@pytest.fixture(scope="module")
def setup(tmp_path_factory, minilm_dir):
    return tiny_setup.make_setup(tmp_path_factory.mktemp("tiny"), minilm_dir)


@pytest.mark.slow  # about 21 s (a subprocess run); the next test keeps the error's text and the checkpoint by default
def test_nan_loss_reaches_the_user_as_one_error(setup, tmp_path):
    """An absurd learning rate: the student's weights explode in the first steps of stage 1."""
    model_dir = tmp_path / "run"
    proc = tiny_setup.run_distillation(tiny_setup.distil_args(setup, model_dir, student_learning_rate=1e30,
                                                              ft_epochs=1))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    match = re.fullmatch(r"error: stage-1 chunk 0 epoch 1: loss is (nan|inf|-inf) at step (\d+); stopping \(the "
                         r"last good checkpoint is kept\)\. Try a lower learning rate, or --opt_policy=float32\.",
                         errors[0])
    assert match, errors[0]
    # What the run had finished before (transfer cache, teacher, its scores) is intact; nothing half-written.
    assert temporaries(model_dir) == []
    check_all_loadable(model_dir)
    assert (model_dir / "teacher" / "teacher.weights.h5").is_file()


def test_nan_keeps_the_last_good_checkpoint(tmp_path):
    """run_phase checkpoints after every epoch; a NaN in the next epoch raises before anything is saved, so the
    checkpoint still holds the last finite weights, and a rerun resumes from it."""
    import keras

    from xtremedistil_tf.train import loop
    from xtremedistil_tf.train.checkpoint import PhaseCheckpoint, get_weights
    from xtremedistil_tf.train.phase import run_phase

    def model_():
        m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        m.build((None, 3))
        return m

    model = model_()
    folder = tmp_path / "checkpoints" / "stage-3"
    after_epoch = {}

    def fake_step(losses):
        it = iter(losses)

        def step(batch):
            loss = next(it)
            for v in model.weights:  # "training": weights move every step, and explode with the loss
                v.assign(v.numpy() + 1.0 if math.isfinite(loss) else np.full(v.shape, np.nan, "float32"))
            return loss
        return step

    schedule = {0: [0.5, 0.4], 1: [0.3, float("nan"), 0.2]}

    def train_epoch(data, chunk, epoch):
        loss = loop.run_epoch(fake_step(schedule[epoch]), range(len(schedule[epoch])),
                              description=f"stage-3 chunk {chunk} epoch {epoch + 1}", log_every=0)
        after_epoch[epoch] = get_weights(model)
        return loss

    with pytest.raises(loop.NonFiniteLossError, match=r"^stage-3 chunk 0 epoch 2: loss is nan at step 2; stopping"):
        run_phase("stage-3", model=model, checkpoint=PhaseCheckpoint(str(folder), model, None), num_chunks=2,
                  load_chunk=lambda i: None, train_epoch=train_epoch, score=lambda d: (0.0, {}), epochs=3,
                  patience=5)
    assert all(np.isnan(w).all() for w in get_weights(model))  # the model in memory blew up
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no half-written checkpoint

    fresh = model_()
    state, _ = PhaseCheckpoint(str(folder), fresh, None).restore()
    assert (state["chunk"], state["epoch"], len(state["history"])) == (0, 1, 1)
    for a, b in zip(get_weights(fresh), after_epoch[0]):
        np.testing.assert_array_equal(a, b)
    assert all(np.isfinite(w).all() for w in get_weights(fresh))

    # A rerun (a lower learning rate, say) resumes at chunk 0, epoch 2 from those weights.
    schedule[1] = [0.3, 0.2]
    schedule[2] = [0.1]
    model = fresh
    result = run_phase("stage-3", model=model, checkpoint=PhaseCheckpoint(str(folder), model, None), num_chunks=1,
                       load_chunk=lambda i: None, train_epoch=train_epoch, score=lambda d: (0.0, {}), epochs=3,
                       patience=5)
    assert [(h["chunk"], h["epoch"]) for h in result.history] == [(0, 0), (0, 1), (0, 2)]
