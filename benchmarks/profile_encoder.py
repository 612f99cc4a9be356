"""Where an encoder step spends its time: TF profiler op types of a forward or training step, and its median time.

    python benchmarks/profile_encoder.py --shape minilm --precision bfloat16 [--train] [--repeats 7]

Random weights, batch 32 x 128 (every token real), the machine's threads. Prints the step's median and min over
`--repeats` calls, then the op types by time per step (from the profiler's XPlane of 3 profiled steps; the time
of ops running side by side on TF's threads adds up, so the total can exceed the step's wall time). Run it from
two checkouts (each with its own venv) for an A/B of the same step.
"""
from __future__ import annotations

import argparse
import collections
import glob
import os
import sys
import tempfile
import time

import numpy as np
from _common import quiet_tf

SHAPES = {"minilm": dict(hidden_size=384, num_layers=6, num_heads=12, intermediate_size=1536),
          "bert-base": dict(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072)}


def op_times(logdir: str, steps: int) -> collections.Counter:
    """Milliseconds per step by op type, read from the profiler's XPlane (the ops' "name:type" events)."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    path = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)[0]
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    out = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_"):  # TF's compute and Eigen threads
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                op_type = name.rsplit(":", 1)[-1]
                if ":" in name and op_type != "Process":  # ops are "name:type"; "Process" wraps a whole graph
                    out[op_type] += event.duration_ps / 1e9 / steps
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=sorted(SHAPES), default="minilm")
    p.add_argument("--precision", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--train", action="store_true", help="a training step (dropout, backward, AdamW)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--top", type=int, default=15, help="op types to list")
    args = p.parse_args()
    quiet_tf()  # TensorFlow as the apps run it (oneDNN on unless TF_ENABLE_ONEDNN_OPTS=0)
    import keras
    import tensorflow as tf

    from xtremedistil_tf.models.encoder import Encoder
    from xtremedistil_tf.strategy import set_precision
    from xtremedistil_tf.train import loop

    set_precision("mixed_bfloat16" if args.precision == "bfloat16" else "float32")
    keras.utils.set_random_seed(0)
    enc = Encoder(vocab_size=30522, **SHAPES[args.shape])
    enc.build()
    rng = np.random.default_rng(0)
    x = {"input_ids": tf.constant(rng.integers(1000, 30522, (32, 128)), tf.int32),
         "attention_mask": tf.ones((32, 128), tf.int32), "token_type_ids": tf.zeros((32, 128), tf.int32)}
    optimizer = loop.make_optimizer(1e-4, epsilon=1e-8, weight_decay=0.01)  # the trainer's, as bench_encoder.py's
    optimizer.build(enc.trainable_variables)

    @tf.function
    def forward(x):
        return enc(x, training=False)["sequence_output"]

    @tf.function
    def train(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(tf.cast(enc(x, training=True)["pooled_output"], tf.float32)))
        grads = tape.gradient(loss, enc.trainable_variables)
        optimizer.apply_gradients(zip(grads, enc.trainable_variables))
        return loss

    step = train if args.train else forward
    for _ in range(2):
        step(x).numpy()
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        step(x).numpy()
        times.append(time.perf_counter() - t)
    kind = "train step" if args.train else "forward"
    print(f"{args.shape} {kind} {args.precision}: median {np.median(times):.3f} s, min {min(times):.3f} s "
          f"({args.repeats} calls, {tf.config.threading.get_intra_op_parallelism_threads() or 'default'} threads)")
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(3):
            step(x).numpy()
        tf.profiler.experimental.stop()
        ops = op_times(logdir, 3)
    total = sum(ops.values())
    for name, ms in ops.most_common(args.top):
        print(f"  {name:32s} {ms:8.1f} ms/step {100 * ms / total:5.1f}%")
    print(f"  {'all ops':32s} {total:8.1f} ms/step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
