"""The shared training loop: length-grouped batches and a step traced once for batches of any length."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from xtremedistil_tf.train import loop
from xtremedistil_tf.train.loop import length_grouped_order
from xtremedistil_tf.train.trainer import LossModel


def test_length_grouped_order():
    rng = np.random.RandomState(0)
    lengths = rng.randint(3, 60, size=1003)
    order = length_grouped_order(lengths, 10, seed=7, group=5)
    assert sorted(order.tolist()) == list(range(1003))  # a permutation
    assert np.array_equal(order, length_grouped_order(lengths, 10, seed=7, group=5))  # seeded
    assert not np.array_equal(order, length_grouped_order(lengths, 10, seed=8, group=5))
    blocks = lengths[order[:1000]].reshape(100, 10)
    spread = (blocks.max(1) - blocks.min(1)).mean()
    random_spread = np.ptp(lengths[rng.permutation(1003)[:1000]].reshape(100, 10), axis=1).mean()
    assert spread < random_spread / 3  # batches of similar lengths: far less padding
    assert len(length_grouped_order(lengths[:7], 10, seed=1)) == 7  # fewer examples than a batch


def _arrays(n=300, seq_len=64, seed=0):
    rng = np.random.RandomState(seed)
    lengths = rng.randint(3, seq_len + 1, size=n)
    mask = (np.arange(seq_len)[None, :] < lengths[:, None]).astype("int32")
    ids = (rng.randint(5, 1000, size=(n, seq_len)) * mask).astype("int32")
    ids[:, 0] = np.arange(n) + 1000  # a row id, to check coverage
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}, lengths


def _tokens_and_rows(ds):
    tokens, rows = 0, []
    for b in ds:
        tokens += int(np.prod(b["input_ids"].shape))
        rows.extend(b["input_ids"][:, 0].numpy().tolist())
    return tokens, rows


def test_grouped_batches_cover_every_example_with_far_less_padding():
    arrays, lengths = _arrays()
    grouped = loop.dataset_from_arrays(arrays, 16, shuffle=True, seed=3, drop_remainder=False, trim=True,
                                       group_by_length=True)
    plain = loop.dataset_from_arrays(arrays, 16, shuffle=True, seed=3, drop_remainder=False, trim=True)
    g_tokens, g_rows = _tokens_and_rows(grouped)
    p_tokens, p_rows = _tokens_and_rows(plain)
    assert sorted(g_rows) == sorted(p_rows) == list(range(1000, 1300))  # every example once
    assert g_rows != p_rows
    assert g_tokens < 0.7 * p_tokens
    real = int(lengths.sum())
    assert g_tokens >= real  # trimming never cuts a real token
    # the same seed gives the same epoch; drop_remainder drops only the partial batch
    assert _tokens_and_rows(loop.dataset_from_arrays(arrays, 16, shuffle=True, seed=3, drop_remainder=False,
                                                     trim=True, group_by_length=True))[1] == g_rows
    dropped = loop.dataset_from_arrays(arrays, 16, shuffle=True, seed=3, drop_remainder=True, trim=True,
                                       group_by_length=True)
    assert len(_tokens_and_rows(dropped)[1]) == 300 - 300 % 16


def test_step_is_traced_once_for_batches_of_any_length():
    arrays, _ = _arrays(n=200)
    arrays["target"] = np.random.RandomState(1).normal(size=(200,)).astype("float32")
    strategy = tf.distribute.get_strategy()
    w = tf.Variable(0.5)
    traces = []

    class Toy(LossModel):
        def per_example_loss(self, batch, training):
            traces.append(1)
            x = tf.reduce_sum(tf.cast(batch["attention_mask"], "float32"), axis=1) / 64.0
            return tf.square(w * x - batch["target"])

    opt = loop.make_optimizer(1e-2)
    loop.build_optimizer(opt, [w], strategy)
    toy = Toy(keras.layers.Identity())
    toy.configure(optimizer=opt, variables=[w], global_batch_size=16)
    step = loop.Step(strategy, toy)
    ds = loop.dataset_from_arrays(arrays, 16, shuffle=True, seed=0, drop_remainder=False, trim=True,
                                  group_by_length=True, token_keys=("input_ids", "attention_mask", "token_type_ids"))
    shapes = {tuple(b["input_ids"].shape) for b in ds}
    assert len(shapes) > 3  # batches of several lengths (and a partial last batch)
    before = float(w.numpy())
    loss = loop.run_epoch(step, ds, description="test", log_every=0)
    loop.run_epoch(step, ds, description="test", log_every=0)
    assert len(traces) == 1
    assert np.isfinite(loss) and float(w.numpy()) != before


def _toy_epochs(steps_per_execution: int, n: int, epochs: int = 2):
    """Trains a toy (with dropout) on trimmed batches of several lengths; returns ((step index, loss) pairs, each
    epoch's mean loss, how many times the loss was traced, the final weights)."""
    arrays, _ = _arrays(n=n)
    arrays["target"] = np.random.RandomState(1).normal(size=(n,)).astype("float32")
    strategy = tf.distribute.get_strategy()
    w = tf.Variable([0.5, -0.2])
    dropout = keras.layers.Dropout(0.3, seed=5)  # a seeded random op: its stream must advance as with one step a call
    traces = []

    class Toy(LossModel):
        def per_example_loss(self, batch, training):
            traces.append(1)
            x = tf.reduce_sum(tf.cast(batch["attention_mask"], "float32"), axis=1) / 64.0
            x = dropout(tf.stack([x, tf.ones_like(x)], axis=1), training=training)
            return tf.square(tf.linalg.matvec(x, w) - batch["target"])

    opt = loop.make_optimizer(1e-2)
    loop.build_optimizer(opt, [w], strategy)
    toy = Toy(keras.layers.Identity())
    toy.configure(optimizer=opt, variables=[w], global_batch_size=16)
    step = loop.Step(strategy, toy, steps_per_execution)
    losses, means = [], []
    for epoch in range(epochs):
        ds = loop.dataset_from_arrays(arrays, 16, shuffle=True, seed=epoch, drop_remainder=False, trim=True,
                                      group_by_length=True)
        means.append(loop.run_epoch(step, ds, description="toy", log_every=0,
                                    on_batch=lambda i, loss: losses.append((i, loss))))
    return losses, means, len(traces), w.numpy()


@pytest.mark.parametrize("n", [200, 192], ids=["partial-last-call", "whole-calls"])
def test_several_steps_a_call_are_the_same_steps(n):
    """steps_per_execution 4: 13 (or 12) trimmed batches in 4 calls (or 3 and one that finds the iterator ended),
    the same losses, reported per step, and the same weights as one step a call; one trace for every call."""
    one = _toy_epochs(1, n)
    four = _toy_epochs(4, n)
    assert [i for i, _ in four[0]] == [i for i, _ in one[0]] == list(range(-(-n // 16))) * 2
    np.testing.assert_array_equal([loss for _, loss in four[0]], [loss for _, loss in one[0]])
    assert four[1] == one[1]
    np.testing.assert_array_equal(four[3], one[3])
    assert four[2] == 1  # traced once, for batches of any length and any number of steps
    with pytest.raises(ValueError, match="steps_per_execution must be >= 1"):
        loop.Step(tf.distribute.get_strategy(), None, 0)


def test_a_nonfinite_loss_inside_a_call_names_its_own_step():
    arrays, _ = _arrays(n=80)
    strategy = tf.distribute.get_strategy()
    w = tf.Variable(1.0)

    class Toy(LossModel):
        def per_example_loss(self, batch, training):
            # Finite for the first two steps, then infinite (the optimizer's iteration counts the steps).
            return tf.ones_like(tf.cast(batch["attention_mask"][:, 0], "float32")) * w / tf.cast(
                2 - opt.iterations, "float32")

    opt = loop.make_optimizer(1e-3)
    loop.build_optimizer(opt, [w], strategy)
    toy = Toy(keras.layers.Identity())
    toy.configure(optimizer=opt, variables=[w], global_batch_size=16)
    ds = loop.dataset_from_arrays(arrays, 16, shuffle=False, seed=0, drop_remainder=False)
    with pytest.raises(loop.NonFiniteLossError, match="at step 3;"):
        loop.run_epoch(loop.Step(strategy, toy, 5), ds, description="toy", log_every=0)


def test_predict_is_traced_once_for_trimmed_batches_and_keeps_row_order():
    arrays, lengths = _arrays(n=150)
    strategy = tf.distribute.get_strategy()
    traces = []

    def fn(batch):
        traces.append(1)
        return {"length": tf.reduce_sum(tf.cast(batch["attention_mask"], "int32"), axis=1),
                "width": tf.fill(tf.shape(batch["input_ids"])[:1], tf.shape(batch["input_ids"])[1])}

    out = loop.predict(strategy, fn, arrays, 16, trim=True)
    again = loop.predict(strategy, fn, arrays, 16, trim=True)
    assert len(traces) == 1
    np.testing.assert_array_equal(out["length"], lengths)
    np.testing.assert_array_equal(again["length"], lengths)
    assert len(set(out["width"].tolist())) > 3  # batches were cut to several lengths
    assert np.all(out["width"] >= lengths) and np.all(out["width"] % 8 == 0)


def test_predict_compiled_with_xla_gives_the_same_outputs():
    """--jit_compile: teacher outputs and evaluations run compiled by XLA, batches trimmed to several lengths."""
    from tiny_setup import marked_for_xla
    arrays, lengths = _arrays(n=70)
    strategy = tf.distribute.get_strategy()
    keras.utils.set_random_seed(0)
    embed, dense = keras.layers.Embedding(int(arrays["input_ids"].max()) + 1, 8), keras.layers.Dense(3, activation="gelu")

    def fn(batch):
        tokens = dense(embed(batch["input_ids"]))
        mask = tf.cast(batch["attention_mask"], tokens.dtype)[..., None]
        return {"tokens": tokens * mask, "pooled": tf.reduce_sum(tokens * mask, 1) / tf.reduce_sum(mask, 1)}

    plain = loop.predict(strategy, fn, arrays, 16, trim=True, token_outputs=("tokens",))
    xla = loop.predict(strategy, fn, arrays, 16, trim=True, token_outputs=("tokens",), jit_compile=True)
    for k in ("tokens", "pooled"):
        assert xla[k].shape == plain[k].shape
        np.testing.assert_allclose(xla[k], plain[k], rtol=1e-5, atol=1e-6, err_msg=k)
    assert not np.any(xla["tokens"][np.arange(64)[None, :] >= lengths[:, None]])  # zeros past each row's length
    compiled = {key[2]: f for key, f in loop._PREDICT_CACHE[fn].items()}
    assert marked_for_xla(compiled[True].get_concrete_function())
    assert not marked_for_xla(compiled[False].get_concrete_function())


def test_predicting_with_many_models_gives_no_retracing_warning():
    """One trace per model (a stage's student, the teacher) is expected; TensorFlow must not call it retracing."""
    import logging
    arrays, _ = _arrays(n=40)
    strategy = tf.distribute.get_strategy()
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    tf_logger = logging.getLogger("tensorflow")
    tf_logger.addHandler(handler)
    try:
        for i in range(10):
            scale = tf.Variable(float(i))
            out = loop.predict(strategy, lambda b, s=scale: {"x": tf.cast(b["input_ids"][:, :1], tf.float32) * s},
                               arrays, 16)
            assert float(out["x"].max()) == pytest.approx(i * float(arrays["input_ids"][:, 0].max()))
    finally:
        tf_logger.removeHandler(handler)
    assert not [r for r in records if "retracing" in r.getMessage()], [r.getMessage()[:120] for r in records]


def test_in_memory_pipelines_run_without_the_autotuner(monkeypatch):
    """Training and prediction datasets have tf.data's autotuner off: its sleeping thread made every iterator's
    destructor wait (up to 16 s per pass in the main job) for pipelines that only slice arrays."""
    arrays, _ = _arrays(n=40)
    strategy = tf.distribute.get_strategy()
    train = loop.dataset_from_arrays(arrays, 16, shuffle=True, seed=0, drop_remainder=True, trim=True)
    assert train.options().autotune.enabled is False
    seen = []
    monkeypatch.setattr(loop, "distribute", lambda s, ds: seen.append(ds) or ds)
    out = loop.predict(strategy, lambda b: {"x": b["input_ids"][:, :1]}, arrays, 16, trim=True)
    np.testing.assert_array_equal(out["x"][:, 0], arrays["input_ids"][:, 0])
    assert len(seen) == 1 and seen[0].options().autotune.enabled is False
