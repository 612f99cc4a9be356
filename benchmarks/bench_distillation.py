"""Benchmark: the reference distillation (README "Run the main job") in both modes, and a labels-only baseline.

Runs (or ingests already-finished runs of) run_distillation.py with the reference flags on
../shared/data/tasks/sst2-small (MiniLM teacher, 2 x 128 student, seq 64, batch sizes 32/64/32, ft_epochs 2,
distil_epochs 3, patience 1, one 8,000-line chunk) in --mode=faithful and the default mode, with and without
--compress_word_embedding, each under /usr/bin/time -v, and reads every model_dir's metrics.json: teacher dev/test
accuracy, per-stage wall time and dev/test accuracy, the selected stage, the whole command's wall time and peak RSS.

The baseline is the same student (default mode: 2 x 128, FFN 512, BERT head, PCA-compressed teacher word
embeddings, lr 1e-3) trained on the 2,000 labelled sentences alone (no teacher outputs), every layer trainable,
with the project's own train loop and early stopping on dev (best dev epoch kept), one process per seed.

    # ingest the finished reference runs, run the baseline (3 seeds), write the table:
    python benchmarks/bench_distillation.py --from_dirs default_compress_s1=/tmp/ref-db1 faithful=/tmp/ref-fa \
        --baseline_seeds 1,2,3
    # add more runs to those already recorded in results/distillation.json (their folders may be gone):
    python benchmarks/bench_distillation.py --merge --from_dirs faithful_s5=runs/fa5 --baseline_seeds ''
    # or run everything here (about 12-25 minutes per run on 2 cores):
    python benchmarks/bench_distillation.py --run faithful,faithful_compress,default,default_compress --seeds 1

A run's log is looked for at <model_dir>.log (or --logs NAME=FILE); its `/usr/bin/time -v` block gives the wall
time and peak RSS. Writes benchmarks/results/distillation.json, distillation.md and copies one run's
plots/stage_losses.png and stage_scores.png to results/distillation_<name>_stage_*.png.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from _common import REPO, RESULTS, command, data_dir, machine, merge_by_name, minilm_dir, now, versions, \
    write_json

TASK = "../shared/data/tasks/sst2-small"
REFERENCE_FLAGS = ["--task", TASK, "--transfer_file", f"{TASK}/transfer.tsv", "--hidden_size", "128",
                   "--num_hidden_layers", "2", "--num_attention_heads", "2", "--seq_len", "64",
                   "--teacher_batch_size", "32", "--student_distil_batch_size", "64",
                   "--student_ft_batch_size", "32", "--ft_epochs", "2", "--distil_epochs", "3", "--patience", "1",
                   "--distil_chunk_size", "8000"]
CONFIGS = {"faithful": ["--mode", "faithful"],
           "faithful_compress": ["--mode", "faithful", "--compress_word_embedding"],
           "default": ["--mode", "default"],
           "default_compress": ["--mode", "default", "--compress_word_embedding"]}
# Targets of the distiller issue (issue 4) for the reference run.
TARGETS = {"faithful": "test within 0.02 of the original release's 0.672",
           "default_compress": "test >= 0.78 averaged over 3 seeds, each run <= 6 min on 2 cores"}
ORIGINAL_RELEASE = {"teacher_test": 0.821, "student_test": 0.672, "student_dev": 0.695, "wall_min": [17.7, 18.6],
                    "peak_rss_gb": [2.7, 2.8], "note": "the original release (TF 2.3.1) run on this machine, "
                    "faithful flags, with or without --compress_word_embedding (bit-identical)"}
LOG_TS = re.compile(r"^[IWE](\d{4}) (\d\d:\d\d:\d\d\.\d+)")


# ---------------------------------------------------------------------------------------------------- reading runs
def parse_time_v(text: str) -> dict:
    out = {}
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    if m:
        out["peak_rss_mb"] = round(int(m.group(1)) / 1024, 1)
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text)
    if m:
        parts = [float(x) for x in m.group(1).split(":")]
        secs = 0.0
        for x in parts:
            secs = secs * 60 + x
        out["wall_s"] = round(secs, 1)
    m = re.search(r'Command being timed: "(.*)"', text)
    if m:
        out["command"] = m.group(1)
    m = re.search(r"Percent of CPU this job got: (\d+)%", text)
    if m:
        out["cpu_percent"] = int(m.group(1))
    user = re.search(r"User time \(seconds\): ([\d.]+)", text)
    system = re.search(r"System time \(seconds\): ([\d.]+)", text)
    if user and system:
        out["cpu_s"] = round(float(user.group(1)) + float(system.group(1)), 1)
    m = re.search(r"Exit status: (\d+)", text)
    if m:
        out["exit_status"] = int(m.group(1))
    return out


def _ts(line: str):
    m = LOG_TS.match(line)
    return datetime.strptime(m.group(2), "%H:%M:%S.%f") if m else None


def parse_log(text: str) -> dict:
    """Teacher fine-tuning and teacher-output times from the absl log of run_distillation.py."""
    out = {}
    lines = text.splitlines()
    start = end = None
    for line in lines:
        if start is None and "fine-tuning the teacher" in line:
            start = _ts(line)
        if start is not None and end is None and "runner.py" in line and "] teacher: {" in line:
            end = _ts(line)
    if start and end:
        out["teacher_finetune_and_eval_s"] = round((end - start).total_seconds() % 86400, 1)
    outs = [float(m.group(1)) for m in re.finditer(r"teacher outputs for transfer chunk \d+ \(\d+ examples\): "
                                                   r"([\d.]+) s", text)]
    if outs:
        out["teacher_outputs_s"] = round(sum(outs), 1)
    first, last = None, None
    for line in lines:
        t = _ts(line)
        if t:
            first = first or t
            last = t
    if first and last:
        out["logged_span_s"] = round((last - first).total_seconds() % 86400, 1)
    return out


def read_run(name: str, folder: Path, log: Path | None) -> dict:
    metrics_path = folder / "metrics.json"
    if not metrics_path.is_file():
        raise SystemExit(f"{name}: {metrics_path} not found (is the run finished?)")
    metrics = json.loads(metrics_path.read_text())
    cfg = json.loads((folder / "xtremedistil-config.json").read_text())
    stages = {}
    for k, v in sorted(metrics["stages"].items(), key=lambda kv: int(kv[0])):
        stages[k] = {"loss": v["loss"], "trainable": v["trainable"], "wall_s": round(v["wall_time"], 1),
                     "dev": (v.get("dev") or {}).get("accuracy"), "test": (v.get("test") or {}).get("accuracy"),
                     "train_loss_before": v.get("train_loss_before"), "train_loss_after": v.get("train_loss_after"),
                     "epochs": len(metrics.get("histories", {}).get(k, []))}
    run = {"name": name, "model_dir": str(folder), "mode": cfg["mode"],
           "compress_word_embedding": bool(cfg["compress_word_embedding"]), "seed": cfg["seed"],
           "logit_loss": cfg.get("logit_loss", "mse"), "temperature": cfg.get("temperature", 1.0),
           "teacher": {s: metrics["teacher"][s]["accuracy"] for s in ("dev", "test") if s in metrics["teacher"]},
           "selected_stage": metrics["selected_stage"],
           "final": {s: metrics["final"][s]["accuracy"] for s in ("dev", "test") if s in metrics["final"]},
           "stages": stages, "stage_wall_s_total": round(metrics["wall_time_total"], 1)}
    if log is None:
        cand = Path(str(folder).rstrip("/") + ".log")
        log = cand if cand.is_file() else None
    if log is not None and log.is_file():
        text = log.read_text(errors="replace")
        run["log"] = str(log)
        run.update(parse_log(text))
        run.update(parse_time_v(text))
    return run


def _faithful_ok(test) -> bool:
    """The faithful target: test accuracy within 0.02 of the original release's."""
    return test is not None and abs(test - ORIGINAL_RELEASE["student_test"]) <= 0.02


# Faithful runs recorded before the faithful mode shuffled every file as the original did carry
# "rows": "file order" (their transfer chunk's validation tail was the file's last 10%); they are kept apart.
FILE_ORDER = "_file_order"


def group_key(run: dict) -> str:
    key = run["mode"] + ("_compress" if run["compress_word_embedding"] else "")
    if run.get("logit_loss", "mse") == "kl":
        key += f"_kl_T{run.get('temperature', 1.0):g}"
    if run["mode"] == "faithful" and run.get("rows") == "file order":
        key += FILE_ORDER
    return key


def _label(key: str) -> str:
    base = key.removesuffix(FILE_ORDER)
    label = base.replace("_kl_T", " + KL, T=").replace("_", " + ")
    return label + (" (earlier version: file row order)" if base != key else "")


# ---------------------------------------------------------------------------------------------------- running
def run_reference(name: str, config: str, seed: int, runs_dir: Path) -> tuple[Path, Path]:
    model_dir = runs_dir / name
    log = runs_dir / f"{name}.log"
    cmd = (["/usr/bin/time", "-v", sys.executable, "run_distillation.py"] + REFERENCE_FLAGS + CONFIGS[config]
           + ["--pt_teacher_checkpoint", minilm_dir(), "--model_dir", str(model_dir), "--seed", str(seed)])
    print("running:", " ".join(cmd), flush=True)
    with open(log, "w") as f:
        proc = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise SystemExit(f"{name}: run_distillation.py failed (exit {proc.returncode}); see {log}")
    return model_dir, log


def baseline_one(seed: int, epochs: int, patience: int, out: Path, model_dir: Path, lr: float = 0.0) -> int:
    """One labels-only run (called in a subprocess, so its peak RSS is its own)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from absl import logging
    logging.set_verbosity(logging.WARNING)
    import numpy as np

    from xtremedistil_tf.convert.hf import load_hf_encoder
    from xtremedistil_tf.distill.config import DistilConfig
    from xtremedistil_tf.distill.plan import Stage
    from xtremedistil_tf.train.losses import LabelLoss
    from xtremedistil_tf.distill.runner import Distillation
    from xtremedistil_tf.distill.student import build_student

    t0 = time.time()
    task = str(data_dir() / "tasks" / "sst2-small")
    shutil.rmtree(model_dir, ignore_errors=True)
    cfg = DistilConfig(task=task, model_dir=str(model_dir), transfer_file=os.path.join(task, "transfer.tsv"),
                       pt_teacher_checkpoint=minilm_dir(), hidden_size=128, num_hidden_layers=2,
                       num_attention_heads=2, seq_len=64, teacher_batch_size=32, student_distil_batch_size=64,
                       student_ft_batch_size=32, ft_epochs=epochs, distil_epochs=1, patience=patience,
                       distil_chunk_size=8000, mode="default", seed=seed, compress_word_embedding=True,
                       export_hf=False, export_saved_model=False, log_every=0, student_learning_rate=lr)
    d = Distillation(cfg)
    d.setup()
    d.load_data()  # tokenizes the task (and caches the transfer file, unused here)
    d.teacher = None  # no teacher: the labels stage never reads it
    teacher_embeddings = load_hf_encoder(minilm_dir(), name="teacher").encoder \
        .embeddings.word_embeddings.embeddings.numpy()
    with d.strategy.scope():
        d.student = build_student(cfg, vocab_size=len(d.tokenizer), num_labels=len(d.label_names),
                                  teacher_hidden_size=384, teacher_word_embeddings=teacher_embeddings,
                                  pad_token_id=d.tokenizer.pad_token_id or 0)
    groups = ("head",) + tuple(f"transformer_layer_{i}" for i in reversed(range(2))) + ("embeddings",)
    stage = Stage(1, "labels", groups, (LabelLoss("classification"),))
    t_train = time.time()
    result, _, _ = d.run_stage(stage, None)
    train_s = time.time() - t_train
    record = {"seed": seed, "epochs_max": epochs, "patience": patience, "learning_rate": cfg.student_lr,
              "trainable": list(groups), "dev": d.evaluate(d.student, "dev")["accuracy"],
              "test": d.evaluate(d.student, "test")["accuracy"], "epochs_run": len(result.history),
              "best_dev_epoch": 1 + max(range(len(result.history)), key=lambda i: result.history[i]["score"]),
              "history": result.history, "train_s": round(train_s, 1), "wall_s": round(time.time() - t0, 1),
              "params": int(sum(np.prod(v.shape) for v in d.student.weights))}
    out.write_text(json.dumps(record, indent=2))
    return 0


def baseline_name(lr: float, seed: int) -> str:
    return f"baseline_lr{lr:g}_s{seed}"


def run_baseline(seeds: list[int], epochs: int, patience: int, runs_dir: Path, lr: float) -> list[dict]:
    out = []
    for seed in seeds:
        res = runs_dir / f"{baseline_name(lr, seed)}.json"
        cmd = [sys.executable, os.path.abspath(__file__), "--_baseline_one", str(seed), "--baseline_epochs",
               str(epochs), "--baseline_patience", str(patience), "--baseline_lr", str(lr), "--runs_dir",
               str(runs_dir)]
        t = time.time()
        proc = subprocess.Popen(cmd, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            raise SystemExit(f"baseline seed {seed} failed (exit {proc.returncode})")
        rec = json.loads(res.read_text())
        rec["process_wall_s"] = round(time.time() - t, 1)
        rec["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)
        print(f"baseline lr {lr:g} seed {seed}: dev {rec['dev']:.4f} test {rec['test']:.4f}, {rec['epochs_run']} epochs, "
              f"{rec['process_wall_s']} s, peak RSS {rec['peak_rss_mb']} MB", flush=True)
        out.append(rec)
    return out


# ---------------------------------------------------------------------------------------------------- reporting
def _mean_sd(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None, None
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else None)


def _fmt(x, sd=None, digits=3):
    if x is None:
        return "-"
    s = f"{x:.{digits}f}"
    return s + (f" ± {sd:.{digits}f}" if sd is not None else "")


def summarize(runs: list[dict], baseline: list[dict]) -> dict:
    groups = {}
    for r in runs:
        groups.setdefault(group_key(r), []).append(r)
    summary = {}
    for key, rs in groups.items():
        test = _mean_sd([r["final"].get("test") for r in rs])
        dev = _mean_sd([r["final"].get("dev") for r in rs])
        walls = [r.get("wall_s") for r in rs if r.get("wall_s")]
        entry = {"runs": [r["name"] for r in rs], "seeds": [r["seed"] for r in rs],
                 "teacher_test_mean": _mean_sd([r["teacher"].get("test") for r in rs])[0],
                 "test_mean": test[0], "test_sd": test[1], "dev_mean": dev[0], "dev_sd": dev[1],
                 "wall_s": walls, "peak_rss_mb": [r.get("peak_rss_mb") for r in rs if r.get("peak_rss_mb")],
                 "cpu_s": [r.get("cpu_s") for r in rs if r.get("cpu_s")],
                 "cpu_percent": [r.get("cpu_percent") for r in rs if r.get("cpu_percent")]}
        if key in ("faithful", "faithful" + FILE_ORDER):
            # The original was run with seed 42 (PYTHONHASHSEED); other seeds show how much the seed decides.
            per_seed = {r["seed"]: r["final"].get("test") for r in rs}
            entry["test_per_seed"] = per_seed
            entry["target"] = TARGETS["faithful"]
            entry["target_met"] = {"mean": _faithful_ok(test[0]),
                                   **({"seed_42": _faithful_ok(per_seed[42])} if 42 in per_seed else {})}
            entry["seeds_within_target"] = [k for k, v in per_seed.items() if _faithful_ok(v)]
        elif key == "default_compress":
            acc_ok = test[0] >= 0.78 and len(rs) >= 3
            time_ok = bool(walls) and max(walls) <= 360
            entry["target"] = TARGETS["default_compress"]
            entry["target_met"] = {"accuracy": test[0] >= 0.78, "three_seeds": len(rs) >= 3, "time": time_ok,
                                   "all": acc_ok and time_ok}
        summary[key] = entry
    by_lr = {}
    for b in baseline:
        by_lr.setdefault(b["learning_rate"], []).append(b)
    for lr, bs in by_lr.items():
        test = _mean_sd([b["test"] for b in bs])
        dev = _mean_sd([b["dev"] for b in bs])
        summary[f"labels_only_lr{lr:g}"] = {"learning_rate": lr, "seeds": [b["seed"] for b in bs],
                                            "test_mean": test[0], "test_sd": test[1], "dev_mean": dev[0],
                                            "dev_sd": dev[1], "wall_s": [b["process_wall_s"] for b in bs],
                                            "peak_rss_mb": [b["peak_rss_mb"] for b in bs]}
    return summary


def markdown(record: dict) -> str:
    runs, summary, baseline = record["runs"], record["summary"], record["baseline"]
    lines = ["### Summary (final model; accuracy on sst2-small dev 436 / test 436)", "",
             "| configuration | seeds | teacher test | student dev | student test | wall time (whole command) "
             "| CPU time (avg CPU % of one core) | peak RSS | target (issue 4) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    order = ["faithful", "faithful_compress", "faithful" + FILE_ORDER, "faithful_compress" + FILE_ORDER,
             "default", "default_compress"] + sorted(
        k for k in summary if "_kl_" in k) + sorted(k for k in summary if k.startswith("labels_only"))
    for key in order:
        if key not in summary:
            continue
        s = summary[key]
        walls = ", ".join(f"{w / 60:.1f}" for w in s.get("wall_s", [])) or "-"
        rss = ", ".join(f"{m / 1024:.2f}" for m in s.get("peak_rss_mb", [])) or "-"
        cpu = ", ".join(f"{c / 60:.1f} ({p}%)" for c, p in zip(s.get("cpu_s", []), s.get("cpu_percent", [])))
        cpu = cpu + " min" if cpu else "-"
        target = "-"
        if "target_met" in s:
            met = s["target_met"]
            if key.startswith("faithful"):
                per = s.get("test_per_seed", {})
                parts = [(f"seed 42 ({_fmt(per.get(42))})", met["seed_42"])] if "seed_42" in met else []
                parts += [("mean", met["mean"])] if len(per) > 1 or not parts else []
                target = "within 0.02 of 0.672: " + "; ".join(f"{n}: {'met' if ok else '**missed**'}"
                                                               for n, ok in parts)
                if len(per) > 1:
                    within = s.get("seeds_within_target", [])
                    target += (f"; {len(within)} of {len(per)} seeds within"
                               + (f" (seed{'s' if len(within) > 1 else ''} {', '.join(map(str, within))})" if within else ""))
            else:
                parts = [("test >= 0.78", met["accuracy"]), ("3 seeds", met["three_seeds"]), ("<= 6 min", met["time"])]
                target = "; ".join(f"{n}: {'met' if ok else '**missed**'}" for n, ok in parts)
        label = (f"labels only (no teacher), lr {s['learning_rate']:g}" if key.startswith("labels_only")
                 else _label(key))
        lines.append(f"| {label} | {','.join(map(str, s['seeds']))} | {_fmt(s.get('teacher_test_mean'))} | "
                     f"{_fmt(s['dev_mean'], s['dev_sd'])} | {_fmt(s['test_mean'], s['test_sd'])} | {walls} min | "
                     f"{cpu} | {rss} GB | {target} |")
    o = ORIGINAL_RELEASE
    lines.append(f"| original release (TF 2.3.1), faithful flags | 42 | {o['teacher_test']} | {o['student_dev']} | "
                 f"{o['student_test']} | {o['wall_min'][0]}-{o['wall_min'][1]} min | - | "
                 f"{o['peak_rss_gb'][0]}-{o['peak_rss_gb'][1]} GB | (the target) |")
    missing = [k for k in CONFIGS if k not in summary]
    if missing:
        lines += ["", "Not run for this table: " + ", ".join(f"`{k}` ({' '.join(CONFIGS[k])})" for k in missing)
                  + f"; run them with `python benchmarks/bench_distillation.py --run {','.join(missing)}`."]
    lines += ["", "### Per run and stage (wall seconds; dev / test accuracy after the stage)", ""]
    for r in runs:
        sel = r["selected_stage"]
        lines.append(f"**{r['name']}** ({r['mode']}, compress={r['compress_word_embedding']}, seed {r['seed']}; "
                     f"`{r['model_dir']}`): teacher dev {_fmt(r['teacher'].get('dev'))} / test "
                     f"{_fmt(r['teacher'].get('test'))}; teacher fine-tuning + eval "
                     f"{r.get('teacher_finetune_and_eval_s', '-')} s, teacher outputs "
                     f"{r.get('teacher_outputs_s', '-')} s; stages {r['stage_wall_s_total']} s; whole command "
                     f"{r.get('wall_s', '-')} s, peak RSS {r.get('peak_rss_mb', '-')} MB; selected stage "
                     f"{sel['stage']} (by {sel['split']}) -> dev {_fmt(r['final'].get('dev'))} / test "
                     f"{_fmt(r['final'].get('test'))}")
        lines += ["", "| stage | loss | trainable | epochs | wall s | dev | test |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for k, s in r["stages"].items():
            mark = " (selected)" if int(k) == sel["stage"] else ""
            lines.append(f"| {k}{mark} | {s['loss']} | {'+'.join(s['trainable'])} | {s['epochs']} | {s['wall_s']} | "
                         f"{_fmt(s['dev'])} | {_fmt(s['test'])} |")
        lines.append("")
    if baseline:
        lines += ["### Labels-only baseline, per seed", "",
                  "| lr | seed | epochs run (max) | best dev epoch | dev | test | wall s (process) | peak RSS MB |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for b in baseline:
            lines.append(f"| {b['learning_rate']:g} | {b['seed']} | {b['epochs_run']} ({b['epochs_max']}) | {b['best_dev_epoch']} | "
                         f"{_fmt(b['dev'])} | {_fmt(b['test'])} | {b['process_wall_s']} | {b['peak_rss_mb']} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def copy_plots(run: dict) -> list[str]:
    out = []
    for png in ("stage_losses.png", "stage_scores.png"):
        src = Path(run["model_dir"]) / "plots" / png
        if src.is_file():
            dst = RESULTS / f"distillation_{run['name']}_{png}"
            shutil.copyfile(src, dst)
            out.append(dst.name)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from_dirs", nargs="*", default=[], metavar="NAME=DIR",
                   help="finished model_dirs to ingest (their log: DIR.log, or --logs)")
    p.add_argument("--logs", nargs="*", default=[], metavar="NAME=FILE")
    p.add_argument("--run", default="", help=f"configurations to run here: comma-separated of {sorted(CONFIGS)}")
    p.add_argument("--seeds", default="1", help="seeds for --run")
    p.add_argument("--runs_dir", default=str(REPO / "runs" / "bench_distillation"))
    p.add_argument("--baseline_seeds", default="1,2,3", help="labels-only baseline seeds ('' to skip)")
    p.add_argument("--baseline_epochs", type=int, default=10)
    p.add_argument("--baseline_patience", type=int, default=2)
    p.add_argument("--baseline_lrs", default="1e-3,1e-4",
                   help="learning rates of the baseline (1e-3: the default mode's from-scratch rate)")
    p.add_argument("--baseline_lr", type=float, default=1e-3, help=argparse.SUPPRESS)
    p.add_argument("--reuse_baseline", action="store_true",
                   help="read baseline_lr<lr>_s<seed>.json already in --runs_dir instead of training again")
    p.add_argument("--plots_from", default="", help="run whose stage plots go to results/ (default: the first)")
    p.add_argument("--merge", action="store_true",
                   help="keep the runs (and, with --baseline_seeds '', the baseline) already recorded in "
                        "results/distillation.json; a run given again by name replaces its record")
    p.add_argument("--_baseline_one", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    runs_dir = Path(args.runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    if args._baseline_one is not None:
        name = baseline_name(args.baseline_lr, args._baseline_one)
        return baseline_one(args._baseline_one, args.baseline_epochs, args.baseline_patience,
                            runs_dir / f"{name}.json", runs_dir / name, args.baseline_lr)

    logs = dict(x.split("=", 1) for x in args.logs)
    runs = []
    for item in args.from_dirs:
        name, folder = item.split("=", 1)
        runs.append(read_run(name, Path(folder), Path(logs[name]) if name in logs else None))
    for config in filter(None, args.run.split(",")):
        for seed in map(int, args.seeds.split(",")):
            name = f"{config}_s{seed}"
            model_dir, log = run_reference(name, config, seed, runs_dir)
            runs.append(read_run(name, model_dir, log))
    host = machine()["cpu"]
    for r in runs:
        r["host_cpu"] = host  # ingested (or run) where it ran
    seeds = [int(s) for s in args.baseline_seeds.split(",") if s.strip()]
    lrs = [float(x) for x in args.baseline_lrs.split(",") if x.strip()]
    baseline = []
    previous = json.loads((RESULTS / "distillation.json").read_text()) if args.merge else {}
    if previous:
        runs = merge_by_name(previous["runs"], runs)
        if not seeds:
            baseline = previous["baseline"]
    for lr in lrs if seeds else []:
        if args.reuse_baseline:
            baseline += [json.loads((runs_dir / f"{baseline_name(lr, s)}.json").read_text()) for s in seeds]
            continue
        for b in run_baseline(seeds, args.baseline_epochs, args.baseline_patience, runs_dir, lr):
            (runs_dir / f"{baseline_name(lr, b['seed'])}.json").write_text(json.dumps(b, indent=2))
            baseline.append(b)
    import tensorflow  # noqa: F401 - for the version record
    record = {"benchmark": "distillation", "date": now(), "command": command(), "machine": machine(),
              "versions": versions(), "reference_flags": " ".join(REFERENCE_FLAGS), "configs": CONFIGS,
              "targets": TARGETS, "original_release": ORIGINAL_RELEASE, "runs": runs, "baseline": baseline,
              "baseline_setup": {"epochs_max": args.baseline_epochs, "patience": args.baseline_patience,
                                 "learning_rates": lrs,
                                 "student": "2x128, 2 heads, FFN 512, BERT head, PCA-compressed MiniLM word "
                                            "embeddings, batch 32, every layer trainable, best dev epoch kept"}}
    if previous:
        # Each ingest's command, oldest first: the merged runs came from the earlier ones.
        record["commands"] = previous.get("commands", [previous["command"]]) + [record["command"]]
        if previous.get("notes"):
            record["notes"] = previous["notes"]
        if not seeds:
            record["baseline_setup"] = previous["baseline_setup"]
    record["summary"] = summarize(runs, baseline)
    plot_run = next((r for r in runs if r["name"] == args.plots_from), runs[0] if runs else None)
    record["plots"] = copy_plots(plot_run) if plot_run else []
    if previous and not record["plots"]:
        record["plots"] = previous.get("plots", [])  # the plotted run's folder is gone; its copies stay
    write_json("distillation.json", record)
    (RESULTS / "distillation.md").write_text(markdown(record))
    print(markdown(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
