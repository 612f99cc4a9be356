"""run_phase's early-stopping rules, epoch by epoch on a scripted model: which weights come back at the end of a
chunk and which score a chunk counts with, under the default and the faithful stopping rules."""
import keras
import numpy as np
import pytest

from xtremedistil_tf.train.checkpoint import PhaseCheckpoint
from xtremedistil_tf.train.phase import StoppingRule, run_phase


def _run(tmp_path, scores, rule, *, epochs, patience, num_chunks=1, cross_chunk=True, name="p"):
    """Each epoch sets the single weight to its epoch number (chunk * 10 + epoch + 1) and scores per `scores`."""
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
    model.build((None, 1))
    w = model.weights[0]
    it = iter(scores)

    def train_epoch(data, chunk, epoch):
        w.assign(np.full(w.shape, chunk * 10 + epoch + 1, "float32"))
        return 0.0

    result = run_phase(name, model=model, checkpoint=PhaseCheckpoint(str(tmp_path / name), model, None),
                       num_chunks=num_chunks, load_chunk=lambda i: i, train_epoch=train_epoch,
                       score=lambda d: (next(it), {}), epochs=epochs, patience=patience, rule=rule,
                       cross_chunk=cross_chunk)
    return float(w.numpy().ravel()[0]), result


DEFAULT, FAITHFUL = StoppingRule(), StoppingRule(always_restore_best=False, score_chunk_by_best=False)


@pytest.mark.parametrize("rule, weight", [(DEFAULT, 2.0), (FAITHFUL, 3.0)])
def test_best_epoch_restored_always_or_only_when_stopped(tmp_path, rule, weight):
    # three epochs, best in the second, no early stop (patience 5): the faithful rule keeps the last epoch
    w, result = _run(tmp_path, [0.1, 0.5, 0.3], rule, epochs=3, patience=5, cross_chunk=False)
    assert w == weight
    assert result.best_score == (0.5 if rule is DEFAULT else 0.3)  # the score of the weights kept


@pytest.mark.parametrize("rule", [DEFAULT, FAITHFUL])
def test_early_stop_restores_the_best_epoch_in_both_rules(tmp_path, rule):
    w, result = _run(tmp_path, [0.1, 0.5, 0.3, 0.2], rule, epochs=4, patience=2, cross_chunk=False)
    assert w == 2.0 and len(result.history) == 4 and result.best_score == 0.5


def test_chunks_are_compared_by_best_or_last_epoch(tmp_path):
    # chunk 0: 0.2, 0.6 (best 0.6, last 0.6); chunk 1: 0.7, 0.4 (best 0.7, last 0.4)
    scores = [0.2, 0.6, 0.7, 0.4]
    w, result = _run(tmp_path / "d", scores, DEFAULT, epochs=2, patience=3, num_chunks=2)
    assert w == 11.0 and result.best_score == 0.7  # chunk 1 improved by its best epoch, which is restored
    w, result = _run(tmp_path / "f", scores, FAITHFUL, epochs=2, patience=3, num_chunks=2)
    assert w == 2.0 and result.best_score == 0.6  # chunk 1's last epoch (0.4) lost: chunk 0's weights back


def test_carried_best_reverts_a_phase_that_does_not_beat_it(tmp_path):
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
    model.build((None, 1))
    carried_weights = [np.full((1, 1), 42.0, "float32")]
    result = run_phase("c", model=model, checkpoint=PhaseCheckpoint(str(tmp_path / "c"), model, None),
                       num_chunks=1, load_chunk=lambda i: i, train_epoch=lambda d, c, e: 0.0,
                       score=lambda d: (0.1, {}), epochs=1, patience=1, rule=FAITHFUL, carried=(0.5, carried_weights))
    assert model.weights[0].numpy().item() == 42.0 and result.best_score == 0.5
