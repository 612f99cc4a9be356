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
    iter_lines,
    log_label_counts,
    show_labels,
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
                    skips.bad_line(skip_bad_lines, lineno,
                                   f"label {raw!r} is not in the label set "
                                   f"({', '.join(str(i) for i in range(len(names)))} = {', '.join(names)})")
                    continue
            else:
                if raw not in index:
                    skips.bad_line(skip_bad_lines, lineno,
                                   f"label {raw!r} is not in the label set ({show_labels(names)})")
                    continue
                label = index[raw]
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
