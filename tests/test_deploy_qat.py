"""Quantization-aware tuning for LiteRT full-integer int8 (deploy/qat.py): the layer-norm simulation computes Keras'
LayerNorm exactly when not rounding and rounds each tensor to 8 bits when on; tuning works on a copy, lowers its
loss and brings the simulated model's logits towards the float ones; its LiteRT file is written, re-scored and
compared with the float file, and the cost report shows it."""
import json

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402
from deploy_helpers import padded_inputs  # noqa: E402

from xtremedistil_tf.deploy import qat  # noqa: E402
from xtremedistil_tf.deploy.int8 import export_int8, load_exported, pad_to, padding_bias_set_to, predict  # noqa: E402
from xtremedistil_tf.deploy.report import build_report, int8_costs, render_markdown  # noqa: E402
from xtremedistil_tf.models.encoder import INPUT_NAMES, Encoder  # noqa: E402
from xtremedistil_tf.models.heads import TaskModel  # noqa: E402

VOCAB, LENGTH, LABELS = 300, 16, 3


def _task_model(seed=0):
    keras.utils.set_random_seed(seed)
    enc = Encoder(vocab_size=VOCAB, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                  max_position_embeddings=32, initializer_range=0.2)
    model = TaskModel(enc, LABELS, kind="classification")
    model({k: tf.ones((1, 4), tf.int32) for k in INPUT_NAMES}, training=False)
    return model


def _inputs(n, seed):
    return padded_inputs(n, LENGTH, VOCAB, seed)


def _logits(model, arrays):
    return model({k: tf.constant(arrays[k]) for k in INPUT_NAMES}, training=False)["logits"].numpy()


def test_the_simulation_computes_keras_layer_norm_and_rounds_each_tensor_to_8_bits():
    model = _task_model()
    rows = _inputs(24, 1)
    reference = _logits(model, rows)
    sim = qat.LayerNormSimulation(model)
    assert len(sim.layers) == 1 + 2 * 2  # embeddings, and attention + output in each block
    with pytest.raises(RuntimeError, match="calibrate"):
        sim.__enter__()
    sim.calibrate(model, rows)
    assert len(sim.ranges) == len(sim.layers) * len(sim.POINTS)
    with sim._active("record"):  # the decomposition without rounding is Keras' LayerNorm
        np.testing.assert_allclose(_logits(model, rows), reference, atol=1e-5)
    layer = sim.layers[0]
    x = tf.random.normal((4, LENGTH, 32), seed=0)
    with sim:
        rounded = layer(x).numpy()
        simulated = _logits(model, rows)
    lo, hi = sim.ranges[(layer.path, "out")]
    step = (max(hi, 0) - min(lo, 0)) / 255
    grid = (rounded - rounded.min()) / step  # on an 8-bit grid over the output's range (zero on it)
    np.testing.assert_allclose(grid, np.round(grid), atol=1e-2)
    assert len(np.unique(rounded)) <= 256
    assert not np.allclose(simulated, reference, atol=1e-6)  # rounding changes the logits
    np.testing.assert_allclose(_logits(model, rows), reference, atol=1e-6)  # and leaving restores the layers


def test_tuning_works_on_a_copy_and_brings_the_simulated_logits_to_the_float_ones():
    model = _task_model()
    for layer in qat.LayerNormSimulation(model).layers:  # an outlier dimension in the residual stream, as BERT's
        beta = layer.beta.numpy()
        beta[0] = 60.0
        layer.beta.assign(beta)
    before = [w.copy() for w in model.get_weights()]
    rows, calibration = _inputs(64, 2), _inputs(32, 3)
    bias = -50.0
    tuned, stats = qat.quantization_aware_tune(model, rows=rows, calibration=calibration, steps=40,
                                               learning_rate=1e-3, padding_bias=bias, batch_size=16, seed=0)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)  # the float model is untouched
    assert tuned is not model and stats["steps"] == 40
    assert stats["loss_last_steps"] < stats["loss_first_steps"]

    def simulated(m):
        sim = qat.LayerNormSimulation(m)
        with padding_bias_set_to(m, bias):
            sim.calibrate(m, calibration)
            with sim:
                return _logits(m, rows)

    with padding_bias_set_to(model, bias):
        target = _logits(model, rows)
    untuned, after = simulated(qat.copy_model(model)), simulated(tuned)
    # measured: 8.0e-4 before, 4.1e-5 after
    assert np.mean((after - target) ** 2) < 0.25 * np.mean((untuned - target) ** 2)


def test_recover_with_qat_writes_rescores_and_reports_the_tuned_litert_file(tmp_path):
    pytest.importorskip("tf2onnx")
    model = _task_model()
    splits = {"dev": _inputs(24, 4), "test": _inputs(24, 5)}
    labels = {s: _logits(model, pad_to(a, LENGTH)).argmax(-1) for s, a in splits.items()}
    calls = []

    def score(split, logits):
        calls.append(split)
        return {"accuracy": float(np.mean(logits.argmax(-1) == labels[split]))}

    calibration = _inputs(16, 6)
    int8 = export_int8(model, str(tmp_path / "int8"), length=LENGTH, num_labels=LABELS, token_level=False,
                       calibration=calibration, splits=splits, score=score, metric="accuracy", min_seconds=0.0,
                       runtimes=("litert",))
    calls.clear()
    result = qat.recover_with_qat(model, str(tmp_path), int8, steps=4, learning_rate=1e-4, max_drop=1.0,
                                  tuning=_inputs(48, 7), calibration=calibration, splits=splits, score=score,
                                  seed=0, threads=1, min_seconds=0.0, token_level=False)
    folder = tmp_path / qat.QAT_DIR
    manifest = json.loads((folder / "manifest.json").read_text())
    assert sorted(manifest["files"]) == ["student.int8-full.tflite"] == [result["file"]]
    run, _ = load_exported(str(folder), result["file"])
    logits = {s: predict(run, a, LENGTH, token_level=False) for s, a in splits.items()}
    for s in splits:  # re-scored from the tuned file's own outputs, compared with the float file's scores
        assert result[s]["accuracy"] == pytest.approx(np.mean(logits[s].argmax(-1) == labels[s]))
        float_score = int8["runtimes"]["litert"]["models"]["float"][s]["accuracy"]
        assert result["points_vs_float"][s] == pytest.approx((result[s]["accuracy"] - float_score) * 100, abs=1e-3)
    assert sorted(calls) == ["dev", "test"]
    assert result["recovered"] == (result["points_vs_float"]["dev"] >= -1.0)
    int8["qat"] = result
    rows = int8_costs(int8, name="student", params=1)
    assert rows[-1].name == "student int8-full after QAT" and rows[-1].bytes == result["bytes"]
    report = build_report(title="t", metric="accuracy", length=LENGTH, models=rows, int8=int8, max_drop=1.0)
    assert report["int8"]["qat"]["steps"] == 4
    assert "Quantization-aware tuning (4 steps) of litert int8-full" in render_markdown(report)
