"""Build the general unlabelled corpus (one text a line, UTF-8) for task-agnostic / task-transfer distillation.

Only TRAINING texts of the tasks in the shared data folder are used, never dev or test, so that no benchmark's
evaluation text leaks into the corpus:

  glue/SST-2/train.tsv      the `sentence` column (header)
  glue/CoLA/train.tsv       the 4th column (no header)
  glue/STS-B/train.tsv      `sentence1` and `sentence2` (header)
  conll2003/train.txt       each sentence's tokens joined by spaces
  squad/train-v2.0-first10.json   every context split into sentences (a simple regex), and every question

QNLI is left out: only its dev/test files are here, and bench_task_transfer.py fine-tunes on a split of QNLI dev.

Whitespace is normalised (runs of whitespace -> one space, stripped), empty lines dropped, exact duplicates
dropped (the first occurrence is kept, sources in the order above), then the lines are shuffled with
numpy.random.default_rng(seed) and written atomically (temp file + os.replace).

    python benchmarks/build_general_corpus.py --output /tmp/xtremedistil-general-corpus.txt

About a second here: 109,236 texts read, 106,516 lines written (2,720 duplicates dropped; the JSON it prints
has the counts per source).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import data_dir as default_data_dir

DEFAULT_OUTPUT = "/tmp/xtremedistil-general-corpus.txt"
# Sentence boundary: end punctuation (optionally closed by a quote or bracket), whitespace, then a capital (maybe
# after a quote or bracket); not after an initial ("J. P. Morgan", "U.S.") or a few abbreviations ("Mr.", "No.").
# Simple on purpose: other abbreviations may still split a sentence, which does no harm to a corpus.
_NOT_AFTER = ("[A-Z]", "Mr", "Mrs", "Ms", "Dr", "St", "Jr", "Sr", "vs", "No", "Op")
_SENTENCE_END = re.compile(r"(?<=[.!?])" + "".join(rf"(?<!\b{a}\.)" for a in _NOT_AFTER)
                           + r"[\"'\u201d\u2019)\]]*\s+(?=[\"'\u201c\u2018(\[]?[A-Z])")
_WS = re.compile(r"\s+")


class CorpusError(Exception):
    """A source file is missing or malformed, or too few lines result."""


def normalise(text: str) -> str:
    """Whitespace runs (tabs, newlines, non-breaking spaces...) to one space, stripped."""
    return _WS.sub(" ", text).strip()


def split_sentences(text: str) -> list[str]:
    """A context paragraph split into sentences at ., ! or ? followed by whitespace and a capital/digit/quote."""
    return [s for s in (normalise(p) for p in _SENTENCE_END.split(text)) if s]


def _lines(path: Path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            yield line.rstrip("\n").rstrip("\r")


def read_tsv_columns(path: Path, columns: list[str]) -> tuple[list[str], int]:
    """The named columns of a TSV with a header, row by row (columns interleaved per row). Returns (texts, number
    of malformed rows skipped: wrong number of fields)."""
    lines = _lines(path)
    header = next(lines, None)
    if header is None:
        raise CorpusError(f"{path}: empty file (expected a header)")
    names = header.split("\t")
    missing = [c for c in columns if c not in names]
    if missing:
        raise CorpusError(f"{path}: no column(s) {missing} in the header {names}")
    idx = [names.index(c) for c in columns]
    out, bad = [], 0
    for line in lines:
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(names):
            bad += 1
            continue
        out.extend(fields[i] for i in idx)
    return out, bad


def read_cola(path: Path) -> tuple[list[str], int]:
    """CoLA's headerless train file: source, label, original mark, sentence."""
    out, bad = [], 0
    for line in _lines(path):
        if not line.strip():
            continue
        fields = line.split("\t", 3)
        if len(fields) != 4:
            bad += 1
            continue
        out.append(fields[3])
    return out, bad


def read_conll_sentences(path: Path) -> tuple[list[str], int]:
    """CoNLL `word POS tag` lines, blank line between sentences -> one sentence a line (-DOCSTART- skipped)."""
    out, words = [], []
    for line in _lines(path):
        parts = line.split()
        if not parts:
            if words:
                out.append(" ".join(words))
            words = []
            continue
        if parts[0] == "-DOCSTART-":
            continue
        words.append(parts[0])
    if words:
        out.append(" ".join(words))
    return out, 0


def read_squad(path: Path) -> tuple[list[str], list[str]]:
    """(context sentences, questions) of a SQuAD JSON file."""
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    sentences, questions = [], []
    for article in doc.get("data", []):
        for para in article.get("paragraphs", []):
            sentences.extend(split_sentences(para.get("context", "")))
            questions.extend(qa.get("question", "") for qa in para.get("qas", []))
    return sentences, questions


def read_sources(data: Path) -> list[tuple[str, list[str], int]]:
    """(source name, texts, malformed rows) for every source, in the corpus' priority order."""
    data = Path(data)
    paths = {"sst2": data / "glue" / "SST-2" / "train.tsv", "cola": data / "glue" / "CoLA" / "train.tsv",
             "stsb": data / "glue" / "STS-B" / "train.tsv", "conll2003": data / "conll2003" / "train.txt",
             "squad": data / "squad" / "train-v2.0-first10.json"}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise CorpusError("missing source file(s): " + ", ".join(missing))
    out = [("sst2", *read_tsv_columns(paths["sst2"], ["sentence"])),
           ("cola", *read_cola(paths["cola"])),
           ("stsb", *read_tsv_columns(paths["stsb"], ["sentence1", "sentence2"])),
           ("conll2003", *read_conll_sentences(paths["conll2003"]))]
    contexts, questions = read_squad(paths["squad"])
    out += [("squad_context_sentences", contexts, 0), ("squad_questions", questions, 0)]
    return out


def build(sources: list[tuple[str, list[str], int]], seed: int = 0) -> tuple[list[str], dict]:
    """Normalise, drop empty lines and exact duplicates (first occurrence kept, across sources), shuffle.
    Returns (lines, counts per source: read / empty / duplicates / kept / malformed)."""
    seen: set[str] = set()
    lines: list[str] = []
    counts = {}
    for name, texts, malformed in sources:
        c = {"read": len(texts), "empty": 0, "duplicates": 0, "kept": 0, "malformed_rows": malformed}
        for raw in texts:
            text = normalise(raw)
            if not text:
                c["empty"] += 1
            elif text in seen:
                c["duplicates"] += 1
            else:
                seen.add(text)
                lines.append(text)
                c["kept"] += 1
        counts[name] = c
    order = np.random.default_rng(seed).permutation(len(lines))
    return [lines[i] for i in order], counts


def write_lines_atomic(path: str | os.PathLike, lines: list[str]) -> None:
    """One line a text, UTF-8, written atomically (the library's temp file + rename)."""
    from xtremedistil_tf import io
    io.write_text(os.fspath(path), "".join(line + "\n" for line in lines))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", default=str(default_data_dir()), help="the shared data folder (default: %(default)s)")
    p.add_argument("--output", default=DEFAULT_OUTPUT, help="corpus file to write (default: %(default)s)")
    p.add_argument("--min_lines", type=int, default=100_000, help="fail if fewer lines result (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="shuffle seed, numpy default_rng (default: %(default)s)")
    args = p.parse_args(argv)
    try:
        sources = read_sources(Path(args.data_dir))
    except CorpusError as e:
        raise SystemExit(f"build_general_corpus: {e}") from None
    lines, counts = build(sources, seed=args.seed)
    for name, c in counts.items():
        print(f"{name:>24}: read {c['read']:>6}, kept {c['kept']:>6}, duplicates dropped {c['duplicates']:>5}, "
              f"empty {c['empty']}, malformed rows {c['malformed_rows']}", file=sys.stderr)
    if len(lines) < args.min_lines:
        raise SystemExit(f"build_general_corpus: only {len(lines)} lines after deduplication, fewer than "
                         f"--min_lines={args.min_lines}; nothing written to {args.output}")
    write_lines_atomic(args.output, lines)
    summary = {"output": str(args.output), "lines": len(lines),
               "read": sum(c["read"] for c in counts.values()),
               "duplicates_dropped": sum(c["duplicates"] for c in counts.values()),
               "empty_dropped": sum(c["empty"] for c in counts.values()),
               "seed": args.seed, "data_dir": str(args.data_dir), "sources": counts}
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
