"""The cost report (deploy/report.py, deploy/outputs.py): rows for teacher, model and every int8 export with their
measured numbers, the teacher / student ratios, stage gains, int8 losses beyond --int8_max_drop, and report.md."""
import json

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402

from xtremedistil_tf.deploy.config import DeployOptions  # noqa: E402
from xtremedistil_tf.deploy.outputs import Reference, random_rows, write_deployment  # noqa: E402
from xtremedistil_tf.deploy.report import (  # noqa: E402
    REPORT_JSON,
    REPORT_MD,
    build_report,
    int8_costs,
    keras_cost,
    over_max_drop,
    render_markdown,
    stage_gains,
)
from xtremedistil_tf.models.encoder import INPUT_NAMES, Encoder  # noqa: E402
from xtremedistil_tf.models.heads import TaskModel  # noqa: E402


def _model(hidden, layers, seed):
    keras.utils.set_random_seed(seed)
    enc = Encoder(vocab_size=120, hidden_size=hidden, num_layers=layers, num_heads=2, intermediate_size=2 * hidden,
                  max_position_embeddings=32, initializer_range=0.2)
    model = TaskModel(enc, 2)
    model({k: tf.ones((1, 4), tf.int32) for k in INPUT_NAMES}, training=False)
    return model


def _arrays(n=12, width=10):
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 120, (n, width)).astype(np.int32)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


def _int8(points_dev=-0.5):
    model = {"bytes": 400, "latency_ms": {"1": 1.0, "32": 10.0}, "throughput": {"1": 1000.0, "32": 3200.0},
             "dev": {"accuracy": 0.8}, "test": {"accuracy": 0.7}}
    return {"metric": "accuracy", "threads": 1, "calibration_examples": 8, "runtimes": {
        "onnxruntime": {"version": "1.0", "models": {
            "float": {**model, "bytes": 1600, "latency_ms": {"1": 2.0, "32": 30.0}},
            "int8-dynamic": {**model, "vs_float": {"points": {"dev": points_dev, "test": 0.0}, "size_ratio": 4.0,
                                                   "speedup": {"1": 2.0, "32": 3.0}}}}},
        "litert": {"skipped": "not installed: ai_edge_litert"}}}


def test_keras_cost_measures_the_model():
    model = _model(16, 1, 0)
    row = keras_cost("student", model, arrays=_arrays(), length=16, scores={"dev": 0.5}, weights_file=None,
                     min_seconds=0.0)
    assert row.params == sum(int(np.prod(v.shape)) for v in model.weights)
    assert row.bytes is None and row.scores == {"dev": 0.5}
    assert set(row.latency_ms) == {"1", "32"} and all(v > 0 for v in row.latency_ms.values())
    assert row.throughput["32"] == pytest.approx(32 / (row.latency_ms["32"] / 1000), rel=0.01)


def test_report_rows_ratios_and_int8_losses():
    int8 = _int8(points_dev=-1.5)
    rows = int8_costs(int8, name="student", params=100)
    assert [(r.name, r.bytes, r.scores) for r in rows] == [
        ("student float", 1600, {"dev": 0.8, "test": 0.7}), ("student int8-dynamic", 400, {"dev": 0.8, "test": 0.7})]
    assert over_max_drop(int8, 1.0) == ["onnxruntime int8-dynamic"] and over_max_drop(int8, 2.0) == []
    teacher = rows[0].__class__("teacher", "tf", 400, 4000, {"1": 4.0, "32": 80.0}, {}, {"dev": 0.9})
    student = rows[0].__class__("student", "tf", 100, 1000, {"1": 2.0, "32": 20.0}, {}, {"dev": 0.8})
    summary = {"stages": [{"stage": 1, "loss": "representation", "dev": None, "test": None, "seconds": 3.0},
                          {"stage": 2, "loss": "logits", "dev": 0.70, "test": 0.6, "seconds": 2.0},
                          {"stage": 3, "loss": "labels", "dev": 0.75, "test": 0.7, "seconds": 2.0}],
               "selected": {"stage": 3}}
    report = build_report(title="t", metric="accuracy", length=16, models=[teacher, student, *rows],
                          summary=summary, int8=int8, max_drop=1.0)
    assert report["teacher_over_student"] == {"params": 4.0, "bytes": 4.0, "speedup": {"1": 2.0, "32": 4.0}}
    assert [r.get("gain_dev") for r in report["stages"]] == [None, None, pytest.approx(5.0)]
    assert report["int8"]["over_max_drop"] == ["onnxruntime int8-dynamic"]
    assert report["int8"]["skipped"] == {"litert": "not installed: ai_edge_litert"}
    md = render_markdown(report)
    assert md.count("\n| student") == 3 and "\n| teacher | tf | 0.00M | 0.0 | 0.9000 |" in md
    assert "| onnxruntime int8-dynamic | -1.50 | +0.00 | 4.0x | 2.0x | 3.0x |" in md
    assert "| 3 * | labels | 0.7500 | 0.7000 | +5.00 |" in md
    assert "litert: skipped (not installed: ai_edge_litert)" in md
    assert "Losing more than 1.0 point(s) on dev: onnxruntime int8-dynamic" in md
    assert stage_gains(None) == []


def test_write_deployment_writes_the_report_of_teacher_and_model(tmp_path):
    teacher, model = _model(32, 2, 1), _model(16, 1, 2)
    weights = tmp_path / "student.weights.h5"
    model.save_weights(str(weights))
    options = DeployOptions(latency_seconds=0.0)
    out = write_deployment(options, str(tmp_path), model=model, name="student", length=16, num_labels=2,
                           token_level=False, calibration=_arrays(), splits={"dev": _arrays()},
                           score=lambda s, logits: {"accuracy": 0.5}, metric="accuracy", scores={"dev": 0.5},
                           weights_file=str(weights), references=(Reference("teacher", teacher, {"dev": 0.9}, None),))
    assert "int8" not in out and out["report"]["file"] == REPORT_MD  # --export_int8 is off by default
    report = json.loads((tmp_path / REPORT_JSON).read_text())
    assert [m["name"] for m in report["models"]] == ["teacher", "student"]
    assert report["models"][1]["bytes"] == weights.stat().st_size
    params = [m["params"] for m in report["models"]]
    assert report["teacher_over_student"]["params"] == pytest.approx(params[0] / params[1], abs=0.01)
    assert (tmp_path / REPORT_MD).read_text() == render_markdown(report)


def test_random_rows_are_seeded_and_in_order():
    arrays = {k: np.arange(20).reshape(10, 2) for k in INPUT_NAMES}
    a, b = random_rows(arrays, 4, seed=3), random_rows(arrays, 4, seed=3)
    assert all(np.array_equal(a[k], b[k]) for k in INPUT_NAMES)
    rows = a["input_ids"][:, 0] // 2
    assert len(set(rows)) == 4 and list(rows) == sorted(rows)
    assert len(random_rows(arrays, 50, seed=0)["input_ids"]) == 10  # never more rows than there are
