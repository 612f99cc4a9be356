"""The int8 deployment table: for each run given, every runtime's int8 exports against the same runtime's float
student (metric difference, size ratio, batch-1 / batch-32 latency ratio), from the `int8` section its
metrics.json holds (written by run_distillation.py / run_glue.py --export_int8).

    python benchmarks/int8_table.py --runs reference=/tmp/ref-int8/run minilm_sst2=/tmp/glue-sst2-int8 \
        --out benchmarks/results/int8.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def rows_of(name: str, metrics: dict) -> list[dict]:
    """One row per runtime and variant of a run's int8 results."""
    from xtremedistil_tf.deploy.int8 import split_scores
    int8 = metrics["int8"]
    metric = int8["metric"]
    out = []
    for runtime, info in sorted(int8["runtimes"].items()):
        if "skipped" in info:
            out.append({"run": name, "runtime": runtime, "skipped": info["skipped"]})
            continue
        base = info["models"]["float"]
        for variant, m in info["models"].items():
            row = {"run": name, "runtime": f"{runtime} {info['version']}", "variant": variant, "metric": metric,
                   "scores": split_scores(m, metric),
                   "mb": round(m["bytes"] / 1e6, 2), "latency_ms": m["latency_ms"]}
            if variant != "float":
                row["points"] = m["vs_float"]["points"]
                row["size_ratio"] = m["vs_float"]["size_ratio"]
                row["speedup"] = m["vs_float"]["speedup"]
            else:
                row["float_ms"] = base["latency_ms"]
            out.append(row)
    return out


def markdown(rows: list[dict], split: str) -> str:
    lines = [f"| run | runtime | model | {split} | vs float (points) | MB | size ratio | ms batch 1 | ms batch 32 | "
             "speedup batch 1 | speedup batch 32 |", "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | "
                                                     "---: | ---: |"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['run']} | {r['runtime']} | skipped: {r['skipped']} | | | | | | | | |")
            continue
        points = r.get("points", {}).get(split)
        lines.append(f"| {r['run']} | {r['runtime']} | {r['variant']} | {r['scores'].get(split, float('nan')):.4f} | "
                     f"{'' if points is None else f'{points:+.2f}'} | {r['mb']} | "
                     f"{r.get('size_ratio', '')}{'x' if 'size_ratio' in r else ''} | {r['latency_ms']['1']:.2f} | "
                     f"{r['latency_ms']['32']:.1f} | {r.get('speedup', {}).get('1', '')}"
                     f"{'x' if 'speedup' in r else ''} | {r.get('speedup', {}).get('32', '')}"
                     f"{'x' if 'speedup' in r else ''} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", nargs="+", required=True, help="name=folder holding metrics.json")
    p.add_argument("--split", default="test", help="the split of the table (the others are in the JSON)")
    p.add_argument("--out", default="", help="write the rows as JSON here")
    args = p.parse_args()
    rows = []
    for item in args.runs:
        name, folder = item.split("=", 1)
        with open(os.path.join(folder, "metrics.json")) as f:
            metrics = json.load(f)
        rows += rows_of(name, metrics)
    print(markdown(rows, args.split))
    if args.out:
        from xtremedistil_tf import io
        io.write_json(args.out, {"runs": dict(r.split("=", 1) for r in args.runs), "rows": rows})


if __name__ == "__main__":
    main()
