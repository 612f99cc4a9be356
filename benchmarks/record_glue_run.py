"""Copies a finished run_glue.py run's metrics.json into benchmarks/results/glue_<task>.json, with the exact command,
its wall time and the machine.

  python benchmarks/record_glue_run.py --output_dir runs/cola --wall_seconds 512 --command "python run_glue.py ..." \
      [--note "trained on a 3,000-example sample"]
"""
import argparse
import json
import os
import platform


def machine() -> str:
    import tensorflow as tf
    return (f"{platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}, TF {tf.__version__}; "
            "shared with other jobs")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output_dir", required=True)
    p.add_argument("--command", required=True)
    p.add_argument("--wall_seconds", type=float, required=True)
    p.add_argument("--note", default="")
    p.add_argument("--results_dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    a = p.parse_args()
    with open(os.path.join(a.output_dir, "metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    if not metrics.get("finished"):
        raise SystemExit(f"{a.output_dir}: the run is not finished")
    # wall_seconds: the whole command (start-up included); run_wall_seconds: run_glue's own measure.
    record = {"command": a.command, "wall_seconds": a.wall_seconds, "machine": machine(), "note": a.note,
              "dev": metrics["final"]["dev"], "run_wall_seconds": metrics["wall_seconds"],
              **{k: v for k, v in metrics.items() if k != "wall_seconds"}}
    os.makedirs(a.results_dir, exist_ok=True)
    path = os.path.join(a.results_dir, f"glue_{metrics['task']}.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2, sort_keys=False)
        f.write("\n")
    print(path)


if __name__ == "__main__":
    main()
