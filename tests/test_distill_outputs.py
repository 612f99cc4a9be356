"""The end-of-run outputs without a run: the summary table (log and metrics.json) and the loss picture."""
import json
import logging
import struct

import pytest

from xtremedistil_tf.distill import outputs
from xtremedistil_tf.distill.plots import DPI, FIGSIZE, plot_run, stage_spans, use_log_scale
from xtremedistil_tf.distill.run_folder import RunFolder

PLAN = [("representation", ["student", "dense"], 3), ("logits", ["head"], 2),
        ("logits", ["head", "transformer_layer_0"], 3), ("labels", ["head"], 2),
        ("labels", ["head", "transformer_layer_0"], 2)]
OLD_KEYS = {"teacher", "selected_stage", "final", "stages", "histories", "mode", "wall_time_total"}


def _state(plan=PLAN, scored=True):
    """A run's state as runner.run_stages leaves it: every stage's record with its per-epoch history."""
    stages = {}
    for i, (loss, trainable, epochs) in enumerate(plan, 1):
        top = 30.0 if loss == "representation" else 0.7
        bottom = 0.3 if loss == "representation" else 0.4
        losses = [top * (bottom / top) ** (j / (epochs - 1)) for j in range(epochs)]
        record = {"loss": loss, "trainable": trainable, "wall_time": 10.0 + i, "phase_best": 0.5,
                  "history": [{"chunk": 0, "epoch": j, "loss": v, "score": 0.5, "seconds": 1.0}
                              for j, v in enumerate(losses)],
                  "train_loss_before": losses[0] * 1.1, "train_loss_after": losses[-1]}
        if scored and loss != "representation":
            record["dev"] = {"accuracy": 0.70 + 0.01 * i, "f1": 0.5}
            record["test"] = {"accuracy": 0.60 + 0.01 * i, "f1": 0.4}
        stages[str(i)] = record
    teacher = {"dev": {"accuracy": 0.9, "f1": 0.8}, "test": {"accuracy": 0.85, "f1": 0.7}} if scored else {}
    selected = {"stage": 4, "split": "dev", "metric": "accuracy", "score": 0.74} if scored else None
    return {"teacher": teacher, "stages": stages, "selected": selected}


def _metrics(scored=True):
    final = {"dev": {"accuracy": 0.74}, "test": {"accuracy": 0.64}} if scored else {}
    return outputs.run_metrics(_state(scored=scored), final, "default")


def test_summary_has_one_row_per_stage():
    metrics = _metrics()
    assert OLD_KEYS <= set(metrics) and set(metrics) - OLD_KEYS == {"summary"}  # the old keys stay as they were
    summary = metrics["summary"]
    assert summary["metric"] == "accuracy"
    assert summary["selected"] == metrics["selected_stage"]
    rows = summary["stages"]
    assert [r["stage"] for r in rows] == list(range(1, len(PLAN) + 1))
    for row, (loss, trainable, epochs) in zip(rows, PLAN):
        info = metrics["stages"][str(row["stage"])]
        assert set(row) == {"stage", "loss", "trainable", "epochs", "train_loss_before", "train_loss_after", "dev",
                            "test", "seconds"}
        assert (row["loss"], row["trainable"], row["epochs"]) == (loss, trainable, epochs)
        assert row["train_loss_before"] == info["train_loss_before"]
        assert row["train_loss_after"] == info["train_loss_after"]
        assert row["seconds"] == info["wall_time"]
        if loss == "representation":
            assert row["dev"] is None and row["test"] is None
        else:
            assert row["dev"] == info["dev"]["accuracy"] and row["test"] == info["test"]["accuracy"]


def test_log_holds_every_stage(caplog):
    metrics = _metrics()
    with caplog.at_level(logging.INFO, logger="absl"):
        outputs.log_summary(metrics)
    text = caplog.text
    table = next(r.getMessage() for r in caplog.records if "run summary" in r.getMessage())
    lines = table.splitlines()[1:]
    assert lines[0].split()[:3] == ["stage", "loss", "trained"]
    assert len(lines) == 1 + len(PLAN)
    for line, (i, (loss, trainable, epochs)) in zip(lines[1:], enumerate(PLAN, 1)):
        cells = line.split()
        assert cells[:4] == [("*" if i == 4 else "") + str(i), loss, "+".join(trainable), str(epochs)]
        assert cells[-1] == f"{10.0 + i:.1f}"
    assert "0.7400" in lines[4] and "0.6400" in lines[4]  # stage 4's dev and test accuracy
    assert "selected: stage 4 (dev accuracy 0.7400)" in text
    assert "teacher: dev accuracy 0.9000 f1 0.8000" in text


def test_task_agnostic_run_has_empty_scores(tmp_path, caplog):
    metrics = outputs.run_metrics(_state(PLAN[:1], scored=False), {}, "default")
    summary = metrics["summary"]
    assert summary["metric"] is None and summary["selected"] is None
    assert [(r["stage"], r["dev"], r["test"]) for r in summary["stages"]] == [(1, None, None)]
    with caplog.at_level(logging.INFO, logger="absl"):
        outputs.log_summary(metrics)
    assert "student+dense" in caplog.text and "selected: none" in caplog.text
    written = plot_run(metrics, str(tmp_path))
    assert [p.split("/")[-1] for p in written] == ["stage_losses.png"]


def test_metrics_json_gets_the_summary_and_the_plots(tmp_path):
    metrics = _metrics()
    outputs.write_metrics(RunFolder(str(tmp_path), chief=True), metrics)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["summary"] == json.loads(json.dumps(metrics["summary"]))
    assert len(saved["summary"]["stages"]) == len(PLAN) and saved["summary"]["selected"]["stage"] == 4
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["stage_losses.png", "stage_scores.png"]


def _png_size(path):
    data = open(path, "rb").read(32)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_plot_is_one_readable_png_per_name(tmp_path):
    written = plot_run(_metrics(), str(tmp_path))
    assert [p.split("/")[-1] for p in written] == ["stage_losses.png", "stage_scores.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage_losses.png", "stage_scores.png"]  # no leftovers
    assert _png_size(written[0]) == (round(FIGSIZE[0] * DPI), round(FIGSIZE[1] * DPI))
    assert _png_size(written[1])[0] > 0


def test_stage_spans_put_the_run_on_one_axis():
    spans = stage_spans(_metrics())
    assert [(s["stage"], s["start"], s["end"]) for s in spans] == [(1, 0, 3), (2, 3, 5), (3, 5, 8), (4, 8, 10),
                                                                     (5, 10, 12)]
    assert spans[1]["x"] == [4, 5] and spans[1]["y"] == pytest.approx([0.7, 0.4])


@pytest.mark.parametrize("values, log", [
    ([30.0, 3.0, 0.7, 0.4, 0.3], True),     # representation 30 -> 0.3, logits 0.7 -> 0.4: 2 decades
    ([30.0, 0.25], True),
    ([3.0, 0.1], False),                    # 1.5 decades
    ([1.0, 1e-7], True),
    ([0.7, 0.4, 0.35, 0.2], False),         # one decade or less: linear
    ([0.5, 0.0, -1.0, float("nan"), None, 0.4], False),  # nonpositive and missing values do not count
    ([5.0], False),
    ([], False),
])
def test_log_scale_when_losses_span_decades(values, log):
    assert use_log_scale(values) is log
