"""The cost report of a run (`report.md` + `report.json`): each model's parameters, disk size, measured latency and
throughput and task metric (teacher, student, every int8 export), the teacher / student ratios, every stage's gain
and the labels-only baseline where the run made one.

Latencies are measured here, on this machine: the Keras models in TensorFlow (float, the process' threads), the
exports in their runtimes (`int8.export_int8`, `--deploy_threads`), each at the same fixed length and real rows.
"""
from __future__ import annotations

import dataclasses
import os

from xtremedistil_tf import fs, io
from xtremedistil_tf.deploy.int8 import LATENCY_BATCHES, measure, split_scores
from xtremedistil_tf.deploy.runtimes import tf_runner

REPORT_MD, REPORT_JSON = "report.md", "report.json"


@dataclasses.dataclass
class ModelCost:
    """One row of the report."""
    name: str
    runtime: str
    params: int | None
    bytes: int | None
    latency_ms: dict
    throughput: dict
    scores: dict  # split -> main metric


def keras_cost(name: str, model, *, arrays: dict, length: int, scores: dict, weights_file: str | None,
               min_seconds: float = 1.0) -> ModelCost:
    """A Keras model's row: its parameters, its weights file's size, its TensorFlow float latency at batch 1 and
    32 on `arrays`' rows padded to `length`."""
    import tensorflow as tf
    timing = measure(tf_runner(model), arrays, length, min_seconds=min_seconds)
    size = fs.size(weights_file) if weights_file and fs.exists(weights_file) else None
    params = int(sum(int(tf.size(v)) for v in model.weights))
    threads = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()
    return ModelCost(name, f"tensorflow {tf.__version__} (float32, {threads} threads)", params, size,
                     timing["latency_ms"], timing["throughput"], scores)


def int8_costs(int8: dict | None, *, name: str, params: int | None) -> list[ModelCost]:
    """Rows for every model `export_int8` wrote and scored (`name`: the deployed model's row name)."""
    rows = []
    for runtime, info in sorted((int8 or {}).get("runtimes", {}).items()):
        for variant, m in (info.get("models") or {}).items():
            scores = split_scores(m, int8["metric"])
            rows.append(ModelCost(f"{name} {variant}", f"{runtime} {info['version']}", params, m["bytes"],
                                  m["latency_ms"], m["throughput"], scores))
    tuned = (int8 or {}).get("qat")
    if tuned:
        version = int8["runtimes"][tuned["runtime"]]["version"]
        rows.append(ModelCost(f"{name} {tuned['variant']} after QAT", f"{tuned['runtime']} {version}", params,
                              tuned["bytes"], tuned["latency_ms"], tuned["throughput"],
                              split_scores(tuned, int8["metric"])))
    return rows


def stage_gains(summary: dict | None) -> list[dict]:
    """Each stage's dev/test and its gain over the previous scored stage (points of the main metric)."""
    rows, prev = [], None
    for r in (summary or {}).get("stages", []):
        row = {k: r.get(k) for k in ("stage", "loss", "dev", "test", "seconds")}
        if r.get("dev") is not None:
            row["gain_dev"] = None if prev is None else round((r["dev"] - prev) * 100, 3)
            prev = r["dev"]
        rows.append(row)
    return rows


def build_report(*, title: str, metric: str | None, length: int, models: list[ModelCost], summary: dict | None = None,
                 int8: dict | None = None, baseline: dict | None = None, max_drop: float | None = None,
                 deployed: str = "student") -> dict:
    """report.json's content; `deployed` names the deployed model's row, compared with the teacher's if any."""
    report = {"title": title, "metric": metric, "length": length, "batches": list(LATENCY_BATCHES),
              "models": [dataclasses.asdict(m) for m in models]}
    by_name = {m.name: m for m in models}
    teacher, student = by_name.get("teacher"), by_name.get(deployed)
    if teacher and student:
        report["teacher_over_student"] = {
            "params": _ratio(teacher.params, student.params), "bytes": _ratio(teacher.bytes, student.bytes),
            "speedup": {b: _ratio(teacher.latency_ms.get(b), student.latency_ms.get(b)) for b in student.latency_ms}}
    if summary:
        report["stages"] = stage_gains(summary)
        report["selected_stage"] = (summary.get("selected") or {}).get("stage")
    report["baseline"] = baseline
    if int8:
        report["int8"] = {"threads": int8.get("threads"), "calibration_examples": int8.get("calibration_examples"),
                          "skipped": {r: i["skipped"] for r, i in int8["runtimes"].items() if "skipped" in i},
                          "vs_float": {f"{r} {v}": m["vs_float"] for r, i in int8["runtimes"].items()
                                       for v, m in (i.get("models") or {}).items() if "vs_float" in m}}
        if max_drop is not None:
            report["int8"]["max_drop"] = max_drop
            report["int8"]["over_max_drop"] = over_max_drop(int8, max_drop)
        if int8.get("qat"):
            report["int8"]["qat"] = {k: int8["qat"][k] for k in ("runtime", "variant", "steps", "points_before",
                                                                 "points_vs_float", "recovered")}
    return report


def over_max_drop(int8: dict, max_drop: float, split: str = "dev") -> list[str]:
    """The int8 exports that lose more than `max_drop` points on `split` against their runtime's float model."""
    out = []
    for runtime, info in sorted(int8.get("runtimes", {}).items()):
        for variant, m in (info.get("models") or {}).items():
            points = (m.get("vs_float") or {}).get("points", {}).get(split)
            if points is not None and points < -max_drop:
                out.append(f"{runtime} {variant}")
    return out


def _ratio(a, b):
    return round(a / b, 2) if a and b else None


def _fmt(value, spec=".4f") -> str:
    return "—" if value is None else format(value, spec)


def _mb(n) -> str:
    return "—" if n is None else f"{n / 1e6:.1f}"


def render_markdown(report: dict) -> str:
    """report.md: the report's tables."""
    metric = report.get("metric") or "metric"
    splits = sorted({s for m in report["models"] for s in m["scores"]})
    lines = [f"# {report['title']}", "",
             f"Measured on this machine at {report['length']} tokens a row (real rows, padded); latency is the median "
             "of repeated calls after warm-up.", "",
             "| model | runtime | parameters | disk MB | " + " | ".join(f"{metric} {s}" for s in splits) +
             " | ms batch 1 | ms batch 32 | examples/s batch 32 |",
             "| --- | --- | ---: | ---: | " + " | ".join("---:" for _ in splits) + " | ---: | ---: | ---: |"]
    for m in report["models"]:
        params = "—" if m["params"] is None else f"{m['params'] / 1e6:.2f}M"
        lines.append(f"| {m['name']} | {m['runtime']} | {params} | {_mb(m['bytes'])} | " +
                     " | ".join(_fmt(m["scores"].get(s)) for s in splits) +
                     f" | {_fmt(m['latency_ms'].get('1'), '.2f')} | {_fmt(m['latency_ms'].get('32'), '.1f')} | "
                     f"{_fmt(m['throughput'].get('32'), '.0f')} |")
    ratio = report.get("teacher_over_student")
    if ratio:
        lines += ["", f"Teacher / student: {ratio['params']}x the parameters, {ratio['bytes']}x the disk size, "
                      f"{ratio['speedup'].get('1')}x / {ratio['speedup'].get('32')}x the latency at batch 1 / 32."]
    int8 = report.get("int8")
    if int8:
        lines += ["", f"## int8 against the same runtime's float model ({int8['calibration_examples']} calibration "
                      f"examples, {int8['threads']} thread(s))", "",
                  "| export | points dev | points test | size ratio | speedup batch 1 | speedup batch 32 |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for name, vs in int8["vs_float"].items():
            lines.append(f"| {name} | {_fmt(vs['points'].get('dev'), '+.2f')} | "
                         f"{_fmt(vs['points'].get('test'), '+.2f')} | {vs['size_ratio']}x | "
                         f"{vs['speedup'].get('1')}x | {vs['speedup'].get('32')}x |")
        for runtime, why in int8["skipped"].items():
            lines.append(f"\n{runtime}: skipped ({why}).")
        if int8.get("over_max_drop"):
            lines.append(f"\nLosing more than {int8['max_drop']} point(s) on dev: {', '.join(int8['over_max_drop'])}.")
        tuned = int8.get("qat")
        if tuned:
            after, before = tuned["points_vs_float"], tuned["points_before"]
            lines.append(f"\nQuantization-aware tuning ({tuned['steps']} steps) of {tuned['runtime']} "
                         f"{tuned['variant']}: {_fmt(before.get('dev'), '+.2f')} -> {_fmt(after.get('dev'), '+.2f')} "
                         f"points on dev, {_fmt(before.get('test'), '+.2f')} -> {_fmt(after.get('test'), '+.2f')} on "
                         f"test against the float file: {'recovered' if tuned['recovered'] else 'not recovered'}.")
    if report.get("stages"):
        lines += ["", "## Stages", "", f"| stage | loss | {metric} dev | {metric} test | gain dev (points) | seconds |",
                  "| ---: | --- | ---: | ---: | ---: | ---: |"]
        for r in report["stages"]:
            mark = " *" if r["stage"] == report.get("selected_stage") else ""
            lines.append(f"| {r['stage']}{mark} | {r['loss']} | {_fmt(r['dev'])} | {_fmt(r['test'])} | "
                         f"{_fmt(r.get('gain_dev'), '+.2f')} | {_fmt(r['seconds'], '.0f')} |")
        lines.append("\n`*`: the selected stage (the student above).")
    baseline = report.get("baseline")
    lines += ["", "Labels-only baseline: " + (", ".join(f"{k} {_fmt(v)}" for k, v in baseline.items())
                                             if baseline else "none (this run trained no student on labels alone).")]
    return "\n".join(lines) + "\n"


def write_report(folder: str, report: dict) -> None:
    """report.json and report.md in `folder`, each written atomically."""
    io.write_json(fs.join(folder, REPORT_JSON), report)
    io.write_text(fs.join(folder, REPORT_MD), render_markdown(report))
