"""Prints the markdown tables of benchmarks/README.md from the JSON files in benchmarks/results/, or rewrites
the README's generated blocks (between `<!-- BEGIN name -->` and `<!-- END name -->`) in place.

    python benchmarks/tables.py [encoder|inference|scaling|distillation ...]
    python benchmarks/tables.py --update-readme
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def load(name):
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def encoder() -> str:
    r = load("encoder")
    if not r:
        return "(no results/encoder.json)\n"
    peak = r.get("matmul_peak_gflops") or max(v["gflops"] for k in ("matmul_2048", "matmul_2048_after")
                                              for v in r.get(k, {}).values() if isinstance(v, dict))
    mm = ", ".join(f"{k} {r['matmul_2048'][k]['gflops']} / {r['matmul_2048_after'][k]['gflops']}"
                   for k in ("numpy", "tensorflow", "torch"))
    out = [f"float32 matmul 2048 x 2048, GFLOP/s at the start / end of the run: {mm}; peak used below: "
           f"**{peak} GFLOP/s** ({r['threads']['tf_intra_op'] or 'default'} thread).", "",
           "| shape | step | implementation | median s (min) | sequences/s | GFLOP/s | of peak | time vs PyTorch |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    names = {"ours_graph": "ours, tf.function", "ours_xla": "ours, tf.function + XLA",
             "pytorch": "transformers PyTorch (eager, sdpa)"}
    for shape, d in r["shapes"].items():
        for phase, p in d["phases"].items():
            step = (f"forward ({d['forward_gflop']} GFLOP)" if phase == "forward"
                    else f"train step (~{d['train_gflop_approx']} GFLOP)")
            for impl, row in p["impls"].items():
                out.append(f"| {shape} | {step}, n={p['repeats']} | {names[impl]} | {row['median_s']:.2f} "
                           f"({row['min_s']:.2f}) | {row['seq_per_s']} | {row['gflops']} | "
                           f"{row['gflops'] / peak:.0%} | {row['ratio_vs_pytorch']:.2f}x |")
    return "\n".join(out) + "\n"


def inference() -> str:
    r = load("inference")
    if not r:
        return "(no results/inference.json)\n"
    out = ["| model | params | SavedModel MB | ONNX MB | ONNX vs TF max abs diff (last_hidden_state) |",
           "| --- | --- | --- | --- | --- |"]
    for m, info in r["models"].items():
        out.append(f"| {m} ({info['weights']}) | {info['params'] / 1e6:.1f}M | {info['saved_model_mb']} | "
                   f"{info['onnx_mb']} | {info['onnx_vs_savedmodel_max_abs_diff']['last_hidden_state']:.1e} |")
    out += ["", "| model | runtime | b1 s64 ms | b1 s128 ms | b32 s64 seq/s | b32 s128 seq/s |",
            "| --- | --- | --- | --- | --- | --- |"]
    t = r["timings"]
    for m in r["models"]:
        for rt in ("savedmodel", "onnxruntime"):
            out.append(f"| {m} | {rt} | {t['b1_s64']['results'][m][rt]['median_ms']} | "
                       f"{t['b1_s128']['results'][m][rt]['median_ms']} | {t['b32_s64']['results'][m][rt]['seq_per_s']} | "
                       f"{t['b32_s128']['results'][m][rt]['seq_per_s']} |")
    out += ["", "| speedup (time ratio) | runtime | b1 s64 | b1 s128 | b32 s64 | b32 s128 | paper |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for pair, d in r["speedups"].items():
        for rt in ("savedmodel", "onnxruntime"):
            paper = f"{r['paper_claim']['speedup']}x" if pair == "bert_base / student_6x384" else ""
            out.append(f"| {pair} | {rt} | " + " | ".join(f"{d[f'{c}_{rt}']}x" for c in
                                                         ("b1_s64", "b1_s128", "b32_s64", "b32_s128"))
                       + f" | {paper} |")
    return "\n".join(out) + "\n"


def scaling() -> str:
    r = load("scaling")
    if not r:
        return "(no results/scaling.json)\n"
    out = ["| transfer lines | chunks | total s | s per 1k: total | tokenize | teacher outputs | stage 1 student "
           "| stage 2 | peak RSS MB |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for s in r["sizes"]:
        k = s["s_per_1k"]
        out.append(f"| {s['lines']:,} | {s['chunks']} | {s['total_s']} | **{k['total']}** | {k['tokenize']} | "
                   f"{k['teacher_outputs']} | {k['stage1_student_training']} | {k['stage2']} | "
                   f"**{s['peak_rss_mb']}** |")
    e = r.get("extrapolated_1M")
    if e:
        total_s = e["total_h"] * 3600
        out.append(f"| 1,000,000 (extrapolated, not run) | 100 | {total_s:.0f} | {total_s / 1000:.2f} | "
                   f"{(e['tokenize_s'] or 0) / 1000:.3f} (measured) | {e['teacher_outputs_s'] / 1000:.2f} | "
                   f"{e['stage1_student_s'] / 1000:.2f} | {e['stage2_s'] / 1000:.2f} | "
                   f"{r.get('data_stream', {}).get('1000000', r.get('data_stream', {}).get(1000000, '-'))} "
                   "(tokenize + stream, measured) |")
    return "\n".join(out) + "\n"


def distillation() -> str:
    path = RESULTS / "distillation.md"
    return path.read_text() if path.exists() else "(no results/distillation.md)\n"


def probe() -> str:
    r = load("faithful_stage4_probe")
    if not r:
        return "(no results/faithful_stage4_probe.json)\n"
    out = [f"From the stage-3 weights of `{r['model_dir']}` (seed {r['seed']}; dev {r['stage3']['dev']:.3f}, test "
           f"{r['stage3']['test']:.3f}), stage 4 trained on, lr {r['learning_rate']:g}, no early stopping. "
           f"Validation loss of predicting the mean teacher logits: {r['val_loss_of_the_mean_predictor']}.", "",
           "| stage-4 epoch | train loss | validation loss | dev | test | s |", "| --- | --- | --- | --- | --- | --- |"]
    for e in r["epochs"]:
        out.append(f"| {e['epoch']} | {e['train_loss']} | {e['val_loss']} | {e['dev']:.3f} | {e['test']:.3f} | "
                   f"{e['seconds']} |")
    return "\n".join(out) + "\n"


def update_readme() -> None:
    import re
    readme = RESULTS.parent / "README.md"
    text = readme.read_text()
    for name in ("encoder", "inference", "scaling", "distillation", "probe"):
        block = f"<!-- BEGIN {name} -->\n" + globals()[name]() + f"<!-- END {name} -->"
        text = re.sub(rf"<!-- BEGIN {name} -->.*?<!-- END {name} -->", lambda _: block, text, flags=re.S)
    readme.write_text(text)


def main() -> int:
    if sys.argv[1:] == ["--update-readme"]:
        update_readme()
        return 0
    which = sys.argv[1:] or ["encoder", "inference", "scaling", "distillation", "probe"]
    for name in which:
        print(f"<!-- {name} -->")
        print(globals()[name]())
    return 0


if __name__ == "__main__":
    sys.exit(main())
