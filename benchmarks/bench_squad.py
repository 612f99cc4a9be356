"""Benchmark: SQuAD on this machine's data — the MiniLM teacher fine-tuned by run_squad.py, a student distilled from
it by run_distillation.py --do_QA, both scored on the same held-out SQuAD articles, with wall times.

Data (../shared/data/squad, see its README; never copied into the repository): no full training file can be had
here, so the split is by article: train = train-v2.0-first10.json (4,719 questions, 348 unanswerable) plus the
first --train_dev_articles articles of dev-v1.1.json; dev = the next --eval_articles articles of dev-v1.1.json
(all answerable, so the v2.0 figures' NoAns part is empty). The task is squad_v2 because the training part has
unanswerable questions. --max_train_questions samples the training questions once (seed 0) when time requires.

  python benchmarks/bench_squad.py --work_dir /tmp/bench_squad
  python benchmarks/bench_squad.py --work_dir /tmp/bench_squad --report_only   # the table again

Each step is a subprocess (the apps as users run them) under /usr/bin/time -v when available; rerunning resumes
(the apps skip finished work). Results: benchmarks/results/squad.json.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import REPO, data_dir, machine, minilm_dir, write_json

from xtremedistil_tf import io

DATA = data_dir() / "squad"


def build_split(work: Path, train_dev_articles: int, eval_articles: int, max_train_questions: int) -> dict:
    """Writes work/task/{train,dev}.json; returns the counts."""
    first10 = json.loads((DATA / "train-v2.0-first10.json").read_text(encoding="utf-8"))
    dev = json.loads((DATA / "dev-v1.1.json").read_text(encoding="utf-8"))
    train_articles = first10["data"] + dev["data"][:train_dev_articles]
    eval_part = dev["data"][train_dev_articles:train_dev_articles + eval_articles]
    if max_train_questions:
        ids = [q["id"] for a in train_articles for p in a["paragraphs"] for q in p["qas"]]
        keep = set(random.Random(0).sample(ids, min(max_train_questions, len(ids))))
        train_articles = [{**a, "paragraphs": [{**p, "qas": [q for q in p["qas"] if q["id"] in keep]}
                                               for p in a["paragraphs"]]} for a in train_articles]
    task = work / "task"
    task.mkdir(parents=True, exist_ok=True)
    for name, articles in (("train", train_articles), ("dev", eval_part)):
        (task / f"{name}.json").write_text(json.dumps({"version": "v2.0", "data": articles}), encoding="utf-8")

    def count(articles):
        qs = [q for a in articles for p in a["paragraphs"] for q in p["qas"]]
        return {"articles": len(articles), "questions": len(qs), "unanswerable": sum(q.get("is_impossible", False)
                                                                                    for q in qs)}
    return {"train": count(train_articles), "dev": count(eval_part),
            "train_sources": f"train-v2.0-first10.json + dev-v1.1.json articles 0-{train_dev_articles - 1}",
            "dev_source": f"dev-v1.1.json articles {train_dev_articles}-{train_dev_articles + eval_articles - 1} "
                          f"({', '.join(a['title'] for a in eval_part[:3])}, ...)"}


def run(cmd: list[str], log: Path) -> float:
    """Runs `cmd` appending to `log` (under /usr/bin/time -v when present); returns the wall seconds."""
    if shutil.which("/usr/bin/time"):
        cmd = ["/usr/bin/time", "-v"] + cmd
    t0 = time.time()
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=True, cwd=REPO)
    return round(time.time() - t0, 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work_dir", default="/tmp/bench_squad")
    ap.add_argument("--train_dev_articles", type=int, default=24)
    ap.add_argument("--eval_articles", type=int, default=8)
    ap.add_argument("--max_train_questions", type=int, default=3000)
    ap.add_argument("--seq_len", type=int, default=256)
    ap.add_argument("--doc_stride", type=int, default=64)
    ap.add_argument("--opt_policy", default="auto")
    ap.add_argument("--teacher_epochs", type=int, default=2)
    ap.add_argument("--student", default="3x384", help="LAYERSxHIDDEN of the student (heads: hidden / 32)")
    ap.add_argument("--student_init_from_teacher_layers", default="1,3,5")
    ap.add_argument("--report_only", action="store_true")
    args = ap.parse_args()
    work = Path(args.work_dir)
    state_path = work / "state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    py = sys.executable
    common = ["--seq_len", str(args.seq_len), "--doc_stride", str(args.doc_stride), "--opt_policy", args.opt_policy]
    if not args.report_only:
        work.mkdir(parents=True, exist_ok=True)
        state["data"] = build_split(work, args.train_dev_articles, args.eval_articles, args.max_train_questions)
        state["machine"] = machine()
        task = work / "task"
        if "teacher" not in state:
            secs = run([py, "run_squad.py", "--task", "squad_v2", "--model", minilm_dir(), "--train_file",
                        str(task / "train.json"), "--dev_file", str(task / "dev.json"), "--output_dir",
                        str(work / "teacher"), "--epochs", str(args.teacher_epochs), "--batch_size", "32",
                        "--learning_rate", "1e-4", "--export_saved_model=false", *common], work / "teacher.log")
            m = json.loads((work / "teacher" / "metrics.json").read_text())
            state["teacher"] = {"dev": m["final"]["dev"], "wall_seconds": secs, "windows": m.get("windows")}
            io.write_json(str(state_path), state)
        if "student" not in state:
            layers, hidden = (int(x) for x in args.student.split("x"))
            cmd = [py, "run_distillation.py", "--do_QA", "--task", str(task), "--model_dir", str(work / "student"),
                   "--pt_teacher_checkpoint", str(work / "teacher" / "hf"), "--teacher_is_finetuned",
                   "--hidden_size", str(hidden), "--num_hidden_layers", str(layers),
                   "--num_attention_heads", str(hidden // 32), "--teacher_batch_size", "64",
                   "--student_distil_batch_size", "32", "--student_ft_batch_size", "32", "--ft_epochs", "1",
                   "--distil_epochs", "1", "--patience", "1", "--logit_loss", "kl", "--temperature", "2",
                   "--export_saved_model=false", *common]
            if args.student_init_from_teacher_layers:
                cmd += ["--student_init_from_teacher_layers", args.student_init_from_teacher_layers,
                        "--intermediate_size", "1536"]
            secs = run(cmd, work / "student.log")
            m = json.loads((work / "student" / "metrics.json").read_text())
            state["student"] = {"dev": m["final"]["dev"], "wall_seconds": secs, "selected": m["selected_stage"],
                                "teacher_in_run": m["teacher"].get("dev"), "args": cmd[2:]}
            io.write_json(str(state_path), state)
        write_json("squad.json", state)
    print(report(state))


def report(state: dict) -> str:
    rows = ["| model | dev EM | dev F1 | best F1 (threshold) | wall time |", "| --- | --- | --- | --- | --- |"]
    for name in ("teacher", "student"):
        if name in state:
            d = state[name]["dev"]
            best = f"{d['best_f1']:.1f} ({d['best_f1_thresh']:.2f})"
            rows.append(f"| {name} | {d['exact']:.1f} | {d['f1']:.1f} | {best} | {state[name]['wall_seconds']:.0f} s |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
