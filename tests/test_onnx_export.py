"""ONNX: the exported SavedModel converts with tf2onnx and runs in ONNX Runtime with the TF outputs, at any batch
and length (regression: reshapes that read the Dense outputs' shape failed in ONNX Runtime)."""
import subprocess
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")
ort = pytest.importorskip("onnxruntime")
import keras  # noqa: E402

from xtremedistil_tf.convert.export import export_saved_model  # noqa: E402
from xtremedistil_tf.models.encoder import Encoder  # noqa: E402


def test_saved_model_to_onnx_matches_tf(tmp_path):
    keras.utils.set_random_seed(0)
    enc = Encoder(vocab_size=97, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=37,
                  max_position_embeddings=40, initializer_range=0.2)
    enc.build()
    sm = tmp_path / "saved_model"
    export_saved_model(enc, str(sm))
    onnx_path = tmp_path / "model.onnx"
    proc = subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(sm), "--opset", "17",
                           "--output", str(onnx_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = {i.name.split(":")[0]: i.name for i in sess.get_inputs()}
    outputs = [o.name for o in sess.get_outputs()]
    loaded = tf.saved_model.load(str(sm)).signatures["serving_default"]
    rng = np.random.default_rng(0)
    for batch, length in ((3, 11), (1, 7), (5, 16)):
        x = {"input_ids": rng.integers(1, 97, (batch, length)).astype(np.int32),
             "attention_mask": np.ones((batch, length), np.int32),
             "token_type_ids": np.zeros((batch, length), np.int32)}
        x["attention_mask"][0, length // 2:] = 0
        want = {k: v.numpy() for k, v in loaded(**{k: tf.constant(v) for k, v in x.items()}).items()}
        got = dict(zip((o.split(":")[0] for o in outputs), sess.run(outputs, {names[k]: v for k, v in x.items()})))
        for key in ("last_hidden_state", "pooler_output"):
            np.testing.assert_allclose(got[key], want[key], atol=1e-5, err_msg=f"{key} at {batch}x{length}")
