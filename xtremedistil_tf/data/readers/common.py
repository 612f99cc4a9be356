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


def log_label_counts(path: str, kind: str, names: Sequence[str] | None, examples: Sequence[Example]) -> None:
    """Logs the number of examples of a split and, when labelled, how many carry each label (tags for NER)."""
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
