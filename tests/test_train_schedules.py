"""BERT's warm-up + linear decay, built on Keras' PolynomialDecay."""
import keras
import numpy as np
import pytest

from xtremedistil_tf.train.schedules import WarmUp, warmup_linear_decay


@pytest.mark.parametrize("warmup, total", [(10, 100), (0, 50), (3, 3)])
def test_warmup_then_linear_decay(warmup, total):
    lr = warmup_linear_decay(2e-5, warmup, total)
    for step in range(total + 5):
        expected = 2e-5 * (step + 1) / max(warmup, 1) if step < warmup else \
            2e-5 * max(0, total - step) / max(total - warmup, 1)
        assert float(lr(step)) == pytest.approx(expected, rel=1e-5, abs=1e-12), step
    assert float(lr(total)) == 0.0


def test_schedule_serializes_and_drives_an_optimizer():
    lr = warmup_linear_decay(1e-3, 4, 20)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(lr))
    assert isinstance(again, WarmUp)
    assert [float(again(s)) for s in range(25)] == [float(lr(s)) for s in range(25)]
    opt = keras.optimizers.Adam(lr)
    v = keras.Variable(np.zeros(2, "float32"))
    opt.build([v])
    opt.apply([np.ones(2, "float32")], [v])
    assert float(opt.learning_rate) == pytest.approx(float(lr(1)))
