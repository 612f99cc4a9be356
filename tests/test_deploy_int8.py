"""int8 exports (deploy/int8.py, deploy/runtimes.py): a tiny student written in ONNX Runtime and LiteRT, float and
int8, loads and runs in each runtime; the re-scored metrics are the runtime's own outputs scored again; a changed,
corrupted or mismatched file is refused with a message naming it; a runtime that is not installed is skipped."""
import json
import shutil

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")
pytest.importorskip("onnxruntime")
import keras  # noqa: E402
from deploy_helpers import padded_inputs  # noqa: E402

from xtremedistil_tf.deploy import runtimes  # noqa: E402
from xtremedistil_tf.deploy.int8 import MANIFEST, export_int8, load_exported, pad_to, predict  # noqa: E402
from xtremedistil_tf.errors import UserError  # noqa: E402
from xtremedistil_tf.models.encoder import INPUT_NAMES, Encoder  # noqa: E402
from xtremedistil_tf.models.heads import TaskModel  # noqa: E402

VOCAB, LENGTH, LABELS = 400, 16, 3
VARIANTS = {"onnxruntime": {"float", "int8-dynamic", "int8-static"}, "litert": {"float", "int8-dynamic", "int8-full"}}


def _task_model(kind="classification", num_labels=LABELS, seed=0):
    keras.utils.set_random_seed(seed)
    enc = Encoder(vocab_size=VOCAB, hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128,
                  max_position_embeddings=32, initializer_range=0.2)
    model = TaskModel(enc, num_labels, kind=kind)
    model({k: tf.ones((1, 4), tf.int32) for k in INPUT_NAMES}, training=False)
    return model


def _inputs(n, width, seed):
    return padded_inputs(n, width, VOCAB, seed)


def _tf_logits(model, arrays):
    out = model({k: tf.constant(pad_to(arrays, LENGTH)[k]) for k in INPUT_NAMES}, training=False)["logits"]
    return out.numpy()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny 3-class student exported by export_int8, its splits, their labels and every call of the scorer."""
    model = _task_model()
    splits = {"dev": _inputs(40, 12, 1), "test": _inputs(40, LENGTH, 2)}  # dev narrower than the exported length
    labels = {s: _tf_logits(model, a).argmax(-1) for s, a in splits.items()}  # labels the float model gets right
    labels["dev"][::4] = (labels["dev"][::4] + 1) % LABELS  # and some it gets wrong
    calls = []

    def score(split, logits):
        calls.append((split, logits))
        return {"accuracy": float(np.mean(logits.argmax(-1) == labels[split]))}

    folder = tmp_path_factory.mktemp("int8") / "int8"
    result = export_int8(model, str(folder), length=LENGTH, num_labels=LABELS, token_level=False,
                         calibration=_inputs(32, LENGTH, 3), splits=splits, score=score, metric="accuracy",
                         min_seconds=0.0)
    return {"model": model, "folder": folder, "result": result, "splits": splits, "labels": labels, "calls": calls}


def test_every_runtime_writes_float_and_int8_files_that_load_and_run(exported):
    result, folder = exported["result"], exported["folder"]
    assert {r: set(info["models"]) for r, info in result["runtimes"].items()} == VARIANTS
    written = sorted(p.name for p in folder.iterdir())
    assert written == sorted([MANIFEST] + list(result["files"]))
    assert json.loads((folder / MANIFEST).read_text())["files"] == result["files"]
    for name, entry in result["files"].items():
        assert entry["bytes"] == (folder / name).stat().st_size
        run, _ = load_exported(str(folder), name)
        logits = predict(run, exported["splits"]["test"], LENGTH, token_level=False)
        assert logits.shape == (40, LABELS) and np.all(np.isfinite(logits))
    for info in result["runtimes"].values():
        models = info["models"]
        for variant in models:
            assert set(models[variant]["latency_ms"]) == {"1", "32"} and min(models[variant]["latency_ms"].values()) > 0
            if variant != "float":
                assert models[variant]["bytes"] < 0.6 * models["float"]["bytes"]  # int8 weights: smaller files


def test_onnx_int8_files_hold_every_dense_kernel_in_int8(exported):
    """Every weight matrix (Dense kernels, the embedding tables) is stored in 8 bits in both ONNX int8 files (int8;
    uint8 where the dynamic quantizer picks it for a Gather): the float32 initializers left are vectors."""
    import onnx
    for variant in ("int8-dynamic", "int8-static"):
        model = onnx.load(str(exported["folder"] / f"student.{variant}.onnx"))
        matrices = {}
        for t in model.graph.initializer:
            if len(t.dims) == 2 and min(t.dims) >= 16:
                matrices.setdefault(t.data_type, []).append(t.name)
        assert set(matrices) <= {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}, \
            (variant, {k: v[:3] for k, v in matrices.items()})


def test_rescored_metrics_are_the_runtimes_own_outputs_scored_again(exported):
    result, folder, splits, labels = (exported[k] for k in ("result", "folder", "splits", "labels"))
    float_tf = {s: _tf_logits(exported["model"], a) for s, a in splits.items()}
    seen_int8_difference = False
    for name, entry in result["files"].items():
        run, _ = load_exported(str(folder), name)
        reported = result["runtimes"][entry["runtime"]]["models"][entry["variant"]]
        for split, arrays in splits.items():
            logits = predict(run, arrays, LENGTH, token_level=False)
            assert reported[split]["accuracy"] == pytest.approx(np.mean(logits.argmax(-1) == labels[split]))
            # the scorer was given exactly these logits (the runtime's, not the float model's)
            assert any(s == split and np.array_equal(seen, logits) for s, seen in exported["calls"])
            gap = np.abs(logits - float_tf[split]).max()
            scale = np.abs(float_tf[split]).max()
            if entry["variant"] == "float":
                assert gap < 1e-4 * scale, (name, gap, scale)
            elif entry["variant"] == "int8-dynamic":  # int8 weights alone keep the logits near the float model's
                assert gap < 0.25 * scale, (name, gap, scale)
                seen_int8_difference |= gap > 1e-4 * scale
        if entry["variant"] != "float":
            vs = reported["vs_float"]
            base = result["runtimes"][entry["runtime"]]["models"]["float"]
            for split in splits:
                assert vs["points"][split] == pytest.approx(100 * (reported[split]["accuracy"] -
                                                                   base[split]["accuracy"]), abs=1e-3)
            assert vs["size_ratio"] == pytest.approx(base["bytes"] / reported["bytes"], abs=0.01)
    assert seen_int8_difference  # int8 files compute something else than the float model: they are quantized


def test_a_changed_or_corrupted_file_is_refused(exported, tmp_path):
    folder = tmp_path / "int8"
    shutil.copytree(exported["folder"], folder)
    onnx_name = "student.int8-dynamic.onnx"
    data = bytearray((folder / onnx_name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / onnx_name).write_bytes(bytes(data))
    with pytest.raises(UserError, match=f"{onnx_name}: changed since it was written"):
        load_exported(str(folder), onnx_name)
    with pytest.raises(UserError, match="not listed in"):
        load_exported(str(folder), "student.other.onnx")
    with pytest.raises(UserError, match="no manifest.json"):
        load_exported(str(tmp_path), onnx_name)
    for runtime, suffix in (("onnxruntime", ".onnx"), ("litert", ".tflite")):
        broken = tmp_path / f"broken{suffix}"
        broken.write_bytes(b"\x00garbage" * 64)
        with pytest.raises(UserError, match=f"broken{suffix}: not a loadable"):
            runtimes.RUNTIMES[runtime].load(str(broken), threads=1, num_labels=LABELS, token_level=False)


@pytest.mark.parametrize("runtime, name", [("onnxruntime", "student.float.onnx"),
                                           ("litert", "student.float.tflite")])
def test_a_model_of_another_task_is_refused(exported, runtime, name):
    path = str(exported["folder"] / name)
    with pytest.raises(UserError, match="not a student of this task: its logits have shape .* with 5 outputs"):
        runtimes.RUNTIMES[runtime].load(path, threads=1, num_labels=5, token_level=False)
    with pytest.raises(UserError, match="expected rank 3"):
        runtimes.RUNTIMES[runtime].load(path, threads=1, num_labels=LABELS, token_level=True)


def test_token_level_logits_come_back_at_each_splits_width(tmp_path):
    model = _task_model(kind="ner", num_labels=5, seed=1)
    splits = {"dev": _inputs(10, 9, 4)}
    seen = {}

    def score(split, logits):
        seen[split] = logits
        return {"f1": 0.0}

    result = export_int8(model, str(tmp_path / "int8"), length=LENGTH, num_labels=5, token_level=True,
                         calibration=_inputs(8, LENGTH, 5), splits=splits, score=score, metric="f1",
                         runtimes=("onnxruntime",), min_seconds=0.0)
    assert seen["dev"].shape == (10, 9, 5)
    want = _tf_logits(model, splits["dev"])[:, :9]
    run, _ = load_exported(str(tmp_path / "int8"), "student.float.onnx")
    got = predict(run, splits["dev"], LENGTH, token_level=True)
    assert np.abs(got - want).max() < 1e-4
    assert set(result["runtimes"]) == {"onnxruntime"}


def test_a_runtime_that_is_not_installed_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setattr(runtimes.LiteRtRuntime, "packages", ("no_such_runtime_package",))
    result = export_int8(_task_model(), str(tmp_path / "int8"), length=LENGTH, num_labels=LABELS, token_level=False,
                         calibration=_inputs(4, LENGTH, 0), splits={"dev": _inputs(4, LENGTH, 0)},
                         score=lambda s, logits: {"accuracy": 0.0}, metric="accuracy", runtimes=("litert",))
    assert result["runtimes"] == {"litert": {"skipped": "not installed: no_such_runtime_package"}}
    assert sorted(p.name for p in (tmp_path / "int8").iterdir()) == [MANIFEST]


def test_the_fitted_padding_bias_masks_as_before_and_keeps_int8_attention_usable(tmp_path):
    """Exports mask padded keys with -(score spread + 30) instead of -1e9: the float logits do not move, and the
    full-integer model, whose score tensor no longer spans 1e9, stays near the float model."""
    from xtremedistil_tf.deploy.int8 import export_padding_bias, padding_bias_set_to
    from xtremedistil_tf.deploy.runtimes import RUNTIMES
    model = _task_model(seed=3)
    calibration, test = _inputs(32, LENGTH, 6), _inputs(40, LENGTH, 7)
    bias = export_padding_bias(model, calibration)
    assert -1e4 < bias <= -30
    reference = _tf_logits(model, test)
    with padding_bias_set_to(model, bias):
        assert np.abs(_tf_logits(model, test) - reference).max() < 1e-5 * np.abs(reference).max()
    assert model.encoder.padding_bias_value == -1e9  # restored after the block
    gaps = {}
    for name, value in (("fitted", bias), ("-1e9", -1e9)):
        export_int8(model, str(tmp_path / name), length=LENGTH, num_labels=LABELS, token_level=False,
                    calibration=calibration, splits={"test": test}, score=lambda s, logits: {"accuracy": 0.0},
                    metric="accuracy", runtimes=("litert",), min_seconds=0.0, padding_bias=value)
        run = RUNTIMES["litert"].load(str(tmp_path / name / "student.int8-full.tflite"), threads=1,
                                      num_labels=LABELS, token_level=False)
        gaps[name] = np.abs(predict(run, test, LENGTH, token_level=False) - reference).max()
        if name == "fitted":
            assert json.loads((tmp_path / name / MANIFEST).read_text())["padding_bias"] == bias
    print(gaps)
    assert gaps["fitted"] < 0.5 * gaps["-1e9"]
