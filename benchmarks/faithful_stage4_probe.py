"""Probe of the faithful mode's plateau: continue its stage 4 (logit MSE, everything trainable) past early stopping.

The faithful reference run (the original's flags, lr 3e-5, patience 1) leaves the from-scratch student predicting
one class through stages 1-3: its logits equal the mean of the teacher's. Whether stage 4 leaves that plateau
depends on how many epochs it gets, and patience 1 ends it as soon as one epoch's validation loss rises by noise.
This script restores the stage-3 weights of a finished faithful run and trains stage 4 for a fixed number of epochs
(the same loss, data, batches, fresh Adam, learning rate) without early stopping, logging validation loss and
dev/test accuracy per epoch.

    # a faithful reference run that keeps every stage's checkpoint:
    python run_distillation.py <README main-job flags> --mode faithful --keep_checkpoints --model_dir runs/fa42
    python benchmarks/faithful_stage4_probe.py --model_dir runs/fa42 --epochs 6

Writes benchmarks/results/faithful_stage4_probe.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _common import command, machine, now, quiet_tf, versions, write_json


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model_dir", required=True, help="a finished --mode faithful run")
    p.add_argument("--stage_checkpoint", default="",
                   help="the stage-3 checkpoint folder (default: <model_dir>/checkpoints/stage-3, kept by "
                        "--keep_checkpoints)")
    p.add_argument("--epochs", type=int, default=6)
    args = p.parse_args()
    quiet_tf()
    from xtremedistil_tf.distill.config import DistilConfig
    from xtremedistil_tf.distill.data import split_tail
    from xtremedistil_tf.distill.runner import Distillation
    from xtremedistil_tf.train import loop
    from xtremedistil_tf.train.checkpoint import PhaseCheckpoint
    from xtremedistil_tf.train.seeding import reseed_dropout, unit_seed

    src = Path(args.model_dir)
    ckpt = Path(args.stage_checkpoint or src / "checkpoints" / "stage-3")
    if not (ckpt / "state.json").is_file():
        raise SystemExit(f"{ckpt}: no stage-3 checkpoint (rerun the faithful run with --keep_checkpoints)")
    saved = json.loads((src / "xtremedistil-config.json").read_text())
    fields = {f.name for f in dataclasses.fields(DistilConfig)}
    work = Path(tempfile.mkdtemp(prefix="faithful-probe-"))
    for name in ("teacher", "teacher_outputs", "transfer_cache"):
        shutil.copytree(src / name, work / name)
    cfg = DistilConfig(**{k: v for k, v in saved.items() if k in fields})
    if cfg.mode != "faithful":
        raise SystemExit(f"{src} is a --mode {cfg.mode} run; this probe is for the faithful mode")
    cfg.model_dir, cfg.teacher_model_dir = str(work), ""
    d = Distillation(cfg)
    d.setup()
    d.load_data()
    d.prepare_teacher()
    d.prepare_student()
    PhaseCheckpoint(str(ckpt), d.student, None).restore()
    start = {s: d.evaluate(d.student, s)["accuracy"] for s in ("dev", "test")}
    print(f"stage-3 weights: dev {start['dev']:.3f} test {start['test']:.3f}", flush=True)
    stage = d.plan[3]  # stage 4: logits, every group trainable (the original's plan with a projection)
    if stage.loss != "logits":
        raise SystemExit(f"stage 4 of this plan is not a logit stage: {stage.describe()}")
    variables = d.stage_variables(stage)
    with d.strategy.scope():
        optimizer = loop.make_optimizer(cfg.student_lr, epsilon=1e-8)
        loop.build_optimizer(optimizer, variables, d.strategy)
    batching = d.batching(cfg.student_distil_batch_size)
    distiller = d.distiller(stage)
    distiller.configure(optimizer=optimizer, variables=variables, global_batch_size=batching.global_batch_size,
                        jit_compile=cfg.jit_compile)
    step = loop.Step(d.strategy, distiller)
    data = d.teacher_outputs(0)
    train, val = split_tail(data, d.policy.validation_cut(len(data["input_ids"])))
    mean_val = float(((val["t_logits"] - train["t_logits"].mean(0)) ** 2).mean())
    epochs = []
    for epoch in range(args.epochs):
        t0 = time.time()
        seed = unit_seed(cfg.seed, stage.index, 0, epoch)
        reseed_dropout(d.student, seed)
        train_loss = loop.run_epoch(step, loop.distribute(d.strategy, batching.dataset(train, seed)),
                                    description=f"probe stage 4 chunk 0 epoch {epoch + 1}", log_every=cfg.log_every)
        row = {"epoch": epoch + 1, "train_loss": round(train_loss, 5),
               "val_loss": round(d.eval_loss(distiller, val), 5),
               **{s: round(d.evaluate(d.student, s)["accuracy"], 4) for s in ("dev", "test")},
               "seconds": round(time.time() - t0, 1)}
        epochs.append(row)
        print(json.dumps(row), flush=True)
    shutil.rmtree(work, ignore_errors=True)
    write_json("faithful_stage4_probe.json", {
        "benchmark": "faithful_stage4_probe", "date": now(), "command": command(), "machine": machine(),
        "versions": versions(), "model_dir": str(src), "seed": cfg.seed, "learning_rate": cfg.student_lr,
        "stage3": start, "val_loss_of_the_mean_predictor": round(mean_val, 5), "epochs": epochs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
