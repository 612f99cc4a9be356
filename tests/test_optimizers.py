"""The fused Adam and AdamW: Adam's update (the textbook's and PyTorch's) for dense and for sparse gradients whose
rows repeat, as an embedding lookup's do."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from xtremedistil_tf import optimizers
from xtremedistil_tf.train import loop

LR, B1, B2, EPS = 1e-2, 0.9, 0.999, 1e-8


def _batches(steps, seed=0):
    """Token ids with repeats (a row looked up several times in a batch) and regression targets."""
    rng = np.random.RandomState(seed)
    return [(rng.randint(0, 12, (16,)), rng.randn(16, 3).astype("float32")) for _ in range(steps)]


def _init():
    rng = np.random.RandomState(1)
    return rng.randn(20, 4).astype("float32"), rng.randn(4, 3).astype("float32")


def _dense_gather(table, ids):
    """The lookup as a one-hot product: a dense gradient, each row's occurrences already summed."""
    return tf.matmul(tf.one_hot(ids, table.shape[0], dtype=table.dtype), table)


def _loss(table, dense, ids, y, gather):
    x = gather(table, ids)
    return tf.reduce_mean(tf.square(tf.matmul(x, dense) - y))


def _train(opt, batches, sparse=True):
    table, dense = (keras.Variable(a) for a in _init())

    @tf.function
    def step(ids, y):
        with tf.GradientTape() as tape:
            loss = _loss(table.value, dense.value, ids, y, tf.gather if sparse else _dense_gather)
        grads = tape.gradient(loss, [table.value, dense.value])
        assert isinstance(grads[0], tf.IndexedSlices) == sparse
        opt.apply(grads, [table, dense])

    for ids, y in batches:
        step(tf.constant(ids), tf.constant(y))
    return table.numpy(), dense.numpy()


def _reference(batches, weight_decay=0.0):
    """Adam written out in float64 from the per-row summed (dense) gradients."""
    params = [a.astype("float64") for a in _init()]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for t, (ids, y) in enumerate(batches, start=1):
        tp = [tf.constant(p) for p in params]
        with tf.GradientTape() as tape:
            tape.watch(tp)
            loss = _loss(tp[0], tp[1], ids, y.astype("float64"), _dense_gather)
        grads = [g.numpy() for g in tape.gradient(loss, tp)]
        for k, g in enumerate(grads):
            params[k] = params[k] - LR * weight_decay * params[k]
            m[k] = B1 * m[k] + (1 - B1) * g
            v[k] = B2 * v[k] + (1 - B2) * g * g
            params[k] = params[k] - LR * np.sqrt(1 - B2 ** t) / (1 - B1 ** t) * m[k] / (np.sqrt(v[k]) + EPS)
    return params


@pytest.mark.parametrize("sparse", [False, True])
def test_adam_is_adam_for_dense_and_repeated_sparse_rows(sparse):
    batches = _batches(20)
    ours = _train(optimizers.Adam(LR, epsilon=EPS), batches, sparse=sparse)
    for a, b in zip(ours, _reference(batches)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


def test_adamw_decays_then_steps():
    batches = _batches(20)
    ours = _train(optimizers.AdamW(LR, weight_decay=0.1, epsilon=EPS), batches)
    for a, b in zip(ours, _reference(batches, weight_decay=0.1)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


def test_options_keras_applies_before_the_update_are_kept():
    """Clipping is Keras' (before update_step): the fused step matches Keras' Adam on dense gradients."""
    batches = _batches(10)
    ours = _train(optimizers.Adam(LR, clipnorm=0.05), batches, sparse=False)
    theirs = _train(keras.optimizers.Adam(LR, clipnorm=0.05), batches, sparse=False)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # amsgrad runs Keras' own update, on the per-row summed gradient.
    ours = _train(optimizers.Adam(LR, amsgrad=True), batches)
    theirs = _train(keras.optimizers.Adam(LR, amsgrad=True), batches, sparse=False)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_make_optimizer_uses_them():
    assert isinstance(loop.make_optimizer(1e-3), optimizers.Adam)
    assert isinstance(loop.make_optimizer(1e-3, weight_decay=0.01), optimizers.AdamW)
    assert isinstance(loop.make_optimizer(1e-3, precision="mixed_float16").inner_optimizer, optimizers.Adam)
