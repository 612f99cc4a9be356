"""Trains a toy LossModel for one epoch with loop.Step, and two toy sources interleaved through one optimizer (as
--source_tasks) with loop.InterleavedSteps, each on 1 and on 2 replicas (logical CPU devices), the latter also with
several steps a graph call, and prints the results as JSON (with the gradient functions the traced steps left in
TensorFlow's global registry); logical devices must be configured before TensorFlow starts, hence a process of its
own."""
import json

import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
from tensorflow.python.framework import ops  # noqa: E402

from xtremedistil_tf.train import loop  # noqa: E402
from xtremedistil_tf.train.trainer import Batching, LossModel  # noqa: E402

ROWS, GLOBAL_BATCH = 7, 4  # a whole batch, then a partial one of 3 rows split 2 + 1 over the replicas


def train(strategy, steps_per_execution: int = 1) -> dict:
    registered = len(ops._gradient_registry.list())
    rng = np.random.default_rng(0)
    table, w = rng.normal(size=(10, 4)).astype("float32"), rng.normal(size=(4,)).astype("float32")
    ids = rng.integers(0, 10, size=(ROWS, 5)).astype("int32")  # repeated rows: sparse gradients summed per row
    with strategy.scope():
        embedding = keras.layers.Embedding(10, 4, embeddings_initializer=keras.initializers.Constant(table))
        embedding.build(None)
        v = tf.Variable(w)
        opt = loop.make_optimizer(1e-2, epsilon=1e-7)

    class Toy(LossModel):
        def per_example_loss(self, batch, training):
            return tf.reduce_sum(tf.square(tf.linalg.matvec(embedding(batch["input_ids"]), v) - 1.0), axis=1)

    variables = [embedding.embeddings, v]
    loop.build_optimizer(opt, variables, strategy)
    toy = Toy(keras.layers.Identity())
    toy.configure(optimizer=opt, variables=variables, global_batch_size=GLOBAL_BATCH)
    step = loop.Step(strategy, toy, steps_per_execution)
    batching = Batching(GLOBAL_BATCH, token_keys=("input_ids",), drop_partial=False)
    losses = []
    loop.run_epoch(step, loop.distribute(strategy, batching.dataset({"input_ids": ids}, seed=0)), description="toy",
                   log_every=0, on_batch=lambda i, loss: losses.append(loss))
    return {"replicas": strategy.num_replicas_in_sync, "losses": losses,
            "gradient_functions_registered": len(ops._gradient_registry.list()) - registered,
            "embeddings": embedding.embeddings.numpy().tolist(), "v": v.numpy().tolist()}


def train_sources(strategy, steps_per_execution: int = 1) -> dict:
    """Two sources sharing an embedding table, a head each, one optimizer, their batches interleaved: source a's
    7 rows (4 + 3), source b's 5 (4 + 1: on two replicas its last step leaves one replica without a row)."""
    rng = np.random.default_rng(1)
    table = rng.normal(size=(10, 4)).astype("float32")
    heads = rng.normal(size=(2, 4)).astype("float32")
    rows = [{"input_ids": rng.integers(0, 10, size=(n, 5)).astype("int32"),
             "target": rng.normal(size=(n,)).astype("float32")} for n in (7, 5)]
    with strategy.scope():
        embedding = keras.layers.Embedding(10, 4, embeddings_initializer=keras.initializers.Constant(table))
        embedding.build(None)
        head_vars = [tf.Variable(h) for h in heads]
        opt = loop.make_optimizer(1e-2, epsilon=1e-7)

    class Source(LossModel):
        def __init__(self, head):
            super().__init__(keras.layers.Identity())
            self.head = head

        def per_example_loss(self, batch, training):
            pooled = tf.reduce_mean(embedding(batch["input_ids"]), axis=1)
            return tf.square(tf.linalg.matvec(pooled, self.head) - batch["target"])

    groups = [[embedding.embeddings, h] for h in head_vars]
    loop.build_optimizer(opt, [embedding.embeddings] + head_vars, strategy)
    sources = [Source(h) for h in head_vars]
    for source, group in zip(sources, groups):
        source.configure(optimizer=opt, variables=group, global_batch_size=GLOBAL_BATCH)
    batching = Batching(GLOBAL_BATCH, token_keys=("input_ids",), drop_partial=False)
    order = loop.interleaved_order([batching.steps(len(r["input_ids"])) for r in rows], seed=0)
    losses = []
    steps = loop.InterleavedSteps([loop.Step(strategy, s, 1) for s in sources], steps_per_execution)
    loop.run_interleaved_epoch(steps,
                               [loop.distribute(strategy, batching.dataset(r, seed=i)) for i, r in enumerate(rows)],
                               order, description="sources", log_every=0, on_batch=lambda i, loss: losses.append(loss))
    return {"replicas": strategy.num_replicas_in_sync, "order": order.tolist(), "losses": losses,
            "steps": int(opt.iterations.numpy()), "embeddings": embedding.embeddings.numpy().tolist(),
            "heads": [h.numpy().tolist() for h in head_vars], "start_heads": heads.tolist()}


mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
print("RESULT", json.dumps([train(tf.distribute.get_strategy()), train(mirrored), train(mirrored, 3),
                            train_sources(tf.distribute.get_strategy()), train_sources(mirrored),
                            train_sources(mirrored, 3)]))
