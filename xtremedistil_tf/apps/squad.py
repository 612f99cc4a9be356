"""run_squad.py: fine-tune any encoder for extractive question answering (SQuAD v1.1 / v2.0) and score it with
the official SQuAD evaluation.

The run is run_glue.py's (`GlueRun`: the same flags for the model, the trainer, checkpoints, resume, exports and
metrics.json) with question-answering data: SQuAD JSON files or TFDS `squad/v1.1` / `squad/v2.0`, windows of
`--seq_len` tokens over the context (`data.qa`), a span head, answers found by n-best search over the windows,
and the official exact match / F1 (v2.0: also HasAns / NoAns and the best null threshold) as the dev score.

Outputs in `output_dir`, besides run_glue.py's: `predictions.json` (question id -> answer, the official
evaluation's input) and for v2.0 `null_odds.json` (question id -> null score minus best span score).
"""
from __future__ import annotations

import dataclasses

import numpy as np
from absl import logging

from xtremedistil_tf import fs, io
from xtremedistil_tf.apps.glue import GlueConfig, GlueRun
from xtremedistil_tf.config import option
from xtremedistil_tf.data import registry
from xtremedistil_tf.errors import ConfigError

QA_TASKS = tuple(t.name for t in registry.TASKS.values() if t.kind == "qa")


@dataclasses.dataclass
class SquadConfig(GlueConfig):
    """run_squad.py's flags: run_glue.py's, with question-answering data and windows."""

    task: str = option("squad", f"one of {', '.join(QA_TASKS)} (squad_v2: questions may have no answer)")
    train_file: str = option("", "SQuAD JSON training file(s), comma-separated; empty: TFDS squad/v1.1 or squad/v2.0")
    dev_file: str = option("", "SQuAD JSON dev file(s), comma-separated; empty: TFDS validation split")
    seq_len: int = option(384, "window length in tokens (question + context + 3 special tokens)")
    doc_stride: int = option(128, "tokens shared by consecutive windows of a long context (transformers' stride)")
    max_query_length: int = option(64, "questions are cut to this many tokens")
    n_best_size: int = option(20, "best start and end positions paired per window when searching for the answer")
    max_answer_length: int = option(30, "longest answer in tokens")
    null_score_diff_threshold: float = option(0.0, "squad_v2: predict no answer when the null score minus the best "
                                                   "span score exceeds this (metrics.json also gives the best "
                                                   "threshold on dev)")
    learning_rate: float = option(5e-5, "peak Adam learning rate")
    epochs: int = option(2, "maximum training epochs (0: evaluate the model as it is)")
    patience: int = option(1, "stop after this many epochs without a better dev F1; the best epoch is kept")
    max_train_examples: int = option(0, "train on a random sample of this many questions (0: all)")
    group_by_length: bool = option(False, "batches of windows of similar length (windows are mostly full: little "
                                          "gain)")

    @property
    def kind_hint(self) -> str:
        return "qa"

    def task_problems(self) -> list[str]:
        from xtremedistil_tf.data.qa import check_window_flags
        if self.task not in QA_TASKS:
            return [f"--task={self.task!r}: expected one of {', '.join(QA_TASKS)}"]
        for flag in ("train_file", "dev_file"):
            for path in filter(None, getattr(self, flag).split(",")):
                if not fs.isfile(path):
                    return [f"--{flag}={path}: no such file"]
        if bool(self.train_file) != bool(self.dev_file):
            return ["--train_file and --dev_file go together (or neither: TFDS)"]
        try:
            check_window_flags(self.seq_len, self.doc_stride, self.max_query_length)
        except ConfigError as e:
            return [str(e)]
        checks = [(self.n_best_size > 0, "--n_best_size must be positive"),
                  (self.max_answer_length > 0, "--max_answer_length must be positive")]
        return [message for ok, message in checks if not ok]


@dataclasses.dataclass
class _QASplits:
    """The questions of each split, where they came from, and whether unanswerable questions count (v2.0)."""
    source: str
    splits: dict
    version_2: bool


def _read_files(paths: str):
    from xtremedistil_tf.data.readers.squad import QAData, read_squad_json
    parts = [read_squad_json(p) for p in paths.split(",") if p]
    if len(parts) == 1:
        return parts[0]
    return QAData([e for p in parts for e in p.examples], ",".join(p.path for p in parts),
                  "2.0" if any(p.version == "2.0" for p in parts) else "1.1")


class SquadRun(GlueRun):
    """One run of run_squad.py: GlueRun with QA data, features, scores and prediction files."""

    def load_data(self):
        """Reads train and dev (files, else TFDS), samples train with --max_train_examples."""
        from xtremedistil_tf.data.tasks import load_qa_task
        c = self.config
        version_2 = c.task == "squad_v2"
        if c.train_file:
            train, dev = _read_files(c.train_file), _read_files(c.dev_file)
            source = f"{c.train_file} + {c.dev_file}"
        else:
            name = registry.TASKS[c.task].tfds_name
            logging.info("no --train_file: reading TFDS %s", name)
            splits = load_qa_task(name, tfds_data_dir=c.tfds_data_dir or None).splits
            train, dev = splits["train"], splits["dev"]
            source = f"tfds:{name}"
        if not version_2 and any(e.is_impossible for d in (train, dev) for e in d.examples):
            raise ConfigError(f"{source} has unanswerable questions (SQuAD v2.0); use --task=squad_v2")
        self.train_total = len(train)
        if c.max_train_examples and c.max_train_examples < len(train):
            keep = np.sort(np.random.RandomState(c.seed).choice(len(train), c.max_train_examples, replace=False))
            train = dataclasses.replace(train, examples=[train.examples[i] for i in keep],
                                        path=f"{train.path}[sample {len(keep)}]")
            logging.info("train: a random sample of %d of the %d questions (--max_train_examples, seed %d)",
                         len(keep), self.train_total, c.seed)
        self.task = _QASplits(source, {"train": train, "dev": dev}, version_2)
        self.kind, self.glue_task, self.label_names, self.num_labels = "qa", "", None, 2
        self.eval_splits, self.test_splits = ["dev"], []
        logging.info("data from %s: train %d questions, dev %d questions (%d unanswerable)", source, len(train),
                     len(dev), sum(e.is_impossible for e in dev.examples))

    def featurize(self):
        """The windows of train (with answer positions) and dev."""
        from xtremedistil_tf.data.qa import featurize_qa
        from xtremedistil_tf.data.tokenize import load_tokenizer
        c = self.config
        self.tokenizer = load_tokenizer(self.model_info.tokenizer_source)
        self.features, self.arrays, self.feature_stats = {}, {}, {}
        for split in ("train", "dev"):
            feats = featurize_qa(self.tokenizer, self.task.splits[split].examples, max_seq_length=c.seq_len,
                                 doc_stride=c.doc_stride, max_query_length=c.max_query_length,
                                 with_labels=split == "train", name=split)
            self.check_token_ids(feats.arrays)
            self.features[split], self.arrays[split], self.feature_stats[split] = feats, feats.arrays, feats.stats

    def score(self, split: str, logits: np.ndarray | None = None):
        """The split's official SQuAD figures and answers (`metrics.scoring.score_spans`)."""
        from xtremedistil_tf.metrics.scoring import score_spans
        c = self.config
        logits = self.logits(split) if logits is None else logits
        return score_spans(self.task.splits[split], self.features[split], logits, version_2=self.task.version_2,
                           n_best_size=c.n_best_size, max_answer_length=c.max_answer_length,
                           null_threshold=c.null_score_diff_threshold)

    def evaluate(self, split: str, logits: np.ndarray | None = None) -> dict:
        """The official SQuAD figures (percent) of the split's answers."""
        return self.score(split, logits)[0]

    def predict_test(self) -> tuple[dict, dict]:
        """Writes the dev answers of the final model: predictions.json (and null_odds.json for v2.0)."""
        if not self.chief:
            return {}, {}
        preds = self.score("dev")[1]
        io.write_json(self._path("predictions.json"), preds.text)
        files = {"dev": "predictions.json"}
        if self.task.version_2:
            io.write_json(self._path("null_odds.json"), preds.null_odds)
            files["dev_null_odds"] = "null_odds.json"
        logging.info("dev predictions (%d questions): %s", len(preds.text), self._path("predictions.json"))
        return {}, files

    def extra_metrics(self) -> dict:
        """The window counts of each split (questions cut, answers in no window, ...)."""
        return {"windows": self.feature_stats}


def run_squad(config: SquadConfig) -> dict:
    """Runs run_squad.py with `config` and returns the metrics written to metrics.json."""
    return SquadRun(config).run()
