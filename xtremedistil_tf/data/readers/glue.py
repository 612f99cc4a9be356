"""GLUE as GLUE distributes it: one folder per task of ``<split>.tsv`` files with a header (but CoLA's train/dev).

Which folder, columns and splits each task has comes from :mod:`xtremedistil_tf.data.registry`.
"""
from __future__ import annotations

import os
from typing import Sequence

from xtremedistil_tf import fs
from xtremedistil_tf.data import registry
from xtremedistil_tf.data.readers.common import (
    INT_RE,
    Example,
    MissingFileError,
    Skips,
    TaskData,
    float_or_none,
    is_numeric_label,
    iter_lines,
    log_label_counts,
    show_labels,
    sorted_label_names,
    warn_rare_labels,
)
from xtremedistil_tf.errors import DataError


def _glue_folder(task: str, data_dir: str) -> str:
    spec = registry.glue_files(task)
    candidates = [fs.join(data_dir, spec.folder), fs.join(data_dir, spec.folder.lower()),
                  fs.join(data_dir, task), data_dir]
    for folder in candidates:
        if any(fs.exists(fs.join(folder, f"{s}.tsv")) for s in spec.splits):
            return folder
    raise MissingFileError(
        data_dir, None,
        f"no GLUE {task} files ({', '.join(s + '.tsv' for s in spec.splits)}) found in this folder or in "
        f"its {spec.folder}/ subfolder")


def _mixed_note(raw: str, task: str, names_expected: bool, allowed: Sequence[str], seen: set[str],
                first_line: int | None) -> str:
    """What to add to a label error when the label is of the wrong kind for the task's files: a name where GLUE
    gives ids (SST-2's 0/1) or an id where it gives names (QNLI's entailment/not_entailment); "" otherwise.
    ``seen``: the valid labels of the file so far, first seen at ``first_line``."""
    if is_numeric_label(raw) != names_expected:
        return ""
    note = (f"; GLUE {task} files hold label {'names' if names_expected else 'ids'} ({'/'.join(allowed)}), "
            f"not {'ids' if names_expected else 'names'}")
    if seen:
        shown = "/".join(sorted_label_names(seen))
        note += f": labels are {shown} elsewhere in this file (first seen at line {first_line})"
    return note


def _read_glue_file(path: str, task: str, split: str, skip_bad_lines: bool) -> TaskData:
    spec = registry.glue_files(task)
    names = registry.GLUE_LABEL_NAMES[task]
    kind = "classification" if names is not None else "regression"
    pairwise = spec.text_b is not None
    skips = Skips(path)
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
    first_label_line = None  # the first line with a valid label: of the kind (ids or names) the task's files use
    seen_labels: set[str] = set()  # the valid labels seen so far
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
                label = float_or_none(raw)
                if label is None:
                    skips.bad_line(skip_bad_lines, lineno, f"expected a number as the regression label, found {raw!r}")
                    continue
            elif spec.numeric_labels:
                if raw.isdigit() and int(raw) < len(names):
                    label = int(raw)
                else:
                    ids = [str(i) for i in range(len(names))]
                    skips.bad_line(skip_bad_lines, lineno,
                                   f"label {raw!r} is not in the label set ({', '.join(ids)} = {', '.join(names)})"
                                   + _mixed_note(raw, task, False, ids, seen_labels, first_label_line))
                    continue
            else:
                if raw not in index:
                    skips.bad_line(skip_bad_lines, lineno,
                                   f"label {raw!r} is not in the label set ({show_labels(names)})"
                                   + _mixed_note(raw, task, True, names, seen_labels, first_label_line))
                    continue
                label = index[raw]
            if names is not None and raw not in seen_labels:
                seen_labels.add(raw)
                first_label_line = first_label_line or lineno
        idx = n
        if i_index is not None:
            raw_idx = fields[i_index].strip()
            if INT_RE.fullmatch(raw_idx):
                idx = int(raw_idx)
        examples.append(Example(fields[i_a], fields[i_b] if i_b is not None else None, label, idx))
    skips.log()
    if not examples:
        raise DataError(path, None, "empty file: no examples after the header" if header_line else
                        "empty file: no examples")
    log_label_counts(path, kind, list(names) if names else None, examples)
    if split == "train":
        warn_rare_labels(path, kind, list(names) if names else None, examples)
    return TaskData(examples, list(names) if names else None, kind, path, pairwise)


def read_glue(task: str, data_dir: str, *, splits: Sequence[str] | None = None,
              skip_bad_lines: bool = False) -> dict[str, TaskData]:
    """Reads a GLUE task as GLUE distributes it.

    ``data_dir``: the task's folder (e.g. ``glue/SST-2``) or the folder above it (``glue``). Returns the splits
    present: "train", "dev", "test"; for MNLI "train", "dev_matched", "dev_mismatched", "test_matched",
    "test_mismatched". Labels in the TFDS order of :data:`GLUE_LABEL_NAMES`; STS-B float scores as regression.
    Test splits have ``label=None`` and ``idx`` from the index column. Every file has a header except CoLA's
    train/dev (``source<TAB>label<TAB>mark<TAB>sentence``). ``splits`` restricts (and then requires) the splits.
    A label outside the task's set is an error at its line; one of the wrong kind (a name such as ``positive``
    where the task's files hold ids such as SST-2's 0/1, or an id where they hold names) says so. A train label
    seen fewer than 5 times is logged as a warning.
    """
    task = registry.glue_task_name(task)
    data_dir = os.fspath(data_dir)
    folder = _glue_folder(task, data_dir)
    spec = registry.glue_files(task)
    wanted = list(splits) if splits is not None else list(spec.splits)
    out: dict[str, TaskData] = {}
    for split in wanted:
        if split not in spec.splits:
            raise ValueError(f"GLUE {task} has no split {split!r}; expected one of {spec.splits}")
        path = fs.join(folder, f"{split}.tsv")
        if not fs.exists(path):
            if splits is not None:
                raise MissingFileError(path, None, f"file not found: GLUE {task} {split} split")
            continue
        out[split] = _read_glue_file(path, task, split, skip_bad_lines)
    return out
