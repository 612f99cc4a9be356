"""Where LiteRT's full-integer int8 BERT loses its time: each part of a MiniLM block (batch 32 x 128 tokens, hidden
384, 12 heads, FFN 1536) converted alone, float and full-integer int8 (the converter settings of `--export_int8`),
and timed with the XNNPACK delegate (LiteRT's default) and without it (TFLite's own kernels only).

An int8 part that takes as long with XNNPACK as without it is not delegated. Writes
benchmarks/results/<out>.json (default out: litert_ops).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from _common import command, machine, now, quiet_tf, versions, write_json

B, T, H, HEADS, FFN = 32, 128, 384, 12, 1536


def parts():
    """(name, function of float tensors, input shapes, input scale)."""
    import keras
    import tensorflow as tf
    norm = keras.layers.LayerNormalization(epsilon=1e-12)
    norm.build((None, H))
    up, out = keras.layers.Dense(FFN), keras.layers.Dense(H)
    up.build((None, H))
    out.build((None, H))
    d = H // HEADS
    return [
        ("layer norm [4096, 384]", lambda x: norm(x), [(B * T, H)], 3.0),
        ("dense 384 -> 384", lambda x: out(x), [(B * T, H)], 1.0),
        ("dense 384 -> 1536 + GELU", lambda x: tf.nn.gelu(up(x), approximate=False), [(B * T, H)], 1.0),
        ("GELU [4096, 1536]", lambda x: tf.nn.gelu(x, approximate=False), [(B * T, FFN)], 2.0),
        ("Q K^T (batch matmul)", lambda q, k: tf.matmul(q, k, transpose_b=True), [(B, HEADS, T, d)] * 2, 1.0),
        ("softmax [32, 12, 128, 128]", lambda s: tf.nn.softmax(s), [(B, HEADS, T, T)], 3.0),
        ("probabilities V (batch matmul)", lambda p, v: tf.matmul(p, v), [(B, HEADS, T, T), (B, HEADS, T, d)], 1.0),
        ("heads transpose", lambda x: tf.transpose(tf.reshape(x, (B, T, HEADS, d)), (0, 2, 1, 3)), [(B * T, H)], 1.0),
    ]


def convert(fn, shapes, scale, int8: bool, rng) -> bytes:
    import tensorflow as tf
    f = tf.function(fn, input_signature=[tf.TensorSpec(s, tf.float32) for s in shapes])
    c = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    if int8:  # as xtremedistil_tf/deploy/runtimes.py writes int8-full
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.representative_dataset = lambda: ([(rng.normal(size=s) * scale).astype("float32") for s in shapes]
                                            for _ in range(4))
        c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    return c.convert()


def milliseconds(data: bytes, shapes, scale, rng, *, xnnpack: bool, threads: int, repeats: int) -> float:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    kwargs = {} if xnnpack else {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    it = Interpreter(model_content=data, num_threads=threads, **kwargs)
    it.allocate_tensors()
    for detail, shape in zip(it.get_input_details(), shapes):
        it.set_tensor(detail["index"], (rng.normal(size=shape) * scale).astype("float32"))
    it.invoke()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        it.invoke()
        times.append(time.perf_counter() - t)
    return round(statistics.median(times) * 1000, 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", default="litert_ops")
    args = p.parse_args()
    quiet_tf()
    rng = np.random.default_rng(0)
    rows = []
    print("| part | float, XNNPACK | int8, XNNPACK | int8 speed-up | float, TFLite kernels | int8, TFLite kernels |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, fn, shapes, scale in parts():
        row = {"part": name}
        for variant in ("float", "int8"):
            data = convert(fn, shapes, scale, variant == "int8", rng)
            for xnnpack in (True, False):
                key = f"{variant}_{'xnnpack' if xnnpack else 'builtin'}_ms"
                row[key] = milliseconds(data, shapes, scale, rng, xnnpack=xnnpack, threads=args.threads,
                                        repeats=args.repeats)
        rows.append(row)
        print(f"| {name} | {row['float_xnnpack_ms']} | {row['int8_xnnpack_ms']} | "
              f"{row['float_xnnpack_ms'] / row['int8_xnnpack_ms']:.2f}x | {row['float_builtin_ms']} | "
              f"{row['int8_builtin_ms']} |", flush=True)
    record = {"date": now(), "command": command(), "machine": machine(), "versions": versions("ai_edge_litert"),
              "shape": {"batch": B, "tokens": T, "hidden": H, "heads": HEADS, "ffn": FFN}, "threads": args.threads,
              "rows": rows}
    print("wrote", write_json(f"{args.out}.json", record))


if __name__ == "__main__":
    main()
