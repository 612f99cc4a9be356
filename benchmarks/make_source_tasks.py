"""Extra source tasks for multi-source task transfer (run_distillation.py --source_tasks), cut from the shared data:

  <out>/CoLA     a GLUE CoLA folder (read with `:cola`, scored by MCC): train.tsv = a sample of GLUE CoLA train's rows
                 (numpy default_rng(seed)), dev.tsv = GLUE CoLA dev, whole (there is no labelled test)
  <out>/conll    a CoNLL folder: train.txt = a sample of CoNLL-2003 train sentences, dev.txt and test.txt whole

Only training rows are sampled; dev and test are copied as they are. Files are written atomically.

    python benchmarks/make_source_tasks.py --output /tmp/tt/sources --train_examples 3000
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import data_dir as default_data_dir


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _cola_rows(path: Path) -> list[str]:
    """The rows of a GLUE CoLA file (no header: source, label, original mark, sentence), checked."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if len(line.split("\t")) != 4:
            raise SystemExit(f"{path}:{number}: expected 4 tab-separated columns, found {len(line.split(chr(9)))}")
        rows.append(line + "\n")
    return rows


def _conll_sentences(path: Path) -> list[str]:
    """The sentences of a CoNLL file, each its lines and a blank line."""
    blocks = path.read_text(encoding="utf-8").strip().split("\n\n")
    return [block.strip() + "\n\n" for block in blocks if block.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True)
    parser.add_argument("--data_dir", default=str(default_data_dir()))
    parser.add_argument("--train_examples", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data, out = Path(args.data_dir), Path(args.output)
    counts = {}

    train = _cola_rows(data / "glue" / "CoLA" / "train.tsv")
    pick = np.sort(np.random.default_rng(args.seed).permutation(len(train))[:args.train_examples])
    _write(out / "CoLA" / "train.tsv", "".join(train[i] for i in pick))
    dev = _cola_rows(data / "glue" / "CoLA" / "dev.tsv")
    _write(out / "CoLA" / "dev.tsv", "".join(dev))
    counts["CoLA"] = {"train": len(pick), "of": len(train), "dev": len(dev)}

    train = _conll_sentences(data / "conll2003" / "train.txt")
    pick = np.sort(np.random.default_rng(args.seed).permutation(len(train))[:args.train_examples])
    _write(out / "conll" / "train.txt", "".join(train[i] for i in pick))
    counts["conll"] = {"train": len(pick), "of": len(train)}
    for split in ("dev", "test"):
        sentences = _conll_sentences(data / "conll2003" / f"{split}.txt")
        _write(out / "conll" / f"{split}.txt", "".join(sentences))
        counts["conll"][split] = len(sentences)
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
