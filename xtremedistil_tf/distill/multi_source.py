"""Task transfer from several source tasks at once (--source_tasks): one student encoder, a head per source.

Each source is a `Distillation` of its own in model_dir/sources/<name> (its task, fine-tuned teacher, head and
teacher-output cache, all resumable); --task is the first source and owns the run's state, stage checkpoints and
outputs. The sources share the stage plan: every stage trains each source's losses on that source's batches,
interleaved in one epoch (`loop.interleaved_order`, `loop.InterleavedSteps`, one optimizer), and stops and
selects on the sources' mean. Validation losses are each source's held-out tail of its first chunk, so chunks
compare; the augmentation corpus goes with --task's teacher. The output is the shared encoder (model_dir/encoder),
the general checkpoint; each source's task student is written in its folder.
"""
from __future__ import annotations

import dataclasses

import keras
import numpy as np
from absl import logging

from xtremedistil_tf import fs
from xtremedistil_tf.distill.config import DistilConfig
from xtremedistil_tf.distill import outputs
from xtremedistil_tf.distill.runner import Distillation
from xtremedistil_tf.errors import ConfigError
from xtremedistil_tf.metrics import main_metric

SOURCE_MEAN = "source_mean"


def source_configs(config: DistilConfig) -> list[DistilConfig]:
    """The config of each --source_tasks source: --task's flags with the source's task, its training texts as its
    transfer set, its own folder and teacher, and no deployment outputs."""
    out = []
    for source in config.sources:
        out.append(dataclasses.replace(
            config, task=source.task, do_pairwise=source.do_pairwise, do_NER=source.do_NER,
            glue_task=source.glue_task, transfer_file="", augmentation_file="", source_tasks="",
            model_dir=fs.join(config.model_dir, "sources", source.name), teacher_model_dir="", export_encoder=False,
            export_int8=False, cost_report=False))
    return out


class SourceStudents(keras.Model):
    """The sources' students (one shared encoder, a head each) as one model, so one checkpoint holds them all."""

    def __init__(self, students: list, **kwargs):
        super().__init__(**kwargs)
        self.students = list(students)


class MultiSourceDistillation(Distillation):
    """A run of run_distillation.py with --source_tasks: --task (this run) and the extra sources (`extras`)."""

    def __init__(self, config: DistilConfig):
        super().__init__(config)
        self.extras: list[Distillation] = []  # made by setup, once the flags are validated

    @property
    def runs(self) -> list[Distillation]:
        """Every source's run, --task's first (the stages train them together: `Distillation.run_stage`)."""
        return [self] + self.extras

    # ------------------------------------------------------------------------------------------------ set-up
    def setup(self, runtime=None):
        super().setup(runtime)
        self.extras = [Distillation(c) for c in source_configs(self.config)]
        for run in self.extras:
            run.setup((self.strategy, self.chief, self.trim))

    def load_data(self):
        super().load_data()
        for run in self.extras:
            run.load_data()
        logging.info("source tasks: %s", ", ".join(f"{self.source_name(r)} ({r.kind}, "
                                                  f"{len(r.arrays['train']['input_ids'])} training examples)"
                                                  for r in self.runs))

    def prepare_teacher(self):
        """Each source's teacher (fine-tuned, saved and scored in its own folder); the run's teacher scores are
        the sources' together."""
        for run in self.extras:
            run.prepare_teacher()
            run.folder.save_config(run.config, teacher_hidden_size=run.teacher.encoder.hidden_size,
                                   label_list=list(run.label_names or []))
        super().prepare_teacher()  # scores every source's teacher (see `scores`)

    def prepare_student(self, encoder=None):
        """This run's student, then a student per extra source around the same encoder; their plans must match."""
        super().prepare_student()
        for run in self.extras:
            run.prepare_student(encoder=self.student.encoder)
            shape = [(s.loss, s.trainable) for s in run.plan]
            if shape != [(s.loss, s.trainable) for s in self.plan]:
                raise ConfigError(f"--source_tasks: the stage plan of {run.config.task} differs from --task's")
        self.students = SourceStudents([r.student for r in self.runs], name="source_students")

    @property
    def checkpointed(self):
        """Every source's student (shared encoder, heads), checkpointed together."""
        return self.students

    # ------------------------------------------------------------------------------------------------ scores
    def _together(self, per_source: dict[str, dict], metric_of: dict[str, str] | None = None
                  ) -> dict[str, dict[str, float]]:
        """Per-source {split: metrics} as one {split: {"<source>/<metric>": value}}, with the mean of the sources'
        `metric_of` metrics (default: their main metrics), `source_mean`, where every source has the split."""
        metric_of = metric_of or {self.source_name(r): main_metric(r.kind, r.task.glue_task) for r in self.runs}
        out = {}
        for split in ("dev", "test"):
            flat = {f"{name}/{k}": v for name, scores in per_source.items() for k, v in scores.get(split, {}).items()}
            mains = [scores[split][metric_of[name]] for name, scores in per_source.items() if split in scores]
            if len(mains) == len(self.runs):
                flat = {SOURCE_MEAN: float(np.mean(mains)), **flat}
            if flat:
                out[split] = flat
        return out

    def scores(self, model) -> dict[str, dict[str, float]]:
        """The sources' students' (or, for this run's teacher, teachers') scores together; an extra source's teacher
        was scored when it was prepared."""
        if model is self.teacher:
            per_source = {self.source_name(r): r.state.get("teacher") or Distillation.scores(r, r.teacher)
                          for r in self.runs}
        else:
            per_source = {self.source_name(r): Distillation.scores(r, r.student) for r in self.runs}
        return self._together(per_source)

    def selection_metric(self) -> str:
        return SOURCE_MEAN

    def _stage_dev_score(self):
        """The mean of the sources' stopping metrics on dev (`source_mean`), and every source's dev metrics."""
        dev = self._together({self.source_name(r): {"dev": r.evaluate(r.student, "dev")} for r in self.runs},
                             {self.source_name(r): r.stopping_metric() for r in self.runs})["dev"]
        return dev[SOURCE_MEAN], dev

    # ------------------------------------------------------------------------------------------------ outputs
    def finish(self) -> dict:
        """The selected weights, scored per source; the shared encoder and each extra source's task student
        written (--task's where the single-task run writes it)."""
        metrics = super().finish()
        if self.config.export_int8 or self.config.cost_report:
            logging.info("no int8 exports or cost report of a multi-source run: its product is the encoder; "
                         "run_glue.py --export_int8 deploys it once fine-tuned")
        if self.chief:
            for run in self.extras:
                prefix = self.source_name(run) + "/"
                final = {split: {k[len(prefix):]: v for k, v in m.items() if k.startswith(prefix)}
                         for split, m in metrics["final"].items()}
                final = {split: m for split, m in final.items() if m}
                outputs.write_outputs(run.folder, run.student, {"teacher": run.state.get("teacher"), "final": final},
                                      label_names=run.label_names, kind=run.kind, tokenizer=run.tokenizer,
                                      export_hf=run.config.export_hf, export_saved_model=False)
        return metrics

    def run(self) -> dict:
        try:
            return super().run()
        finally:
            for run in self.extras:
                run.recorder.close()
