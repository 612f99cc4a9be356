"""Steps/s of a small student's training step: one step a graph call against several (`--steps_per_execution`),
and the compute-only bound.

The student is the README main job's 2 x 128 BERT (2 heads, FFN 512) training on cached teacher logits (the
soft-logits stages) with Adam, global batch 64, on the SST-2 task folder's training sentences tokenized by the
MiniLM tokenizer at seq_len 64. Two measurements:

- fixed batch: one real batch of the median length repeated: the same arithmetic every step, so the differences
  between one step a call, several a call and the bound are overhead only. The bound runs the steps in a
  `tf.range` loop over the batch held in the graph (no iterator, no host round trip).
- tiny: the same on a 1 x 16 model, nearly no arithmetic: what a step costs beyond it.
- epoch: the main job's batches as the trainer draws them (length-grouped, trimmed to their longest sentence,
  several shapes), through `loop.run_epoch`.

Writes benchmarks/results/<out>.json (default out: steps).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from _common import command, data_dir, machine, median, minilm_dir, now, peak_rss_mb, quiet_tf, versions, write_json

SEQ_LEN, BATCH, LABELS = 64, 64, 2


def sentences(limit: int) -> list[str]:
    path = data_dir() / "tasks" / "sst2-small" / "train.tsv"
    out = [line.split("\t")[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return out[:limit]


SHAPES = {"student": dict(vocab_size=30522, hidden_size=128, num_layers=2, num_heads=2, intermediate_size=512),
          "tiny": dict(vocab_size=30522, hidden_size=16, num_layers=1, num_heads=1, intermediate_size=16)}


def build(steps_per_execution: int, shape: str = "student"):
    import tensorflow as tf

    from xtremedistil_tf.distill.distiller import Distiller
    from xtremedistil_tf.distill.losses import LogitsMSE
    from xtremedistil_tf.distill.student import Student
    from xtremedistil_tf.models.encoder import Encoder
    from xtremedistil_tf.train import loop

    tf.keras.utils.set_random_seed(0)
    enc = Encoder(**SHAPES[shape])
    student = Student(enc, LABELS, "classification", teacher_hidden_size=384)
    student.build()
    strategy = tf.distribute.get_strategy()
    distiller = Distiller(student, None, [LogitsMSE()])
    opt = loop.make_optimizer(1e-4)
    loop.build_optimizer(opt, student.trainable_variables, strategy)
    distiller.configure(optimizer=opt, variables=student.trainable_variables, global_batch_size=BATCH)
    return strategy, loop.Step(strategy, distiller, steps_per_execution)


def fixed_batch_rate(arrays: dict, steps: int, steps_per_execution: int | None, repeats: int,
                     shape: str = "student") -> float:
    """Steps/s on one batch repeated; `steps_per_execution` None: the compute-only bound."""
    import tensorflow as tf

    from xtremedistil_tf.train import loop

    lengths = arrays["attention_mask"].sum(axis=1)
    rows = np.argsort(np.abs(lengths - np.median(lengths)), kind="stable")[:BATCH]
    width = int(-(-lengths[rows].max() // 8) * 8)
    batch = {k: (v[rows, :width] if v.ndim == 2 and k != "t_logits" else v[rows]) for k, v in arrays.items()}
    strategy, step = build(steps_per_execution or 1, shape)
    if steps_per_execution is None:
        held = {k: tf.constant(v) for k, v in batch.items()}

        @tf.function
        def bound(n):
            total = tf.constant(0.0)
            for _ in tf.range(n):
                total += step._distributed_step(held)
            return total

        bound(tf.constant(2))  # trace
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            bound(tf.constant(steps)).numpy()
            times.append(time.perf_counter() - t)
        return steps / median(times)
    ds = tf.data.Dataset.from_tensors(batch).repeat(steps).prefetch(tf.data.AUTOTUNE)
    ds = loop.distribute(strategy, loop.without_autotune(ds))  # as the trainer's pipelines (benchmarks/README 1f)
    loop.run_epoch(step, ds.take(2), description="warm-up", log_every=0)  # traces the step (or the step loop)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        loop.run_epoch(step, ds, description="fixed", log_every=0)
        times.append(time.perf_counter() - t)
    return steps / median(times)


def epoch_rate(arrays: dict, steps_per_execution: int, repeats: int) -> tuple[float, int]:
    from xtremedistil_tf.train import loop
    from xtremedistil_tf.train.trainer import Batching

    strategy, step = build(steps_per_execution)
    batching = Batching(BATCH, token_keys=("input_ids", "attention_mask", "token_type_ids"), trim=True,
                        group_by_length=True)
    n = batching.steps(len(arrays["input_ids"]))
    loop.run_epoch(step, loop.distribute(strategy, batching.dataset(arrays, 0)), description="warm-up", log_every=0)
    times = []
    for seed in range(1, repeats + 1):
        ds = loop.distribute(strategy, batching.dataset(arrays, seed))
        t = time.perf_counter()
        loop.run_epoch(step, ds, description="epoch", log_every=0)
        times.append(time.perf_counter() - t)
    return n / median(times), n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sentences", type=int, default=6400, help="training sentences used (an epoch of 100 steps)")
    p.add_argument("--steps", type=int, default=200, help="steps per timed fixed-batch run")
    p.add_argument("--steps_per_execution", default="1,8,32", help="values compared")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="steps")
    args = p.parse_args()
    quiet_tf()
    from transformers import BertTokenizerFast

    texts = sentences(args.sentences)
    tok = BertTokenizerFast.from_pretrained(minilm_dir())
    enc = tok(texts, max_length=SEQ_LEN, truncation=True, padding="max_length", return_tensors="np")
    rng = np.random.default_rng(0)
    arrays = {k: enc[k].astype("int32") for k in ("input_ids", "attention_mask", "token_type_ids")}
    arrays["t_logits"] = rng.normal(size=(len(texts), LABELS)).astype("float32")
    ks = [int(x) for x in args.steps_per_execution.split(",")]
    record = {"date": now(), "command": command(), "machine": machine(), "versions": versions(),
              "setup": {"student": "2 x 128, 2 heads, FFN 512", "loss": "logits MSE (cached teacher logits)",
                        "optimizer": "Adam", "global_batch": BATCH, "seq_len": SEQ_LEN, "sentences": len(texts),
                        "data": "tasks/sst2-small/train.tsv"},
              "fixed_batch": {}, "tiny": {}, "epoch": {}}
    record["fixed_batch"]["bound"] = round(fixed_batch_rate(arrays, args.steps, None, args.repeats), 1)
    print(f"fixed batch, compute-only bound: {record['fixed_batch']['bound']} steps/s", flush=True)
    for k in ks:
        rate = fixed_batch_rate(arrays, args.steps, k, args.repeats)
        record["fixed_batch"][str(k)] = round(rate, 1)
        print(f"fixed batch, {k} steps a call: {rate:.1f} steps/s", flush=True)
    record["tiny"]["bound"] = round(fixed_batch_rate(arrays, args.steps, None, args.repeats, "tiny"), 1)
    print(f"tiny, compute-only bound: {record['tiny']['bound']} steps/s", flush=True)
    for k in ks:
        rate = fixed_batch_rate(arrays, args.steps, k, args.repeats, "tiny")
        record["tiny"][str(k)] = round(rate, 1)
        print(f"tiny, {k} steps a call: {rate:.1f} steps/s", flush=True)
    for k in ks:
        rate, n = epoch_rate(arrays, k, args.repeats)
        record["epoch"][str(k)] = round(rate, 1)
        record["setup"]["epoch_steps"] = n
        print(f"epoch ({n} trimmed batches), {k} steps a call: {rate:.1f} steps/s", flush=True)
    record["peak_rss_mb"] = round(peak_rss_mb())
    print("wrote", write_json(f"{args.out}.json", record))


if __name__ == "__main__":
    main()
