"""LossModel's update on repeated tokens: the embedding's Adam step equals PyTorch's; a trained step's graph is freed
with its model."""
import gc
import weakref

import keras
import numpy as np
import pytest
import tensorflow as tf

from xtremedistil_tf.train import loop
from xtremedistil_tf.train.trainer import LossModel

IDS = np.array([[1, 3, 3, 7], [3, 0, 1, 1]], "int32")  # tokens 1 and 3 repeat, as [CLS], [SEP] and words do
STEPS = 4


def _init():
    rng = np.random.default_rng(0)
    return rng.normal(size=(10, 4)).astype("float32"), rng.normal(size=(4,)).astype("float32")


def _torch_adam(table, w):
    torch = pytest.importorskip("torch")
    e, v = torch.nn.Parameter(torch.tensor(table)), torch.nn.Parameter(torch.tensor(w))
    opt = torch.optim.Adam([e, v], lr=1e-2, eps=1e-7)
    ids = torch.tensor(IDS, dtype=torch.long)
    for _ in range(STEPS):
        opt.zero_grad()
        per_example = ((torch.nn.functional.embedding(ids, e) @ v - 1.0) ** 2).sum(dim=1)
        (per_example.sum() / len(IDS)).backward()
        opt.step()
    return e.detach().numpy(), v.detach().numpy()


def _toy_step(table, w):
    """A traced train step of a toy LossModel on an embedding (rows repeated in IDS) and a vector; (step, both)."""
    embedding = keras.layers.Embedding(10, 4, embeddings_initializer=keras.initializers.Constant(table))
    embedding.build(None)
    v = tf.Variable(w)
    strategy = tf.distribute.get_strategy()

    class Toy(LossModel):
        def per_example_loss(self, batch, training):
            return tf.reduce_sum(tf.square(tf.linalg.matvec(embedding(batch["input_ids"]), v) - 1.0), axis=1)

    variables = [embedding.embeddings, v]
    opt = loop.make_optimizer(1e-2, epsilon=1e-7)
    loop.build_optimizer(opt, variables, strategy)
    toy = Toy(keras.layers.Identity())
    toy.configure(optimizer=opt, variables=variables, global_batch_size=len(IDS))
    return loop.Step(strategy, toy), embedding, v


def test_adam_update_of_repeated_embedding_rows_matches_pytorch():
    table, w = _init()
    step, embedding, v = _toy_step(table, w)
    for _ in range(STEPS):
        step({"input_ids": tf.constant(IDS)})
    e_ref, v_ref = _torch_adam(table, w)
    np.testing.assert_allclose(embedding.embeddings.numpy(), e_ref, atol=2e-6)
    np.testing.assert_allclose(v.numpy(), v_ref, atol=2e-6)
    assert not np.allclose(embedding.embeddings.numpy(), table)  # the rows did move


def _train_toy_and_drop() -> weakref.ref:
    """Trains the toy a step and drops every reference to it; returns a weak reference to the step's graph."""
    step, _, _ = _toy_step(*_init())
    batch = {"input_ids": tf.constant(IDS)}
    step(batch)
    return weakref.ref(step._step.get_concrete_function(batch).graph)


def test_a_traced_train_step_is_freed_with_its_model():
    """Keras' all-reduce of dense gradients wraps them in tf.custom_gradient, which registers a gradient function
    in TensorFlow's global registry for good, keeping the step's graph and the variables it captures (in-process
    benchmarks grew by a model's size per run). The optimizers skip it: nothing registered, the graph freed."""
    from tensorflow.python.framework import ops
    registered = len(ops._gradient_registry.list())
    graph = _train_toy_and_drop()
    gc.collect()
    assert len(ops._gradient_registry.list()) == registered
    assert graph() is None


@pytest.mark.parametrize("rows, drop_partial", [(20, True), (20, False), (5, True), (16, True), (17, False)])
def test_batching_steps_count_the_batches_of_a_distributed_epoch(rows, drop_partial):
    """The progress bar's total comes from the rows, since a distributed dataset may not know its cardinality."""
    from xtremedistil_tf.train.trainer import Batching
    batching = Batching(8, drop_partial=drop_partial)
    arrays = {"input_ids": np.ones((rows, 4), "int32"), "attention_mask": np.ones((rows, 4), "int32"),
              "token_type_ids": np.zeros((rows, 4), "int32")}
    strategy = tf.distribute.get_strategy()
    ds = loop.distribute(strategy, batching.dataset(arrays, seed=0))
    assert batching.steps(rows) == sum(1 for _ in ds)


class _GivenLosses(LossModel):
    """A LossModel whose per-example losses are given in the batch (`batch["loss"]`)."""

    def per_example_loss(self, batch, training):
        return batch["loss"]


@pytest.mark.parametrize("mean_over_real_size, expected", [(False, 6.0 / 4), (True, 6.0 / 3)])
def test_a_partial_batch_is_averaged_over_the_global_size_or_its_own(mean_over_real_size, expected):
    """3 examples of a global batch of 4: the default divides by 4 (the step weighs 3/4 of a whole one); the
    faithful mode divides by 3, as Keras 2.3's fit did."""
    model = _GivenLosses(keras.Sequential([keras.layers.Dense(1)]))
    model.configure(optimizer=keras.optimizers.SGD(), variables=[], global_batch_size=4,
                    mean_over_real_size=mean_over_real_size)
    loss = model.compute_loss({"loss": tf.constant([1.0, 2.0, 3.0])})
    assert float(loss) == pytest.approx(expected)


def _fit(tmp_path, steps_per_execution: int):
    """Two epochs of a toy regression through Trainer.fit (checkpoints, scoring, the best epoch's weights)."""
    from xtremedistil_tf.train.trainer import Batching, Trainer
    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(0)
    n = 40  # 5 steps of 8 an epoch: calls of 3 and 2
    arrays = {"input_ids": rng.integers(1, 10, (n, 4)).astype("int32"), "attention_mask": np.ones((n, 4), "int32"),
              "token_type_ids": np.zeros((n, 4), "int32"), "target": rng.normal(size=(n,)).astype("float32")}
    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])

    class Toy(LossModel):
        def per_example_loss(self, batch, training):
            x = tf.cast(batch["input_ids"], "float32") / 10.0
            return tf.square(self.model(x)[:, 0] - batch["target"])

    seen = []
    trainer = Trainer(tf.distribute.get_strategy(), seed=1, steps_per_execution=steps_per_execution, log_every=0,
                      progress="none")
    result = trainer.fit("toy", Toy(dense), variables=dense.trainable_variables,
                         optimizer=loop.make_optimizer(1e-2), batching=Batching(8), checkpoint_dir=str(tmp_path),
                         load_chunk=lambda i: {"train": arrays},
                         score=lambda chunk: (seen.append(dense.get_weights()[0].copy()) or -len(seen), {}),
                         epochs=2, patience=2)
    return result, seen, dense.get_weights()


def test_fit_with_several_steps_a_call_trains_as_one_step_a_call(tmp_path):
    one, seen_one, weights_one = _fit(tmp_path / "one", 1)
    three, seen_three, weights_three = _fit(tmp_path / "three", 3)
    assert len(seen_one) == len(seen_three) == 2
    np.testing.assert_array_equal(seen_three, seen_one)  # the weights each epoch was scored with
    for a, b in zip(weights_three, weights_one):
        np.testing.assert_array_equal(a, b)
    assert [h["loss"] for h in three.history] == [h["loss"] for h in one.history]
    assert not np.array_equal(seen_one[0], seen_one[1])  # it did train



class _Both(keras.Model):
    """A trunk and heads as one model, for the checkpoint."""

    def __init__(self, trunk, heads):
        super().__init__()
        self.trunk, self.heads = trunk, list(heads)


def _fit_sources(tmp_path, trains: list, *, epochs: int = 2, alone: bool = False, steps_per_execution: int = 1):
    """Trainer.fit on two toy sources (a shared trunk, a head each), `trains` their arrays (None: sits out); with
    `alone`, the first source through the one-model path instead."""
    from xtremedistil_tf.train.trainer import Batching, Trainer
    keras.utils.set_random_seed(3)
    trunk = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    heads = [keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]) for _ in range(2)]

    class Source(LossModel):
        def per_example_loss(self, batch, training):
            x = tf.cast(batch["input_ids"], "float32") / 10.0
            return tf.square(self.model(trunk(x))[:, 0] - batch["target"])

    models = [Source(head) for head in heads]
    variables = [trunk.trainable_variables + h.trainable_variables for h in heads]
    trainer = Trainer(tf.distribute.get_strategy(), seed=1, log_every=0, progress="none",
                      steps_per_execution=steps_per_execution)
    optimizer = loop.make_optimizer(1e-2)
    common = dict(optimizer=optimizer, checkpoint_dir=str(tmp_path), score=lambda chunk: (0.0, {}), epochs=epochs,
                  patience=epochs, weights=_Both(trunk, heads))
    if alone:
        trainer.fit("toy", models[0], variables=variables[0], batching=Batching(8),
                    load_chunk=lambda i: {"train": trains[0]}, **common)
    else:
        trainer.fit("toy", models, variables=variables, batching=[Batching(8), Batching(8)],
                    load_chunk=lambda i: {"train": trains}, **common)
    return trunk.get_weights(), [h.get_weights() for h in heads], int(optimizer.iterations.numpy())


def _toy_rows(n, seed):
    rng = np.random.default_rng(seed)
    return {"input_ids": rng.integers(1, 10, (n, 4)).astype("int32"), "attention_mask": np.ones((n, 4), "int32"),
            "token_type_ids": np.zeros((n, 4), "int32"), "target": rng.normal(size=(n,)).astype("float32")}


def test_sources_train_interleaved_with_one_optimizer(tmp_path):
    """Two sources (40 and 24 rows, batches of 8): every epoch runs all 5 + 3 steps through one optimizer, each
    head trained by its own source; a source that sits out keeps its head, and the other then trains exactly as
    it does alone through the one-model path (same batches, same updates)."""
    a, b = _toy_rows(40, 0), _toy_rows(24, 1)
    _, start_heads, _ = _fit_sources(tmp_path / "start", [a, b], epochs=0)
    trunk, heads, steps = _fit_sources(tmp_path / "both", [a, b])
    assert steps == 2 * (5 + 3)
    for got, start in zip(heads, start_heads):
        assert not np.array_equal(got[0], start[0])
    sat_out_trunk, sat_out_heads, sat_out_steps = _fit_sources(tmp_path / "sat-out", [a, None])
    assert sat_out_steps == 2 * 5
    for x, y in zip(sat_out_heads[1], start_heads[1]):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(sat_out_trunk[0], trunk[0])  # b's batches moved the shared trunk
    alone_trunk, alone_heads, _ = _fit_sources(tmp_path / "alone", [a, None], alone=True)
    for x, y in zip(alone_trunk + alone_heads[0], sat_out_trunk + sat_out_heads[0]):
        np.testing.assert_array_equal(x, y)


def test_sources_run_several_steps_a_call_as_one_a_call(tmp_path):
    """--steps_per_execution with several sources: each epoch's 5 + 3 interleaved steps in calls of 3 (3 + 3 + 2,
    the source picked inside the graph), and with a source sitting out, give the weights of one step a call."""
    a, b = _toy_rows(40, 0), _toy_rows(24, 1)
    for trains, name in (([a, b], "both"), ([a, None], "sat-out")):
        trunk, heads, steps = _fit_sources(tmp_path / name, trains)
        trunk3, heads3, steps3 = _fit_sources(tmp_path / f"{name}-3", trains, steps_per_execution=3)
        assert steps3 == steps
        for x, y in zip(trunk3 + heads3[0] + heads3[1], trunk + heads[0] + heads[1]):
            np.testing.assert_array_equal(x, y)
