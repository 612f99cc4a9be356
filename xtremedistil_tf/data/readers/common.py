"""What every reader shares: the Example and TaskData rows, reading lines of a file, label helpers, skip counts."""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

from absl import logging

from xtremedistil_tf import fs
from xtremedistil_tf.data.registry import KINDS
from xtremedistil_tf.errors import DataError

_BOM = b"\xef\xbb\xbf"
INT_RE = re.compile(r"[+-]?\d+")
#: A numeric-looking label: an integer or a decimal number ("0", "-1", "2.5", "1e3"); not "nan" or "inf".
NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
#: A class (NER: a tag) seen fewer times than this in a training split is logged as a warning.
RARE_LABEL_COUNT = 5


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
        """Number of classes (tags for NER); None for regression."""
        return None if self.label_names is None else len(self.label_names)

    @property
    def has_labels(self) -> bool:
        """True when the split has examples and every one is labelled (test splits usually are not)."""
        return bool(self.examples) and all(e.label is not None for e in self.examples)


class MissingFileError(DataError, FileNotFoundError):
    """A data file that does not exist (a DataError and a FileNotFoundError)."""


# ---------------------------------------------------------------------------------------------------------------
# Line-level reading
# ---------------------------------------------------------------------------------------------------------------


def _open_binary(path: str):
    """Opens a data file (local or remote) for reading bytes; a missing file is a MissingFileError."""
    try:
        f = fs.open(path, "rb")
    except FileNotFoundError:
        raise MissingFileError(path, None, "file not found") from None
    except IsADirectoryError:
        raise DataError(path, None, "is a folder; expected a data file") from None
    except OSError as e:
        raise DataError(path, None, f"cannot read the file: {e.strerror or e}") from None
    return f


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


class Skips:
    """Counts what a reader skipped and logs it once at the end, so nothing is dropped silently."""

    def __init__(self, path: str):
        self.path = path
        self.blank = 0
        self.docstart = 0
        self.bad: list[tuple[int, str]] = []
        self.ignored_labels = 0

    def bad_line(self, skip: bool, lineno: int, message: str) -> None:
        """A malformed line: raises a DataError, or (``skip``) records it to be logged."""
        if not skip:
            raise DataError(self.path, lineno, message)
        self.bad.append((lineno, message))

    def log(self) -> None:
        """Logs the counts (and the first bad lines) of what was skipped."""
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


# ---------------------------------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------------------------------


def check_kind(kind: str, pairwise: bool) -> None:
    """Refuses an unknown task kind, and pairwise NER (a programming error, hence ValueError)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind == "ner" and pairwise:
        raise ValueError("NER data cannot be pairwise")


def sorted_label_names(raw: Iterable[str]) -> list[str]:
    """The distinct labels sorted: numerically when all are integers (so "10" follows "9"), else as strings."""
    uniq = set(raw)
    if uniq and all(INT_RE.fullmatch(x) for x in uniq):
        return sorted(uniq, key=lambda x: (int(x), x))
    return sorted(uniq)


def show_labels(names: Sequence[str], limit: int = 20) -> str:
    """A label set for an error message, cut after ``limit`` names."""
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def label_id(path: str, lineno: int, raw: str, index: dict[str, int], names: Sequence[str]) -> int:
    """The id of label ``raw``; a DataError at ``path:lineno`` naming the label set when it is not in it."""
    try:
        return index[raw]
    except KeyError:
        raise DataError(path, lineno, f"label {raw!r} is not in the label set ({show_labels(names)})") from None


def float_or_none(raw: str) -> float | None:
    """``raw`` as a finite float, else None."""
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_float(path: str, lineno: int, raw: str) -> float:
    """A regression label: a finite float, else a DataError at ``path:lineno``."""
    value = float_or_none(raw)
    if value is None:
        raise DataError(path, lineno, f"expected a finite number as the regression label, found {raw!r}")
    return value


def _label_counts(kind: str, names: Sequence[str], examples: Sequence[Example]) -> list[int]:
    """How many labelled examples carry each label (NER: how many times each tag occurs)."""
    counts = [0] * len(names)
    for e in examples:
        if e.label is None:
            continue
        if kind == "ner":
            for t in e.label:
                counts[t] += 1
        else:
            counts[e.label] += 1
    return counts


def log_label_counts(path: str, kind: str, names: Sequence[str] | None, examples: Sequence[Example]) -> None:
    """Logs the number of examples of a split and, when labelled, how many carry each label (tags for NER)."""
    if kind == "regression" or names is None or not examples or examples[0].label is None:
        logging.info("%s: %d examples", path, len(examples))
        return
    counts = _label_counts(kind, names, examples)
    what = "tags" if kind == "ner" else "examples"
    logging.info("%s: %d examples; %s by label: %s", path, len(examples), what,
                 ", ".join(f"{n}={c}" for n, c in zip(names, counts)))


def warn_rare_labels(path: str, kind: str, names: Sequence[str] | None, examples: Sequence[Example],
                     minimum: int = RARE_LABEL_COUNT, limit: int = 20) -> None:
    """Logs a warning naming every label of a training split seen fewer than ``minimum`` times, with its count
    (NER: every tag, counted per word). A class that rare is hardly learnt, and is often a typo of a label."""
    if kind not in ("classification", "ner") or names is None or not any(e.label is not None for e in examples):
        return
    rare = [(n, c) for n, c in zip(names, _label_counts(kind, names, examples)) if c < minimum]
    if not rare:
        return
    if kind == "ner":
        shown = ", ".join(f"{n!r} occurs {c} time{'' if c == 1 else 's'}" for n, c in rare[:limit])
        what = (f"{len(rare)} tag{' occurs' if len(rare) == 1 else 's occur'} fewer than {minimum} times in the "
                "training data")
    else:
        shown = ", ".join(f"{n!r} has {c} example{'' if c == 1 else 's'}" for n, c in rare[:limit])
        what = f"{len(rare)} label{' has' if len(rare) == 1 else 's have'} fewer than {minimum} training examples"
    if len(rare) > limit:
        shown += f", ... ({len(rare)} in all)"
    logging.warning("%s: %s (too few to learn well; a typo in a label?): %s", path, what, shown)


# ---------------------------------------------------------------------------------------------------------------
# Mixed numeric and non-numeric labels
# ---------------------------------------------------------------------------------------------------------------


def is_numeric_label(raw: str) -> bool:
    """True for a numeric-looking label ("0", "-1", "2.5"); False for a name ("positive", "nan")."""
    return NUMBER_RE.fullmatch(raw) is not None


def labels_mix_kinds(labels: Iterable[str]) -> bool:
    """True when ``labels`` hold both numeric-looking and non-numeric labels."""
    kinds = {is_numeric_label(x) for x in labels}
    return len(kinds) == 2


def _show_values(values: Iterable[str], limit: int = 10) -> str:
    names = sorted_label_names(values)
    return "/".join(names[:limit]) + (f"/... ({len(names)} distinct)" if len(names) > limit else "")


def mixed_label_lines(labels: Sequence[tuple[int, str]]) -> list[tuple[int, str]]:
    """The labels of a training file that mix numeric-looking labels ("0", "1") with non-numeric ones
    ("positive"): ``(line, message)`` for every line of the odd kind, in file order; ``[]`` when the labels are
    all of one kind. ``labels``: ``(line, raw label)`` of every labelled line.

    The odd kind is the minority; on a tie, the kind first seen later in the file. Each message names the label,
    the usual labels of the file with the line where that kind is first seen, and the counts of both kinds.
    """
    count = {True: 0, False: 0}
    first: dict[bool, int] = {}
    values: dict[bool, set[str]] = {True: set(), False: set()}
    for lineno, raw in labels:
        numeric = is_numeric_label(raw)
        count[numeric] += 1
        first.setdefault(numeric, lineno)
        values[numeric].add(raw)
    if not count[True] or not count[False]:
        return []
    if count[True] != count[False]:
        odd = count[True] < count[False]
        why = "the minority kind is taken as the mistake"
    else:
        odd = first[True] > first[False]
        why = "a tie, so the kind first seen later in the file is taken as the mistake"
    usual = not odd
    usual_word = "numeric" if usual else "non-numeric"
    odd_word = "numeric" if odd else "non-numeric"
    tail = (f"labels are {_show_values(values[usual])} elsewhere in this file (first seen at line {first[usual]}); "
            f"expected a {usual_word} label like those: the file mixes numeric and non-numeric labels "
            f"({count[usual]} {usual_word} vs {count[odd]} {odd_word} line(s); {why})")
    return [(lineno, f"label {raw!r} is {'numeric' if odd else 'not numeric'}, but {tail}")
            for lineno, raw in labels if is_numeric_label(raw) == odd]
