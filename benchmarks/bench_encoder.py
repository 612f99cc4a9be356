"""Benchmark: encoder forward and training step, ours (TF/Keras 3) against transformers' PyTorch, same process.

Shapes: MiniLM (6 x 384, 12 heads, FFN 1536) and BERT-base (12 x 768, 12 heads, FFN 3072), random weights,
batch 32 x sequence 128 (every token real). Three implementations, timed in turn inside every repeat
(alternating, so the machine's background load hits all of them alike), median reported:
  - ours, graph: the Encoder under tf.function (training step: xtremedistil_tf.train.loop.Step, AdamW);
  - ours, XLA:   the same with jit_compile=True (the training step compiles forward + loss + gradients);
  - PyTorch:     transformers' BertModel / BertForSequenceClassification, eager, attn_implementation="sdpa",
                 torch.optim.AdamW.
Forward = inference (dropout off, no gradients). Training step = forward with dropout + pooled-output
classifier + cross-entropy + backward + AdamW update. Also measures the machine's float32 matmul rate
(2048 x 2048, numpy, TF and torch) and gives each result as achieved GFLOP/s and as a fraction of that rate.

    python benchmarks/bench_encoder.py                  # both shapes (about 10 minutes on 2 cores)
    python benchmarks/bench_encoder.py --shapes minilm --repeats 5
    python benchmarks/bench_encoder.py --precision bfloat16 --out encoder_gpu   # on a GPU machine

Both frameworks run on the GPU when one is visible (TF places ops there itself; torch moves the model and
inputs to cuda and synchronizes before every clock read). With --precision bfloat16, ours runs under Keras'
mixed_bfloat16 policy and PyTorch under torch.autocast(bfloat16); both keep float32 weights, and the matmul rate
is measured in bfloat16 too. Writes benchmarks/results/<out>.json and <out>_throughput.png (default out: encoder).
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import time

import numpy as np

from _common import (RESULTS, command, machine, matplotlib_pyplot, median, now, peak_rss_mb, quiet_tf, versions,
                     write_json)

SHAPES = {
    "minilm": dict(num_layers=6, hidden_size=384, num_heads=12, intermediate_size=1536),
    "bert-base": dict(num_layers=12, hidden_size=768, num_heads=12, intermediate_size=3072),
}
IMPLS = ("ours_graph", "ours_xla", "pytorch")
LABELS = {"ours_graph": "ours tf.function", "ours_xla": "ours tf.function + XLA", "pytorch": "PyTorch eager (sdpa)"}


def forward_flops(shape: dict, batch: int, seq: int) -> float:
    """Multiply-adds x 2 of the encoder's matmuls (embedding lookups, softmax, LayerNorm, GELU left out)."""
    h, f, n = shape["hidden_size"], shape["intermediate_size"], shape["num_layers"]
    per_token_layer = 8 * h * h + 4 * h * f + 4 * seq * h  # Q, K, V, O; FFN in/out; scores and context
    return batch * seq * n * per_token_layer + 2 * batch * h * h  # + pooler


def torch_device() -> str:
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_sync() -> None:
    import torch
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def matmul_rate(n: int = 2048, repeats: int = 7, precision: str = "float32") -> dict:
    import tensorflow as tf
    import torch
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    ta, tb = tf.constant(a, dtype=precision), tf.constant(b, dtype=precision)
    dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
    pa, pb = (torch.from_numpy(x).to(torch_device(), dtype) for x in (a, b))

    def torch_mm():
        torch.mm(pa, pb)
        torch_sync()

    fns = {"tensorflow": lambda: tf.linalg.matmul(ta, tb).numpy(), "torch": torch_mm}
    if precision == "float32":
        fns["numpy"] = lambda: a @ b
    times = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    flops = 2 * n ** 3
    return {k: {"median_s": round(median(v), 5), "gflops": round(flops / median(v) / 1e9, 1)} for k, v in
            times.items()} | {"n": n, "repeats": repeats, "dtype": precision}


def build_ours(shape: dict, batch: int, seq: int, vocab: int, precision: str = "float32"):
    import keras
    import tensorflow as tf

    from xtremedistil_tf.models.encoder import Encoder
    from xtremedistil_tf.models.heads import TaskModel
    from xtremedistil_tf.strategy import set_precision
    from xtremedistil_tf.train import loop
    from xtremedistil_tf.train.losses import LabelLoss
    from xtremedistil_tf.train.trainer import LossModel

    keras.utils.set_random_seed(0)
    set_precision("mixed_bfloat16" if precision == "bfloat16" else "float32")
    enc = Encoder(vocab_size=vocab, **shape, name="encoder")
    enc.build()
    model = TaskModel(enc, num_labels=2, kind="classification")
    model.build()
    rng = np.random.default_rng(0)
    inputs = {"input_ids": tf.constant(rng.integers(1000, vocab, (batch, seq)), tf.int32),
              "attention_mask": tf.ones((batch, seq), tf.int32),
              "token_type_ids": tf.zeros((batch, seq), tf.int32)}
    batch_with_labels = dict(inputs, labels=tf.constant(rng.integers(0, 2, batch), tf.int32))

    def fwd(x):
        out = enc(x, training=False)
        return out["sequence_output"], out["pooled_output"]

    strategy = tf.distribute.get_strategy()

    def train_step(jit_compile):
        # The library's training path: a LossModel's train_step under loop.Step (AdamW, one label loss).
        optimizer = loop.make_optimizer(1e-4, epsilon=1e-8, weight_decay=0.01)
        loss_model = LossModel(model, [LabelLoss("classification")])
        loop.build_optimizer(optimizer, model.trainable_variables, strategy)
        loss_model.configure(optimizer=optimizer, variables=model.trainable_variables, global_batch_size=batch,
                             jit_compile=jit_compile)
        return loop.Step(strategy, loss_model)

    fns = {
        ("ours_graph", "forward"): (tf.function(fwd), inputs),
        ("ours_xla", "forward"): (tf.function(fwd, jit_compile=True), inputs),
        ("ours_graph", "train"): (train_step(False), batch_with_labels),
        ("ours_xla", "train"): (train_step(True), batch_with_labels),
    }

    def runner(fn, x):
        def run():
            out = fn(x)
            _ = [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]
        return run

    params = sum(int(np.prod(v.shape)) for v in enc.weights)
    return {k: runner(fn, x) for k, (fn, x) in fns.items()}, params


def build_torch(shape: dict, batch: int, seq: int, vocab: int, precision: str = "float32"):
    import contextlib

    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=vocab, hidden_size=shape["hidden_size"], num_hidden_layers=shape["num_layers"],
                     num_attention_heads=shape["num_heads"], intermediate_size=shape["intermediate_size"],
                     num_labels=2, attn_implementation="sdpa")
    device = torch_device()
    model = BertForSequenceClassification(cfg).to(device)
    bert = model.bert
    rng = np.random.default_rng(0)
    inputs = {"input_ids": torch.from_numpy(rng.integers(1000, vocab, (batch, seq))),
              "attention_mask": torch.ones((batch, seq), dtype=torch.long),
              "token_type_ids": torch.zeros((batch, seq), dtype=torch.long)}
    inputs = {k: v.to(device) for k, v in inputs.items()}
    labels = torch.from_numpy(rng.integers(0, 2, batch)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, eps=1e-8)

    def autocast():
        if precision == "bfloat16":
            return torch.autocast(device_type=device, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def forward():
        bert.eval()
        with torch.inference_mode(), autocast():
            bert(**inputs)
        torch_sync()

    def train():
        model.train()
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            out = model(**inputs, labels=labels)
        out.loss.backward()
        optimizer.step()
        torch_sync()

    return {("pytorch", "forward"): forward, ("pytorch", "train"): train}, \
        bert.config._attn_implementation


def bench_shape(name: str, shape: dict, args) -> dict:
    fns, params = build_ours(shape, args.batch, args.seq, args.vocab, args.precision)
    tfns, attn = build_torch(shape, args.batch, args.seq, args.vocab, args.precision)
    fns.update(tfns)
    repeats = {"forward": args.repeats if name == "minilm" else args.repeats_large,
               "train": args.repeats if name == "minilm" else args.repeats_large}
    flops = forward_flops(shape, args.batch, args.seq)
    result = {"shape": shape, "batch": args.batch, "seq": args.seq, "encoder_params": params,
              "pytorch_attn_implementation": attn, "forward_gflop": round(flops / 1e9, 1),
              "train_gflop_approx": round(3 * flops / 1e9, 1), "phases": {}}
    for phase in ("forward", "train"):
        first = {}
        for impl in IMPLS:  # warm-up: traces, XLA compiles, optimizer slots
            t = time.perf_counter()
            fns[(impl, phase)]()
            first[impl] = round(time.perf_counter() - t, 3)
        if name == "minilm":  # a second untimed call (skipped for BERT-base, slow on a CPU): allocator settles
            for impl in IMPLS:
                fns[(impl, phase)]()
        times = {impl: [] for impl in IMPLS}
        for r in range(repeats[phase]):
            order = IMPLS if r % 2 == 0 else IMPLS[::-1]
            for impl in order:
                t = time.perf_counter()
                fns[(impl, phase)]()
                times[impl].append(time.perf_counter() - t)
            print(f"{name} {phase} repeat {r + 1}: " + ", ".join(f"{k} {times[k][-1]:.3f}s" for k in IMPLS),
                  flush=True)
        work = flops * (3 if phase == "train" else 1)
        rows = {}
        for impl in IMPLS:
            m = median(times[impl])
            rows[impl] = {"median_s": round(m, 4), "min_s": round(min(times[impl]), 4),
                          "times_s": [round(x, 4) for x in times[impl]], "first_call_s": first[impl],
                          "seq_per_s": round(args.batch / m, 2), "gflops": round(work / m / 1e9, 1),
                          "ratio_vs_pytorch": None}
        for impl in IMPLS:
            rows[impl]["ratio_vs_pytorch"] = round(rows[impl]["median_s"] / rows["pytorch"]["median_s"], 3)
        result["phases"][phase] = {"repeats": repeats[phase], "impls": rows}
    del fns, tfns
    gc.collect()
    return result


def gpu_name() -> str | None:
    import torch
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def peak_gflops(record: dict) -> float:
    """The best matmul rate measured (before or after the encoder runs, in the run's precision): the machine's
    reachable peak."""
    return max(v["gflops"] for key in ("matmul_2048", "matmul_2048_after") for v in record.get(key, {}).values()
               if isinstance(v, dict))


def plot(record: dict, path) -> None:
    plt = matplotlib_pyplot()
    shapes = list(record["shapes"])
    phases = ("forward", "train")
    fig, axes = plt.subplots(1, 2 * len(shapes), figsize=(3.3 * 2 * len(shapes), 3.6), squeeze=False)
    colors = {"ours_graph": "tab:blue", "ours_xla": "tab:cyan", "pytorch": "tab:orange"}
    peak = peak_gflops(record)
    for i, (shape, phase) in enumerate((s, p) for s in shapes for p in phases):
        ax = axes[0][i]
        rows = record["shapes"][shape]["phases"][phase]["impls"]
        vals = [rows[k]["seq_per_s"] for k in IMPLS]
        bars = ax.bar(range(len(IMPLS)), vals, color=[colors[k] for k in IMPLS])
        for b, k in zip(bars, IMPLS):
            ax.text(b.get_x() + b.get_width() / 2, b.get_height(),
                    f"{rows[k]['seq_per_s']:.2f}\n{rows[k]['gflops'] / peak:.0%} pk", ha="center", va="bottom",
                    fontsize=7)
        ax.set_xticks(range(len(IMPLS)), ["graph", "XLA", "PyTorch"], fontsize=8)
        ax.set_title(f"{shape} {'training step' if phase == 'train' else 'forward'}", fontsize=9)
        ax.set_ylim(0, max(vals) * 1.3)
        if i == 0:
            ax.set_ylabel("sequences / s (batch 32 x 128)")
    threads = record["threads"]["tf_intra_op"] or "default"
    where = record.get("gpu") or (f"{record['machine']['cpu']} ({record['machine']['cores']} cores, {threads} "
                                  "thread(s) per framework, busy machine)")
    fig.suptitle(f"Encoder throughput (median), {where}, {record.get('precision', 'float32')}; "
                 f"'pk' = fraction of the {peak:.0f} GFLOP/s matmul rate", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default="minilm,bert-base")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--vocab", type=int, default=30522)
    p.add_argument("--repeats", type=int, default=7, help="timed repeats per phase at the MiniLM shape")
    p.add_argument("--repeats_large", type=int, default=3, help="timed repeats per phase at the BERT-base shape")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 0,
                   help="threads for both frameworks (TF intra-op and inter-op, torch; default: the machine's "
                        "cores); 0: leave each framework's default")
    p.add_argument("--omp_passive", action="store_true",
                   help="OMP_WAIT_POLICY=PASSIVE for torch's OpenMP threads (steadier on a busy machine)")
    p.add_argument("--precision", choices=("float32", "bfloat16"), default="float32",
                   help="bfloat16: Keras mixed_bfloat16 against torch.autocast(bfloat16) (for a GPU machine)")
    p.add_argument("--out", default="encoder")
    p.add_argument("--replot", action="store_true", help="only redraw the PNG from results/<out>.json")
    args = p.parse_args()
    if args.replot:
        import json
        record = json.loads((RESULTS / f"{args.out}.json").read_text())
        plot(record, RESULTS / f"{args.out}_throughput.png")
        return 0
    quiet_tf()
    if args.omp_passive:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import tensorflow as tf  # noqa: F401
    import torch
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
        torch.set_num_threads(args.threads)

    t0 = time.time()
    record = {"benchmark": "encoder", "date": now(), "command": command(), "machine": machine(),
              "versions": versions(), "threads": {"torch": torch.get_num_threads(),
                                                  "tf_intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                                                  "tf_inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
                                                  "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default")},
              "precision": args.precision, "gpu": gpu_name(), "matmul_2048": matmul_rate(precision=args.precision),
              "shapes": {}}
    print("matmul:", record["matmul_2048"], flush=True)
    for name in args.shapes.split(","):
        record["shapes"][name] = bench_shape(name, SHAPES[name], args)
        print(name, {ph: {k: (v["median_s"], v["ratio_vs_pytorch"]) for k, v in d["impls"].items()}
                     for ph, d in record["shapes"][name]["phases"].items()}, flush=True)
    record["matmul_2048_after"] = matmul_rate(precision=args.precision)
    record["matmul_peak_gflops"] = peak_gflops(record)
    for shape in record["shapes"].values():
        for phase in shape["phases"].values():
            for row in phase["impls"].values():
                row["fraction_of_matmul_peak"] = round(row["gflops"] / record["matmul_peak_gflops"], 3)
    record["peak_rss_mb"] = round(peak_rss_mb(), 1)
    record["wall_s"] = round(time.time() - t0, 1)
    record["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    write_json(f"{args.out}.json", record)
    plot(record, RESULTS / f"{args.out}_throughput.png")
    print(f"wrote {RESULTS / (args.out + '.json')} and {args.out}_throughput.png in {record['wall_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
