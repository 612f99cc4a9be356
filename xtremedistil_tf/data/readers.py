"""Readers for every input format: the original release's task folders, GLUE as distributed, CoNLL files, TFDS.

Every reader returns a :class:`TaskData` of :class:`Example` rows. Bad input raises
:class:`xtremedistil_tf.errors.DataError` whose message names the file, the line and what was expected. Nothing
is dropped silently: skipped lines (blank lines, ``-DOCSTART-`` lines, bad lines when ``skip_bad_lines=True``)
are counted and logged with absl.logging.

Files are read as bytes and split on ``\\n`` only (a ``\\r`` before it is removed), so characters such as U+2028
or U+0085 inside a text stay in the text; each line is decoded as strict UTF-8 and a UTF-8 byte order mark at
the start of a file is removed. Fields are split on tabs with no quoting (the original used
``csv.reader(delimiter="\\t", quotechar=None)``, GLUE/TFDS ``QUOTE_NONE``).

Label conventions
-----------------
* Task folders (original release format), classification: the original parses the label column with ``int()``
  and uses it as the class id as is; its number of classes is the number of distinct train labels and it never
  reads ``labels.tsv`` for classification. Here the label names are the lines of ``labels.tsv`` when the folder
  has one, else the distinct train labels sorted (numerically when all are integers), and the id is the position
  in that list. For the usual labels ``0..K-1`` both give the same ids; labels that are not integers, which the
  original rejects, work here. A dev/test label outside the train label set is an error.
* Task folders, NER: ``labels.tsv`` is required (as in the original); tag ids are positions in it. The original
  appended ``[PAD]``, ``X``, ``[SEP]``, ``[CLS]`` to that list; see ``tokenize.faithful_ner_labels``.
* GLUE (:func:`read_glue`) and TFDS (:func:`read_tfds`) use the TFDS label order, listed in
  :data:`GLUE_LABEL_NAMES`. STS-B is a float regression target (``label_names=None``). Test splits carry no labels
  (``label=None``) and keep the file's ``index`` column (``id`` for QQP) in ``Example.idx`` for submission files.
* CoNLL (:func:`read_conll`): the sorted tag set unless ``label_names`` is given (TFDS' conll2003 order is
  :data:`CONLL2003_TFDS_TAGS`).
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

from absl import logging

from xtremedistil_tf.errors import ConfigError, DataError

KINDS = ("classification", "regression", "ner")

_BOM = b"\xef\xbb\xbf"
_INT_RE = re.compile(r"[+-]?\d+")
_CONLL_SPLIT = re.compile(r"[ \t]+")


@dataclass(frozen=True)
class Example:
    """One example.

    text_a: the text, or for NER the tuple of words. text_b: the second text of a pair, else None.
    label: class id (int), regression target (float), tag ids per word (tuple of int, NER), or None when
    unlabelled. idx: the file's index column when it has one (GLUE), else the example's 0-based position.
    """

    text_a: str | tuple[str, ...]
    text_b: str | None = None
    label: int | float | tuple[int, ...] | None = None
    idx: int | None = None


@dataclass
class TaskData:
    """The examples of one split with what is needed to interpret their labels."""

    examples: list[Example]
    label_names: list[str] | None  # None for regression
    kind: str  # "classification" | "regression" | "ner"
    path: str
    pairwise: bool

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def num_labels(self) -> int | None:
        return None if self.label_names is None else len(self.label_names)

    @property
    def has_labels(self) -> bool:
        return bool(self.examples) and all(e.label is not None for e in self.examples)


class MissingFileError(DataError, FileNotFoundError):
    """A data file that does not exist (a DataError and a FileNotFoundError)."""


# ---------------------------------------------------------------------------------------------------------------
# Line-level reading
# ---------------------------------------------------------------------------------------------------------------


def _open_binary(path: str):
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise MissingFileError(path, None, "file not found") from None
    except IsADirectoryError:
        raise DataError(path, None, "is a folder; expected a data file") from None
    except OSError as e:
        raise DataError(path, None, f"cannot read the file: {e.strerror or e}") from None


def iter_lines(path: str) -> Iterator[tuple[int, str]]:
    """Yields (1-based line number, text without the line ending) for every line, blank lines included."""
    path = os.fspath(path)
    with _open_binary(path) as f:
        for lineno, raw in enumerate(f, 1):
            if lineno == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM):]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(
                    path, lineno,
                    f"invalid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}); data files must be UTF-8",
                ) from None
            if text.endswith("\n"):
                text = text[:-1]
            if text.endswith("\r"):
                text = text[:-1]
            yield lineno, text


def count_lines(path: str) -> int:
    """Number of non-blank lines of a file (the number of examples of a task or transfer file)."""
    path = os.fspath(path)
    n = 0
    with _open_binary(path) as f:
        for lineno, raw in enumerate(f, 1):
            if lineno == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM):]
            if raw.strip():
                n += 1
    return n


class _Skips:
    """Counts what a reader skipped and logs it once at the end."""

    def __init__(self, path: str):
        self.path = path
        self.blank = 0
        self.docstart = 0
        self.bad: list[tuple[int, str]] = []
        self.ignored_labels = 0

    def bad_line(self, skip: bool, lineno: int, message: str) -> None:
        if not skip:
            raise DataError(self.path, lineno, message)
        self.bad.append((lineno, message))

    def log(self) -> None:
        if self.blank:
            logging.info("%s: skipped %d blank line(s)", self.path, self.blank)
        if self.docstart:
            logging.info("%s: skipped %d -DOCSTART- line(s)", self.path, self.docstart)
        if self.ignored_labels:
            logging.info("%s: ignored the label column of %d line(s) (unlabelled use)", self.path,
                         self.ignored_labels)
        if self.bad:
            first = "; ".join(f"line {n}: {m}" for n, m in self.bad[:5])
            logging.warning("%s: skipped %d bad line(s) (skip_bad_lines=True); first: %s", self.path,
                            len(self.bad), first)


def _check_kind(kind: str, pairwise: bool) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind == "ner" and pairwise:
        raise ValueError("NER data cannot be pairwise")


def _split_words(text: str) -> tuple[str, ...]:
    # Split on spaces only (as the original's split(" ")), dropping empty words from repeated spaces.
    return tuple(w for w in text.split(" ") if w)


def _sorted_label_names(raw: Iterable[str]) -> list[str]:
    uniq = set(raw)
    if uniq and all(_INT_RE.fullmatch(x) for x in uniq):
        return sorted(uniq, key=lambda x: (int(x), x))
    return sorted(uniq)


def _show_labels(names: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _label_id(path: str, lineno: int, raw: str, index: dict[str, int], names: Sequence[str]) -> int:
    try:
        return index[raw]
    except KeyError:
        raise DataError(path, lineno, f"label {raw!r} is not in the label set ({_show_labels(names)})") from None


def _float_or_none(raw: str) -> float | None:
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _parse_float(path: str, lineno: int, raw: str) -> float:
    value = _float_or_none(raw)
    if value is None:
        raise DataError(path, lineno, f"expected a finite number as the regression label, found {raw!r}")
    return value


# ---------------------------------------------------------------------------------------------------------------
# The original release's task folders
# ---------------------------------------------------------------------------------------------------------------


def read_labels_file(path: str) -> list[str]:
    """Reads ``labels.tsv``: one label a line; blank lines are skipped (as the original), duplicates are errors."""
    path = os.fspath(path)
    names: list[str] = []
    seen: dict[str, int] = {}
    skips = _Skips(path)
    for lineno, text in iter_lines(path):
        name = text.strip()
        if not name:
            skips.blank += 1
            continue
        if name in seen:
            raise DataError(path, lineno, f"duplicate label {name!r} (first on line {seen[name]})")
        seen[name] = lineno
        names.append(name)
    if not names:
        raise DataError(path, None, "empty file: expected one label a line")
    skips.log()
    return names


def _expected_columns(kind: str, pairwise: bool, has_labels: bool) -> str:
    if kind == "ner":
        return "words<TAB>tags (space-separated, as many tags as words)" if has_labels else "words"
    cols = "text_a<TAB>text_b" if pairwise else "text"
    return cols + ("<TAB>label" if has_labels else "")


def _read_task_rows(path: str, kind: str, pairwise: bool, has_labels: bool, skip_bad_lines: bool,
                    accept_labels: bool = False) -> Iterator[tuple[int, str | tuple[str, ...], str | None,
                                                                   str | tuple[str, ...] | None]]:
    """Yields (line, text_a, text_b, raw label) of a task-format file; raw label is None when unlabelled."""
    n_text = 2 if pairwise else 1
    n_cols = n_text + (1 if has_labels else 0)
    allowed = {n_cols} | ({n_text + 1} if accept_labels and not has_labels else set())
    skips = _Skips(path)
    count = 0
    for lineno, text in iter_lines(path):
        if not text.strip():
            skips.blank += 1
            continue
        fields = text.split("\t")
        if len(fields) not in allowed:
            skips.bad_line(skip_bad_lines, lineno,
                           f"expected {n_cols} tab-separated column(s) ({_expected_columns(kind, pairwise, has_labels)}),"
                           f" found {len(fields)}")
            continue
        if len(fields) != n_cols:
            skips.ignored_labels += 1
        if kind == "ner":
            words = _split_words(fields[0])
            if not words:
                skips.bad_line(skip_bad_lines, lineno, "expected at least one word, found none")
                continue
            raw_label = None
            if has_labels:
                tags = _split_words(fields[1])
                if len(tags) != len(words):
                    skips.bad_line(skip_bad_lines, lineno,
                                   f"NER line has {len(words)} word(s) but {len(tags)} tag(s); expected one tag a word")
                    continue
                raw_label = tags
            count += 1
            yield lineno, words, None, raw_label
        else:
            raw_label = fields[n_text].strip() if has_labels else None
            if has_labels and not raw_label:
                skips.bad_line(skip_bad_lines, lineno, "empty label column")
                continue
            count += 1
            yield lineno, fields[0], (fields[1] if pairwise else None), raw_label
    skips.log()
    if count == 0:
        raise DataError(path, None, f"empty file: no examples (expected lines of {_expected_columns(kind, pairwise, has_labels)})")


def read_task_file(path: str, *, kind: str, pairwise: bool, label_names: Sequence[str] | None,
                   has_labels: bool = True, skip_bad_lines: bool = False) -> TaskData:
    """Reads one file of the original release's task-folder format (no header).

    Lines: ``text<TAB>label``; ``text_a<TAB>text_b<TAB>label`` when ``pairwise``; NER ``words<TAB>tags``
    (space-separated, same count). Unlabelled (``has_labels=False``): ``text``, ``text_a<TAB>text_b`` or
    ``words``. Classification labels are looked up in ``label_names`` (inferred from this file, sorted, when
    None, see the module docstring); regression labels are floats; NER tags are looked up in ``label_names``
    (inferred, sorted, when None). ``skip_bad_lines=True`` skips and counts malformed lines instead of raising.
    """
    path = os.fspath(path)
    _check_kind(kind, pairwise)
    rows = list(_read_task_rows(path, kind, pairwise, has_labels, skip_bad_lines))
    names: list[str] | None = None
    if kind != "regression":
        if label_names is not None:
            names = list(label_names)
        elif has_labels:
            if kind == "ner":
                names = _sorted_label_names(t for r in rows for t in r[3])
            else:
                names = _sorted_label_names(r[3] for r in rows)
    index = {n: i for i, n in enumerate(names)} if names is not None else {}
    examples = []
    skips = _Skips(path)
    for lineno, a, b, raw in rows:
        label: int | float | tuple[int, ...] | None = None
        if raw is not None:
            try:
                if kind == "ner":
                    label = tuple(_label_id(path, lineno, t, index, names) for t in raw)
                elif kind == "regression":
                    label = _parse_float(path, lineno, raw)
                else:
                    label = _label_id(path, lineno, raw, index, names)
            except DataError as e:
                skips.bad_line(skip_bad_lines, lineno, str(e)[len(f"{path}:{lineno}: "):])
                continue
        examples.append(Example(a, b, label, len(examples)))
    skips.log()
    if not examples:
        raise DataError(path, None, "no examples left after skipping bad lines")
    _log_label_counts(path, kind, names, examples)
    return TaskData(examples, names, kind, path, pairwise)


def _log_label_counts(path: str, kind: str, names: Sequence[str] | None, examples: Sequence[Example]) -> None:
    if kind == "regression" or names is None or not examples or examples[0].label is None:
        logging.info("%s: %d examples", path, len(examples))
        return
    counts = [0] * len(names)
    for e in examples:
        if kind == "ner":
            for t in e.label:
                counts[t] += 1
        else:
            counts[e.label] += 1
    what = "tags" if kind == "ner" else "examples"
    logging.info("%s: %d examples; %s by label: %s", path, len(examples), what,
                 ", ".join(f"{n}={c}" for n, c in zip(names, counts)))


def read_task_folder(task_dir: str, *, do_NER: bool = False, do_pairwise: bool = False,
                     skip_bad_lines: bool = False) -> dict[str, TaskData]:
    """Reads ``train.tsv`` (required), ``dev.tsv`` and ``test.tsv`` (when present) of an original-release folder.

    Labels: ``labels.tsv`` when present, else (classification) the sorted distinct train labels (numeric sort
    when all are integers); NER requires ``labels.tsv``. The original release used ``int(label)`` as the class
    id and ``len(set(train labels))`` classes, ignoring labels.tsv for classification: for labels ``0..K-1``
    (its only working case) this gives the same ids. Blank lines are skipped (as the original) and counted.
    The transfer file is not read here: see :func:`iter_transfer_file`.
    """
    task_dir = os.fspath(task_dir)
    if not os.path.isdir(task_dir):
        raise MissingFileError(task_dir, None, "task folder not found")
    kind = "ner" if do_NER else "classification"
    labels_path = os.path.join(task_dir, "labels.tsv")
    label_names = None
    if os.path.exists(labels_path):
        label_names = read_labels_file(labels_path)
    elif do_NER:
        raise MissingFileError(labels_path, None, "file not found: NER task folders need labels.tsv (one tag a line)")
    train_path = os.path.join(task_dir, "train.tsv")
    if not os.path.exists(train_path):
        raise MissingFileError(train_path, None, "file not found: a task folder needs train.tsv")
    out = {"train": read_task_file(train_path, kind=kind, pairwise=do_pairwise, label_names=label_names,
                                   skip_bad_lines=skip_bad_lines)}
    label_names = out["train"].label_names
    for split in ("dev", "test"):
        p = os.path.join(task_dir, f"{split}.tsv")
        if os.path.exists(p):
            out[split] = read_task_file(p, kind=kind, pairwise=do_pairwise, label_names=label_names,
                                        skip_bad_lines=skip_bad_lines)
    return out


def iter_transfer_file(path: str, *, kind: str = "classification", pairwise: bool = False,
                       skip_bad_lines: bool = False) -> Iterator[Example]:
    """Streams the unlabelled examples of a transfer file, in constant memory.

    Lines: ``text``, ``text_a<TAB>text_b`` (pairwise) or ``words`` (NER). A labelled file (one more column) is
    accepted too; its labels are ignored and counted in the log. ``Example.idx`` is the example's position.
    """
    path = os.fspath(path)
    _check_kind(kind, pairwise)
    for pos, (_, a, b, _) in enumerate(
            _read_task_rows(path, kind, pairwise, False, skip_bad_lines, accept_labels=True)):
        yield Example(a, b, None, pos)


# ---------------------------------------------------------------------------------------------------------------
# GLUE as distributed
# ---------------------------------------------------------------------------------------------------------------

#: Label names in id order, as TFDS' glue builder (and so as :func:`read_tfds`). None: regression.
GLUE_LABEL_NAMES: dict[str, tuple[str, ...] | None] = {
    "cola": ("unacceptable", "acceptable"),
    "sst2": ("negative", "positive"),
    "mrpc": ("not_equivalent", "equivalent"),
    "stsb": None,
    "qqp": ("not_duplicate", "duplicate"),
    "mnli": ("entailment", "neutral", "contradiction"),
    "qnli": ("entailment", "not_entailment"),
    "rte": ("entailment", "not_entailment"),
    "wnli": ("not_entailment", "entailment"),
}


@dataclass(frozen=True)
class _GlueSpec:
    folder: str
    text_a: str
    text_b: str | None
    label: str
    numeric_labels: bool  # the file holds 0/1 ids rather than label names
    index: str = "index"
    splits: tuple[str, ...] = ("train", "dev", "test")
    headerless: tuple[str, ...] | None = None  # columns of the train/dev files that have no header


_GLUE: dict[str, _GlueSpec] = {
    "cola": _GlueSpec("CoLA", "sentence", None, "label", True,
                      headerless=("source", "label", "original_mark", "sentence")),
    "sst2": _GlueSpec("SST-2", "sentence", None, "label", True),
    "mrpc": _GlueSpec("MRPC", "#1 String", "#2 String", "Quality", True),
    "stsb": _GlueSpec("STS-B", "sentence1", "sentence2", "score", False),
    "qqp": _GlueSpec("QQP", "question1", "question2", "is_duplicate", True, index="id"),
    "mnli": _GlueSpec("MNLI", "sentence1", "sentence2", "gold_label", False,
                      splits=("train", "dev_matched", "dev_mismatched", "test_matched", "test_mismatched")),
    "qnli": _GlueSpec("QNLI", "question", "sentence", "label", False),
    "rte": _GlueSpec("RTE", "sentence1", "sentence2", "label", False),
    "wnli": _GlueSpec("WNLI", "sentence1", "sentence2", "label", True),
}

GLUE_TASKS = tuple(_GLUE)


def glue_task_name(task: str) -> str:
    """Normalises a GLUE task name: "SST-2", "sst_2", "sst2" -> "sst2"; "STS-B" -> "stsb"."""
    name = re.sub(r"[-_ ]", "", task.lower())
    if name not in _GLUE:
        raise ConfigError(f"unknown GLUE task {task!r}; expected one of {', '.join(GLUE_TASKS)}")
    return name


def _glue_folder(task: str, data_dir: str) -> str:
    spec = _GLUE[task]
    candidates = [os.path.join(data_dir, spec.folder), os.path.join(data_dir, spec.folder.lower()),
                  os.path.join(data_dir, task), data_dir]
    for folder in candidates:
        if any(os.path.exists(os.path.join(folder, f"{s}.tsv")) for s in spec.splits):
            return folder
    raise MissingFileError(
        data_dir, None,
        f"no GLUE {task} files ({', '.join(s + '.tsv' for s in spec.splits)}) found in this folder or in "
        f"its {spec.folder}/ subfolder")


def _read_glue_file(path: str, task: str, split: str, skip_bad_lines: bool) -> TaskData:
    spec = _GLUE[task]
    names = GLUE_LABEL_NAMES[task]
    kind = "classification" if names is not None else "regression"
    pairwise = spec.text_b is not None
    skips = _Skips(path)
    lines = iter_lines(path)
    header_line = None
    if spec.headerless is not None and not split.startswith("test"):
        columns = list(spec.headerless)
    else:
        columns = None
        for lineno, text in lines:
            if text.strip():
                columns = [c.strip() for c in text.split("\t")]
                header_line = lineno
                break
            skips.blank += 1
        if columns is None:
            raise DataError(path, None, "empty file: expected a header line and examples")
    pos = {c: i for i, c in enumerate(columns)}
    needed = [spec.text_a] + ([spec.text_b] if spec.text_b else [])
    missing = [c for c in needed if c not in pos]
    if missing:
        raise DataError(path, header_line,
                        f"expected a header with column(s) {', '.join(map(repr, needed))} for GLUE {task}; "
                        f"found {', '.join(map(repr, columns))}")
    labelled = spec.label in pos
    if not labelled and not split.startswith("test"):
        raise DataError(path, header_line, f"expected a {spec.label!r} label column for GLUE {task} {split}; "
                                           f"found {', '.join(map(repr, columns))}")
    i_a, i_b = pos[spec.text_a], pos.get(spec.text_b) if spec.text_b else None
    i_label, i_index = pos.get(spec.label), pos.get(spec.index)
    index = {n: i for i, n in enumerate(names)} if names else {}
    examples: list[Example] = []
    row = 0
    for lineno, text in lines:
        if not text.strip():
            skips.blank += 1
            continue
        fields = text.split("\t")
        n = row
        row += 1
        if len(fields) != len(columns):
            skips.bad_line(skip_bad_lines, lineno,
                           f"expected {len(columns)} tab-separated columns ({', '.join(columns)}), found {len(fields)}")
            continue
        label: int | float | None = None
        if labelled:
            raw = fields[i_label].strip()
            if names is None:
                label = _float_or_none(raw)
                if label is None:
                    skips.bad_line(skip_bad_lines, lineno, f"expected a number as the regression label, found {raw!r}")
                    continue
            elif spec.numeric_labels:
                if raw.isdigit() and int(raw) < len(names):
                    label = int(raw)
                else:
                    skips.bad_line(skip_bad_lines, lineno,
                                   f"label {raw!r} is not in the label set "
                                   f"({', '.join(str(i) for i in range(len(names)))} = {', '.join(names)})")
                    continue
            else:
                if raw not in index:
                    skips.bad_line(skip_bad_lines, lineno,
                                   f"label {raw!r} is not in the label set ({_show_labels(names)})")
                    continue
                label = index[raw]
        idx = n
        if i_index is not None:
            raw_idx = fields[i_index].strip()
            if _INT_RE.fullmatch(raw_idx):
                idx = int(raw_idx)
        examples.append(Example(fields[i_a], fields[i_b] if i_b is not None else None, label, idx))
    skips.log()
    if not examples:
        raise DataError(path, None, "empty file: no examples after the header" if header_line else
                        "empty file: no examples")
    _log_label_counts(path, kind, list(names) if names else None, examples)
    return TaskData(examples, list(names) if names else None, kind, path, pairwise)


def read_glue(task: str, data_dir: str, *, splits: Sequence[str] | None = None,
              skip_bad_lines: bool = False) -> dict[str, TaskData]:
    """Reads a GLUE task as GLUE distributes it.

    ``data_dir``: the task's folder (e.g. ``glue/SST-2``) or the folder above it (``glue``). Returns the splits
    present: "train", "dev", "test"; for MNLI "train", "dev_matched", "dev_mismatched", "test_matched",
    "test_mismatched". Labels in the TFDS order of :data:`GLUE_LABEL_NAMES`; STS-B float scores as regression.
    Test splits have ``label=None`` and ``idx`` from the index column. Every file has a header except CoLA's
    train/dev (``source<TAB>label<TAB>mark<TAB>sentence``). ``splits`` restricts (and then requires) the splits.
    """
    task = glue_task_name(task)
    data_dir = os.fspath(data_dir)
    folder = _glue_folder(task, data_dir)
    spec = _GLUE[task]
    wanted = list(splits) if splits is not None else list(spec.splits)
    out: dict[str, TaskData] = {}
    for split in wanted:
        if split not in spec.splits:
            raise ValueError(f"GLUE {task} has no split {split!r}; expected one of {spec.splits}")
        path = os.path.join(folder, f"{split}.tsv")
        if not os.path.exists(path):
            if splits is not None:
                raise MissingFileError(path, None, f"file not found: GLUE {task} {split} split")
            continue
        out[split] = _read_glue_file(path, task, split, skip_bad_lines)
    return out


# ---------------------------------------------------------------------------------------------------------------
# CoNLL
# ---------------------------------------------------------------------------------------------------------------

#: TFDS' conll2003 NER tag order (read_conll sorts the tags unless given label_names).
CONLL2003_TFDS_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")


def read_conll(path: str, *, label_names: Sequence[str] | None = None, skip_bad_lines: bool = False) -> TaskData:
    """Reads a CoNLL file: one token a line, ``word POS [chunk] tag`` (space or tab separated; the tag is the
    last column), a blank line between sentences; ``-DOCSTART-`` lines are skipped (and counted). Every token
    line must have as many columns as the first one. Labels: ``label_names`` when given (a tag outside it is an
    error), else the sorted tag set.
    """
    path = os.fspath(path)
    skips = _Skips(path)
    sentences: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    words: list[str] = []
    tags: list[str] = []
    n_cols = None
    first_line = None

    def flush() -> None:
        if words:
            sentences.append((tuple(words), tuple(tags)))
            words.clear()
            tags.clear()

    for lineno, text in iter_lines(path):
        stripped = text.strip(" \t")
        if not stripped:
            flush()
            continue
        fields = _CONLL_SPLIT.split(stripped)
        if fields[0] == "-DOCSTART-":
            skips.docstart += 1
            flush()
            continue
        if len(fields) < 2:
            skips.bad_line(skip_bad_lines, lineno,
                           f"expected 'word POS [chunk] tag' (at least 2 space-separated columns), found {len(fields)}")
            continue
        if n_cols is None:
            n_cols, first_line = len(fields), lineno
        elif len(fields) != n_cols:
            skips.bad_line(skip_bad_lines, lineno,
                           f"expected {n_cols} columns like line {first_line} ('word POS [chunk] tag'), found {len(fields)}")
            continue
        words.append(fields[0])
        tags.append(fields[-1])
    flush()
    skips.log()
    if not sentences:
        raise DataError(path, None, "empty file: no sentences (expected 'word POS [chunk] tag' lines)")
    names = list(label_names) if label_names is not None else _sorted_label_names(t for _, ts in sentences for t in ts)
    index = {n: i for i, n in enumerate(names)}
    examples = []
    # Line numbers are recomputed only on error, to keep the common path cheap.
    for i, (ws, ts) in enumerate(sentences):
        try:
            label = tuple(index[t] for t in ts)
        except KeyError:
            bad = next(t for t in ts if t not in index)
            raise DataError(path, _conll_line_of(path, i, bad),
                            f"tag {bad!r} is not in the label set ({_show_labels(names)})") from None
        examples.append(Example(ws, None, label, i))
    _log_label_counts(path, "ner", names, examples)
    return TaskData(examples, names, "ner", path, False)


def _conll_line_of(path: str, sentence: int, tag: str) -> int | None:
    current, in_sentence = -1, False
    for lineno, text in iter_lines(path):
        fields = _CONLL_SPLIT.split(text.strip(" \t")) if text.strip(" \t") else []
        if not fields or fields[0] == "-DOCSTART-":
            in_sentence = False
            continue
        if not in_sentence:
            current += 1
            in_sentence = True
        if current == sentence and len(fields) >= 2 and fields[-1] == tag:
            return lineno
    return None


# ---------------------------------------------------------------------------------------------------------------
# TFDS
# ---------------------------------------------------------------------------------------------------------------

_TFDS_TEXT_KEYS = {
    "cola": ("sentence", None), "sst2": ("sentence", None), "mrpc": ("sentence1", "sentence2"),
    "stsb": ("sentence1", "sentence2"), "qqp": ("question1", "question2"), "mnli": ("premise", "hypothesis"),
    "qnli": ("question", "sentence"), "rte": ("sentence1", "sentence2"), "wnli": ("sentence1", "sentence2"),
    "ax": ("premise", "hypothesis"),
}
_TFDS_FALLBACK_KEYS = (("sentence1", "sentence2"), ("premise", "hypothesis"), ("question1", "question2"),
                       ("question", "sentence"), ("sentence", None), ("text", None))
_TFDS_SPLITS = {"dev": "validation", "dev_matched": "validation_matched", "dev_mismatched": "validation_mismatched"}


def _tfds_split(name: str, split: str) -> str:
    if name.startswith("glue/"):
        for ours, theirs in _TFDS_SPLITS.items():
            if split == ours or split.startswith(ours + "["):
                return theirs + split[len(ours):]
    elif name.startswith("conll"):  # TFDS' CoNLL builders call their dev split "dev"
        if split == "validation" or split.startswith("validation["):
            return "dev" + split[len("validation"):]
    return split


def _decode(value, where: str, i: int) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise DataError(where, i + 1, "invalid UTF-8 in a text feature") from None
    return str(value)


def read_tfds(name: str, split: str, *, data_dir: str | None = None, download: bool = True,
              label_names: Sequence[str] | None = None) -> TaskData:
    """Reads a TFDS dataset split into a TaskData: "glue/<task>" (split names "train", "dev"/"validation",
    "test", MNLI "dev_matched"/"validation_matched", ...), "conll2003" (NER: tokens and ner tags; "dev" or
    "validation"), or another
    dataset with a ClassLabel ``label`` and a ``sentence``/``text`` feature (or a known pair of text features).

    Label names come from the dataset's ClassLabel (the TFDS order, same as :data:`GLUE_LABEL_NAMES`); a float
    label is regression. Test labels of -1 become None. ``Example.idx`` is the ``idx`` feature when present.
    STS-B's test scores of -1 also become None. In errors the "line" is the 1-based example number;
    ``TaskData.path`` is ``"tfds:<name>/<split>"``.
    """
    import numpy as np
    import tensorflow_datasets as tfds

    tfds_split = _tfds_split(name, split)
    where = f"tfds:{name}/{tfds_split}"
    try:
        ds, info = tfds.load(name, split=tfds_split, data_dir=data_dir, download=download, with_info=True)
    except Exception as e:  # noqa: BLE001 - TFDS raises many types; the message is what matters
        raise DataError(where, None, f"could not load the TFDS dataset: {type(e).__name__}: {e}") from e
    features = info.features
    keys = set(features.keys())
    examples: list[Example] = []
    if "tokens" in keys and "ner" in keys:
        names = list(label_names) if label_names is not None else list(features["ner"].feature.names)
        for i, ex in enumerate(tfds.as_numpy(ds)):
            ws = tuple(_decode(w, where, i) for w in ex["tokens"])
            tags = [int(t) for t in ex["ner"]]
            if len(ws) != len(tags):
                raise DataError(where, i + 1, f"NER example has {len(ws)} token(s) but {len(tags)} tag(s)")
            if any(t < 0 or t >= len(names) for t in tags):
                raise DataError(where, i + 1, f"tag id outside the label set of {len(names)} tags")
            examples.append(Example(ws, None, tuple(tags), int(ex.get("idx", i))))
        kind, pairwise = "ner", False
    else:
        config = name.split("/", 1)[1].split(":")[0] if "/" in name else ""
        a_key, b_key = _TFDS_TEXT_KEYS.get(config, (None, None))
        if a_key is None or a_key not in keys:
            for a, b in _TFDS_FALLBACK_KEYS:
                if a in keys and (b is None or b in keys):
                    a_key, b_key = a, b
                    break
            else:
                raise DataError(where, None, f"no text feature found among {sorted(keys)}")
        label_feature = features["label"] if "label" in keys else None
        if label_feature is not None and hasattr(label_feature, "names"):
            kind = "classification"
            names = list(label_names) if label_names is not None else list(label_feature.names)
        elif label_feature is not None:
            kind, names = "regression", None
        else:
            kind = "classification"
            names = list(label_names) if label_names is not None else None
        pairwise = b_key is not None
        for i, ex in enumerate(tfds.as_numpy(ds)):
            label = None
            if label_feature is not None:
                raw = ex["label"]
                if kind == "regression":
                    label = float(raw)
                    if np.isnan(label) or label == -1.0:
                        label = None
                elif int(raw) >= 0:
                    label = int(raw)
                    if names is not None and label >= len(names):
                        raise DataError(where, i + 1, f"label id {label} outside the {len(names)} labels")
            examples.append(Example(_decode(ex[a_key], where, i),
                                    _decode(ex[b_key], where, i) if b_key else None,
                                    label, int(ex["idx"]) if "idx" in ex else i))
    if not examples:
        raise DataError(where, None, "empty split: no examples")
    _log_label_counts(where, kind, names, examples)
    return TaskData(examples, names, kind, where, pairwise)
