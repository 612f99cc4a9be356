"""The one table of the benchmark tasks: GLUE (and its diagnostic AX), CoNLL-2003 NER and SQuAD.

Everything the code knows about a named task lives here: its kind, label names, how GLUE distributes its files,
its TFDS name, text features and split names, the metrics GLUE reports for it and the file name its test
predictions take in a GLUE submission. Readers, metrics and the applications look tasks up here instead of
keeping their own tables. Only the standard library is imported, so any module can use it.

Two spellings of task names are accepted, as the two users of names always did:

* :func:`glue_task_name` (readers, ``--glue_task``): case, ``-``, ``_`` and spaces are ignored
  ("SST-2" -> "sst2"); only the GLUE tasks whose files :func:`~xtremedistil_tf.data.readers.read_glue` reads.
* :func:`scoring_name` (metrics): case and a ``glue/`` prefix are ignored, plus the aliases below
  ("MNLI-MM" -> "mnli_mismatched"); every name a split can be scored under, including MNLI's two dev sets,
  AX and "ner" (any NER task: all are scored by conlleval's rules).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

from xtremedistil_tf.errors import ConfigError

#: The kinds of task a model head can solve.
KINDS = ("classification", "regression", "ner", "qa")

#: The split names GLUE's files use for MNLI, which has two dev and two test sets.
_MNLI_SPLITS = ("train", "dev_matched", "dev_mismatched", "test_matched", "test_mismatched")


@dataclass(frozen=True)
class GlueFiles:
    """How GLUE distributes one task: its folder, the columns to read and the splits (``<split>.tsv``)."""

    folder: str
    text_a: str
    text_b: str | None
    label: str
    numeric_labels: bool  # the file holds 0/1 ids rather than label names
    index: str = "index"  # the id column of the test file, kept for submissions
    splits: tuple[str, ...] = ("train", "dev", "test")
    headerless: tuple[str, ...] | None = None  # columns of the train/dev files that have no header


@dataclass(frozen=True)
class Task:
    """Everything known about one benchmark task.

    ``metrics`` are the scores GLUE reports for it (the first is the main one, used to pick checkpoints);
    ``scored_as`` the names its splits are scored under (MNLI: also its matched and mismatched dev sets; NER:
    "ner"); ``aliases`` other spellings of those names, mapped to one of them. ``submit_label_names``: GLUE's
    server wants label strings rather than 0/1 ids in this task's submission file.
    """

    name: str
    kind: str
    label_names: tuple[str, ...] | None
    metrics: tuple[str, ...]
    scored_as: tuple[str, ...] = ()
    aliases: Mapping[str, str] = field(default_factory=dict)
    glue: GlueFiles | None = None
    tfds_name: str | None = None
    tfds_text_keys: tuple[str, str | None] | None = None
    submission: str | None = None  # stem of the GLUE submission file; MNLI's mismatched test adds "m"
    submit_label_names: bool = False

    def __post_init__(self) -> None:
        if not self.scored_as:
            object.__setattr__(self, "scored_as", (self.name,))


_MNLI_LABELS = ("entailment", "neutral", "contradiction")
_ACC_F1 = ("f1", "accuracy", "acc_and_f1")

#: Every task, in GLUE's own order, then NER.
TASKS: dict[str, Task] = {t.name: t for t in (
    Task("cola", "classification", ("unacceptable", "acceptable"), ("mcc",),
         glue=GlueFiles("CoLA", "sentence", None, "label", True,
                        headerless=("source", "label", "original_mark", "sentence")),
         tfds_name="glue/cola", tfds_text_keys=("sentence", None), submission="CoLA"),
    Task("sst2", "classification", ("negative", "positive"), ("accuracy",), aliases={"sst-2": "sst2"},
         glue=GlueFiles("SST-2", "sentence", None, "label", True),
         tfds_name="glue/sst2", tfds_text_keys=("sentence", None), submission="SST-2"),
    Task("mrpc", "classification", ("not_equivalent", "equivalent"), _ACC_F1,
         glue=GlueFiles("MRPC", "#1 String", "#2 String", "Quality", True),
         tfds_name="glue/mrpc", tfds_text_keys=("sentence1", "sentence2"), submission="MRPC"),
    Task("stsb", "regression", None, ("pearson", "spearman", "corr"), aliases={"sts-b": "stsb", "sts_b": "stsb"},
         glue=GlueFiles("STS-B", "sentence1", "sentence2", "score", False),
         tfds_name="glue/stsb", tfds_text_keys=("sentence1", "sentence2"), submission="STS-B"),
    Task("qqp", "classification", ("not_duplicate", "duplicate"), _ACC_F1,
         glue=GlueFiles("QQP", "question1", "question2", "is_duplicate", True, index="id"),
         tfds_name="glue/qqp", tfds_text_keys=("question1", "question2"), submission="QQP"),
    Task("mnli", "classification", _MNLI_LABELS, ("accuracy",),
         scored_as=("mnli", "mnli_matched", "mnli_mismatched"),
         aliases={"mnli-m": "mnli_matched", "mnli_m": "mnli_matched", "mnli-matched": "mnli_matched",
                  "mnli-mm": "mnli_mismatched", "mnli_mm": "mnli_mismatched", "mnli-mismatched": "mnli_mismatched"},
         glue=GlueFiles("MNLI", "sentence1", "sentence2", "gold_label", False, splits=_MNLI_SPLITS),
         tfds_name="glue/mnli", tfds_text_keys=("premise", "hypothesis"), submission="MNLI-m",
         submit_label_names=True),
    Task("qnli", "classification", ("entailment", "not_entailment"), ("accuracy",),
         glue=GlueFiles("QNLI", "question", "sentence", "label", False),
         tfds_name="glue/qnli", tfds_text_keys=("question", "sentence"), submission="QNLI",
         submit_label_names=True),
    Task("rte", "classification", ("entailment", "not_entailment"), ("accuracy",),
         glue=GlueFiles("RTE", "sentence1", "sentence2", "label", False),
         tfds_name="glue/rte", tfds_text_keys=("sentence1", "sentence2"), submission="RTE",
         submit_label_names=True),
    Task("wnli", "classification", ("not_entailment", "entailment"), ("accuracy",),
         glue=GlueFiles("WNLI", "sentence1", "sentence2", "label", True),
         tfds_name="glue/wnli", tfds_text_keys=("sentence1", "sentence2"), submission="WNLI"),
    # GLUE's diagnostic set: MNLI's labels, test only, scored by Matthews correlation; read_glue does not read it.
    Task("ax", "classification", _MNLI_LABELS, ("mcc",),
         tfds_name="glue/ax", tfds_text_keys=("premise", "hypothesis"), submission="AX", submit_label_names=True),
    Task("conll2003", "ner", ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"),
         ("f1", "precision", "recall", "accuracy"), scored_as=("ner",), tfds_name="conll2003"),
    # Extractive question answering, scored by the official SQuAD evaluation (percent).
    Task("squad", "qa", None, ("f1", "exact_match"), aliases={"squad_v1": "squad", "squad1.1": "squad"},
         tfds_name="squad/v1.1"),
    Task("squad_v2", "qa", None, ("f1", "exact", "HasAns_f1", "NoAns_f1", "best_f1"),
         aliases={"squad2.0": "squad_v2", "squad2": "squad_v2"}, tfds_name="squad/v2.0"),
)}

#: The GLUE tasks read_glue reads from GLUE's files, in GLUE's order.
GLUE_TASKS: tuple[str, ...] = tuple(t.name for t in TASKS.values() if t.glue is not None)

#: Label names in id order, as TFDS' glue builder (and so read_glue and read_tfds). None: regression.
GLUE_LABEL_NAMES: dict[str, tuple[str, ...] | None] = {name: TASKS[name].label_names for name in GLUE_TASKS}

#: TFDS' conll2003 NER tag order (read_conll sorts the tags unless given label_names).
CONLL2003_TFDS_TAGS: tuple[str, ...] = TASKS["conll2003"].label_names

#: Every name a classification or regression split can be scored under (glue_metrics' tasks).
GLUE_SCORING_NAMES: tuple[str, ...] = tuple(
    n for t in TASKS.values() if t.kind in ("classification", "regression") for n in t.scored_as)

_SCORED: dict[str, Task] = {n: t for t in TASKS.values() for n in t.scored_as}
_SCORING_ALIASES: dict[str, str] = {a: n for t in TASKS.values() for a, n in t.aliases.items()}

#: TFDS split names per dataset family (name prefix): our name -> TFDS' name.
TFDS_SPLIT_NAMES: dict[str, dict[str, str]] = {
    "glue/": {"dev": "validation", "dev_matched": "validation_matched", "dev_mismatched": "validation_mismatched"},
    "conll": {"validation": "dev"},  # TFDS' CoNLL builders call their dev split "dev"
}

#: Text features tried, in order, for a TFDS dataset that is not a task of this table.
TFDS_FALLBACK_TEXT_KEYS: tuple[tuple[str, str | None], ...] = (
    ("sentence1", "sentence2"), ("premise", "hypothesis"), ("question1", "question2"), ("question", "sentence"),
    ("sentence", None), ("text", None))


def glue_task_name(task: str) -> str:
    """The GLUE task ``task`` names, ignoring case, ``-``, ``_`` and spaces ("SST-2" -> "sst2", "STS-B" -> "stsb").

    Only the tasks whose GLUE files can be read (:data:`GLUE_TASKS`); a ConfigError names the known ones.
    """
    name = re.sub(r"[-_ ]", "", task.lower())
    if name not in GLUE_TASKS:
        raise ConfigError(f"unknown GLUE task {task!r}; expected one of {', '.join(GLUE_TASKS)}")
    return name


def glue_files(task: str) -> GlueFiles:
    """How GLUE distributes ``task`` (any spelling :func:`glue_task_name` accepts)."""
    return TASKS[glue_task_name(task)].glue


def scoring_name(task: str) -> str:
    """The name a split of ``task`` is scored under: "SST-2", "glue/sst2" and "sst2" -> "sst2";
    "MNLI-MM" -> "mnli_mismatched"; "ner" stays "ner". A ValueError lists the known names."""
    name = str(task).strip().lower()
    if name.startswith("glue/"):
        name = name[len("glue/"):]
    name = _SCORING_ALIASES.get(name, name)
    if name not in _SCORED:
        raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(_SCORED)}")
    return name


def scored_task(task: str) -> Task:
    """The task behind a name :func:`scoring_name` accepts (e.g. "mnli_matched" -> MNLI, "ner" -> CoNLL-2003)."""
    return _SCORED[scoring_name(task)]


def metric_names(task: str) -> tuple[str, ...]:
    """The metrics reported for ``task`` (a name :func:`scoring_name` accepts), the main one first."""
    return scored_task(task).metrics


def main_metric(task: str) -> str:
    """The metric that picks the best checkpoint of ``task``: mcc for CoLA/AX, pearson for STS-B, f1 for MRPC,
    QQP and NER, accuracy otherwise."""
    return metric_names(task)[0]


def submission_name(task: str, split: str = "test") -> str:
    """The file name (without ``.tsv``) GLUE's server expects for ``task``'s predictions on ``split``.

    ``split`` is a test split of the task: "test" (for MNLI also "test_matched") or MNLI's "test_mismatched".
    """
    t = scored_task(task)
    if t.submission is None:
        raise ValueError(f"{t.name} is not a GLUE task: it has no submission file")
    if t.name == "mnli" and split == "test_mismatched":
        return t.submission + "m"
    if split != "test" and not (t.name == "mnli" and split == "test_matched"):
        raise ValueError(f"{t.name} has no test split {split!r} to submit")
    return t.submission


def tfds_split(name: str, split: str) -> str:
    """TFDS' name for our ``split`` of the TFDS dataset ``name`` ("dev" -> "validation" for glue/*, slices kept)."""
    for prefix, names in TFDS_SPLIT_NAMES.items():
        if name.startswith(prefix):
            for ours, theirs in names.items():
                if split == ours or split.startswith(ours + "["):
                    return theirs + split[len(ours):]
            break
    return split


def tfds_text_keys(config: str) -> tuple[str | None, str | None]:
    """The text features (first, second or None) of the TFDS glue config ``config``; (None, None) if unknown."""
    for t in TASKS.values():
        if t.tfds_text_keys is not None and t.tfds_name == f"glue/{config}":
            return t.tfds_text_keys
    return None, None
