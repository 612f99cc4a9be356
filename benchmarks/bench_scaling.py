"""Benchmark: scaling of the transfer set (10k, 100k, ... lines): wall time per 1k examples and peak RSS.

For each size, in its own process (peak RSS is per process): a synthetic transfer file of N lines (SST-2 training
sentences from ../shared/data/glue/SST-2/train.tsv, cycled), then the distiller's own machinery
(xtremedistil_tf.distill.runner.Distillation) with the reference flags (sst2-small task, MiniLM teacher, 2 x 128
student, seq 64, distillation batch 64, default mode) and --distil_chunk_size 10000:
  1. tokenize the transfer file into the TFRecord cache (streaming);
  2. stage 1 (representation transfer, student + projection): one epoch per chunk; the teacher's outputs for each
     chunk are computed here (and cached on disk for the next stage);
  3. stage 2 (logits, head only): one epoch per chunk.
Patience is set high so that every chunk is trained (the run's own early stopping across chunks would otherwise
stop after a chunk that does not improve). The fine-tuned teacher is made once (or taken from --teacher_dir) and
loaded by every size, so its fine-tuning is not in the per-example time.

    python benchmarks/bench_scaling.py --sizes 10000,100000,1000000 --teacher_dir <model_dir>/teacher

1M lines take about 10x the 100k time (well over an hour of 2 cores, dominated by the teacher's forward passes).
When 1M is not among the sizes, a 1M row is extrapolated from the largest measured size's per-1k times and the 1M
streaming benchmark (bench_data_stream.py), and marked as such. Writes benchmarks/results/scaling.json (after every
size, so a long run interrupted keeps the sizes it finished) and scaling.png.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import RESULTS, command, data_dir, machine, matplotlib_pyplot, minilm_dir, now, rss_mb, versions, write_json


def one_size(lines: int, work: Path, teacher_dir: Path, out: Path, seed: int) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from absl import logging
    logging.set_verbosity(logging.WARNING)
    import numpy as np

    from bench_data_stream import write_transfer_file
    from xtremedistil_tf.distill.config import DistilConfig
    from xtremedistil_tf.distill.runner import Distillation

    t_all = time.time()
    rss = {"start": round(rss_mb(), 1)}
    transfer = work / f"transfer_{lines}.tsv"
    source = write_transfer_file(transfer, lines, seed)
    model_dir = work / f"run_{lines}"
    shutil.rmtree(model_dir, ignore_errors=True)
    task = str(data_dir() / "tasks" / "sst2-small")
    cfg = DistilConfig(task=task, model_dir=str(model_dir), transfer_file=str(transfer),
                       teacher_model_dir=str(teacher_dir), pt_teacher_checkpoint=minilm_dir(), hidden_size=128,
                       num_hidden_layers=2, num_attention_heads=2, seq_len=64, teacher_batch_size=32,
                       student_distil_batch_size=64, student_ft_batch_size=32, ft_epochs=2, distil_epochs=1,
                       patience=1000, distil_chunk_size=10000, mode="default", seed=seed,
                       compress_word_embedding=True, export_hf=False, export_saved_model=False, log_every=0)
    d = Distillation(cfg)
    d.setup()
    t = time.time()
    d.load_data()
    tokenize_s = time.time() - t
    t = time.time()
    d.prepare_teacher()  # loads the saved teacher (fine-tunes and saves it the first time)
    teacher_s = time.time() - t
    rss["after_teacher"] = round(rss_mb(), 1)
    d.prepare_student()  # the run's own teacher-output cache, student and stage plan
    teacher_out_s = []
    original = d.teacher_outputs

    rss_trace = []  # (stage, chunk, RSS MB) each time a chunk is loaded: shows whether memory grows per chunk
    current = {"stage": 0}

    def timed_teacher_outputs(index):
        rss_trace.append([current["stage"], index, round(rss_mb(), 1)])
        cached = os.path.exists(d.teacher_cache.path(index))
        t0 = time.time()
        res = original(index)
        if not cached:
            teacher_out_s.append(round(time.time() - t0, 2))
        return res

    d.teacher_outputs = timed_teacher_outputs
    stages = {}
    rss["per_stage"] = {}
    for stage in d.plan[:2]:  # default mode: representation (student + projection), then logits (head only)
        before = len(teacher_out_s)
        current["stage"] = stage.index
        t = time.time()
        result, _, _ = d.run_stage(stage, None)
        wall = time.time() - t
        stages[stage.index] = {"loss": stage.loss, "trainable": list(stage.trainable), "wall_s": round(wall, 1),
                               "epochs": len(result.history),
                               "chunks": sorted({h["chunk"] for h in result.history}),
                               "teacher_outputs_s": round(sum(teacher_out_s[before:]), 1),
                               "epoch_seconds": [h["seconds"] for h in result.history]}
        rss["per_stage"][stage.index] = round(rss_mb(), 1)
    n = d.data.transfer.num_examples
    stage_s = sum(s["wall_s"] for s in stages.values())
    total = tokenize_s + stage_s
    record = {"lines": lines, "examples": n, "chunks": d.num_chunks, "source": source,
              "tokenize_s": round(tokenize_s, 1), "teacher_load_or_finetune_s": round(teacher_s, 1),
              "teacher_outputs_s": round(sum(teacher_out_s), 1), "teacher_outputs_per_chunk_s": teacher_out_s,
              "stages": stages, "total_s": round(total, 1),
              "s_per_1k": {"total": round(total / n * 1000, 2), "tokenize": round(tokenize_s / n * 1000, 3),
                           "teacher_outputs": round(sum(teacher_out_s) / n * 1000, 2),
                           "stage1_student_training": round((stages[1]["wall_s"] - stages[1]["teacher_outputs_s"])
                                                            / n * 1000, 2),
                           "stage2": round(stages[2]["wall_s"] / n * 1000, 2)},
              "rss_mb": rss, "rss_trace_stage_chunk_mb": rss_trace + [[0, -1, round(rss_mb(), 1)]],
              "process_wall_s": round(time.time() - t_all, 1),
              "student_params": int(sum(np.prod(v.shape) for v in d.student.weights))}
    out.write_text(json.dumps(record, indent=2))
    shutil.rmtree(model_dir, ignore_errors=True)
    transfer.unlink(missing_ok=True)
    return 0


def _size(lines: int) -> str:
    return f"{lines // 10**6}M" if lines >= 10**6 and lines % 10**6 == 0 else f"{lines // 1000}k"


def plot(record: dict, path: Path) -> None:
    plt = matplotlib_pyplot()
    rows = record["sizes"]
    xs = [r["lines"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
    ax = axes[0]
    parts = (("teacher_outputs", "teacher outputs"), ("stage1_student_training", "stage 1 student"),
             ("stage2", "stage 2 (logits, head)"), ("tokenize", "tokenize"))
    bottom = [0.0] * len(rows)
    labels = [_size(x) for x in xs]
    for key, label in parts:
        vals = [r["s_per_1k"][key] for r in rows]
        ax.bar(labels, vals, bottom=bottom, label=label)
        bottom = [b + v for b, v in zip(bottom, vals)]
    for i, r in enumerate(rows):
        ax.text(i, bottom[i], f"{r['s_per_1k']['total']:.1f}", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("seconds per 1k transfer examples")
    ax.set_title("wall time per 1k (stage 1 + one logits stage)", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[1]
    ax.plot(labels, [r["peak_rss_mb"] for r in rows], marker="o", label="distillation (this benchmark)")
    ds = {int(k): v for k, v in (record.get("data_stream") or {}).items()}  # JSON keys come back as strings
    if ds:
        ax.plot([_size(k) for k in sorted(ds)], [ds[k] for k in sorted(ds)], marker="s",
                label="tokenize + stream only (bench_data_stream)")
    ax.set_ylim(0, max([r["peak_rss_mb"] for r in rows] + list(ds.values())) * 1.25)
    ax.set_ylabel("peak RSS, MB")
    ax.set_title("peak memory per transfer-set size", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[2]
    for r in rows:
        trace = [t for t in r.get("rss_trace_stage_chunk_mb", []) if t[0] > 0]
        if trace:
            ax.plot(range(1, len(trace) + 1), [t[2] for t in trace], marker=".", label=_size(r["lines"]))
    ax.set_xlabel("chunk loads (stage 1 chunks, then stage 2 chunks)")
    ax.set_ylabel("RSS, MB")
    ax.set_title("RSS each time a chunk is loaded", fontsize=9)
    ax.legend(fontsize=7)
    fig.suptitle(f"Transfer-set scaling, {record['machine']['cpu']} ({record['machine']['cores']} cores), "
                 "chunks of 10,000", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10000,100000")
    p.add_argument("--teacher_dir", default="", help="a fine-tuned teacher folder (teacher.weights.h5 + "
                   "teacher-config.json, e.g. <model_dir>/teacher of a default-mode reference run); default: "
                   "fine-tune one into the work folder first")
    p.add_argument("--workdir", default="")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--replot", action="store_true", help="only redraw results/scaling.png from scaling.json")
    p.add_argument("--_one", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--_out", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.replot:
        plot(json.loads((RESULTS / "scaling.json").read_text()), RESULTS / "scaling.png")
        return 0
    work = Path(args.workdir) if args.workdir else Path(tempfile.gettempdir()) / "bench_scaling"
    work.mkdir(parents=True, exist_ok=True)
    teacher_dir = Path(args.teacher_dir) if args.teacher_dir else work / "teacher"
    if args._one is not None:
        return one_size(args._one, work, teacher_dir, Path(args._out), args.seed)

    t0 = time.time()
    record = {"benchmark": "scaling", "date": now(), "command": command(), "machine": machine(),
              "versions": versions(), "teacher_dir": str(teacher_dir), "sizes": []}
    for lines in map(int, args.sizes.split(",")):
        out = work / f"scaling_{lines}.json"
        cmd = [sys.executable, os.path.abspath(__file__), "--_one", str(lines), "--_out", str(out), "--workdir",
               str(work), "--teacher_dir", str(teacher_dir), "--seed", str(args.seed)]
        t = time.time()
        proc = subprocess.Popen(cmd)
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status):
            raise SystemExit(f"size {lines} failed")
        rec = json.loads(out.read_text())
        rec["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)
        rec["subprocess_wall_s"] = round(time.time() - t, 1)
        record["sizes"].append(rec)
        print(f"{lines}: {rec['s_per_1k']} s per 1k, peak RSS {rec['peak_rss_mb']} MB, "
              f"{rec['subprocess_wall_s']} s", flush=True)
        record["wall_s"] = round(time.time() - t0, 1)
        write_json("scaling.json", record)
    stream = {}
    for f in sorted(RESULTS.glob("data_stream_*.json")):
        d = json.loads(f.read_text())
        stream[d["lines"]] = d["peak_rss_mb"]
    record["data_stream"] = stream
    if max(r["lines"] for r in record["sizes"]) < 1_000_000:
        record["extrapolated_1M"] = extrapolate_1m(record["sizes"][-1], stream)
    record["wall_s"] = round(time.time() - t0, 1)
    write_json("scaling.json", record)
    plot(record, RESULTS / "scaling.png")
    print(json.dumps(record.get("extrapolated_1M", {}), indent=2))
    return 0


def extrapolate_1m(big: dict, stream: dict) -> dict:
    """A 1M row from the largest measured size's per-1k times and the 1M tokenize/stream benchmark."""
    ds1m = RESULTS / "data_stream_1000000.json"
    tok_1m = json.loads(ds1m.read_text())["build_s"] if ds1m.exists() else None
    per1k = big["s_per_1k"]
    return {
        "measured": False,
        "basis": f"per-1k times of the {big['lines']}-line run; tokenizing 1M lines measured by "
                 "bench_data_stream.py",
        "tokenize_s": tok_1m,
        "teacher_outputs_s": round(per1k["teacher_outputs"] * 1000, 0),
        "stage1_student_s": round(per1k["stage1_student_training"] * 1000, 0),
        "stage2_s": round(per1k["stage2"] * 1000, 0),
        "total_h": round(((tok_1m or per1k["tokenize"] * 1000) + 1000 * (per1k["teacher_outputs"] +
                          per1k["stage1_student_training"] + per1k["stage2"])) / 3600, 2),
        "peak_rss_mb_expected": "flat: chunks of 10,000 are loaded one at a time and the teacher outputs are "
                                "cached per chunk on disk; 1M-line tokenize+stream peak RSS "
                                f"{stream.get(1000000)} MB (bench_data_stream.py)"}


if __name__ == "__main__":
    sys.exit(main())
