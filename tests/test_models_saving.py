"""One save format for teacher, student and fine-tuned models: Keras serialization + `.weights.h5`.

Round trips give identical outputs, files of the older `{"class_name", "config"}` format still load, and an unknown
class, a damaged config or damaged weights raise CheckpointError naming the file.
"""
import json

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402

from xtremedistil_tf.errors import CheckpointError  # noqa: E402
from xtremedistil_tf.models.encoder import INPUT_NAMES, Encoder  # noqa: E402
from xtremedistil_tf.models.heads import TaskModel  # noqa: E402
from xtremedistil_tf.models.saving import SPEC_KEYS, load_model, model_spec, save_model  # noqa: E402

TINY = dict(vocab_size=100, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
            max_position_embeddings=24, initializer_range=0.2)
WEIGHTS, CONFIG = "model.weights.h5", "model-config.json"


def _task(kind="classification", seed=0, **kw):
    keras.utils.set_random_seed(seed)
    model = TaskModel(Encoder(**TINY, **kw), 3, kind, name="task_model")
    model.build()
    return model


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, TINY["vocab_size"], size=(3, 10)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 6:] = 0
    mask[2, 2:] = 0
    ids = np.where(mask == 1, ids, 0)
    return dict(zip(INPUT_NAMES, (ids, mask, np.zeros_like(ids))))


def _assert_same(a, b):
    assert type(a) is type(b) and a.get_config() == b.get_config()
    assert [w.shape for w in a.weights] == [w.shape for w in b.weights]  # paths depend on build scope
    for x, y in zip(a.weights, b.weights):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    batch = _batch()
    np.testing.assert_array_equal(a(batch)["logits"].numpy(), b(batch)["logits"].numpy())


@pytest.mark.parametrize("kind", ["classification", "ner"])
def test_round_trip_gives_identical_outputs(kind, tmp_path):
    model = _task(kind, seed=1)
    save_model(model, str(tmp_path), WEIGHTS, CONFIG, extra={"label_names": ["a", "b", "c"], "kind": kind})
    spec = json.loads((tmp_path / CONFIG).read_text())
    assert spec["registered_name"] == "xtremedistil_tf>TaskModel" and spec["class_name"] == "TaskModel"
    assert spec["label_names"] == ["a", "b", "c"] and spec["kind"] == kind  # extra keys beside the model
    assert spec["config"]["num_labels"] == 3
    back = load_model(str(tmp_path), WEIGHTS, CONFIG)
    _assert_same(model, back)


def test_the_keras_export_describes_the_model_the_same_way(tmp_path):
    from xtremedistil_tf.convert.export import load_keras, save_keras
    model = _task("ner", seed=2)
    save_model(model, str(tmp_path / "run"), WEIGHTS, CONFIG, extra={"kind": "ner"})
    save_keras(model, str(tmp_path / "keras"))
    run_spec = json.loads((tmp_path / "run" / CONFIG).read_text())
    keras_doc = json.loads((tmp_path / "keras" / "keras_config.json").read_text())
    assert keras_doc["model"] == {k: run_spec[k] for k in SPEC_KEYS} == json.loads(json.dumps(model_spec(model)))
    _assert_same(load_model(str(tmp_path / "run"), WEIGHTS, CONFIG), load_keras(str(tmp_path / "keras")))


def test_old_format_still_loads(tmp_path):
    """The format written before: `{"class_name": ..., "config": get_config()}` where get_config had no
    `trainable` (nor the task model's `dtype`)."""
    model = _task("classification", seed=3, architecture="roberta", type_vocab_size=1, pad_token_id=1)
    config = model.get_config()
    config.pop("trainable")
    config.pop("dtype")
    config["encoder"]["config"].pop("trainable")
    model.save_weights(str(tmp_path / WEIGHTS))
    (tmp_path / CONFIG).write_text(json.dumps({"class_name": "TaskModel", "config": config, "label_names": None}))
    back = load_model(str(tmp_path), WEIGHTS, CONFIG)
    assert isinstance(back, TaskModel) and back.head_style == "roberta"
    batch = _batch()
    batch["input_ids"] = np.where(batch["attention_mask"] == 1, batch["input_ids"], 1)
    np.testing.assert_array_equal(model(batch)["logits"].numpy(), back(batch)["logits"].numpy())


def test_a_class_from_a_higher_layer_loads_once_registered(tmp_path):
    """Like the distillation Student: defined outside models/, registered when its module is imported."""

    @keras.saving.register_keras_serializable(package="xtremedistil_tf")
    class SavingTestWrapper(keras.Model):
        def __init__(self, encoder, **kwargs):
            super().__init__(**kwargs)
            self.encoder = encoder
            self.out = keras.layers.Dense(2, name="out")

        def build(self, input_shape=None):
            if not self.encoder.built:
                self.encoder.build()
            self.out.build((None, self.encoder.hidden_size))
            self.built = True

        def call(self, inputs, training=False):
            return {"logits": self.out(self.encoder(inputs, training=training)["sequence_output"][:, 0])}

        def get_config(self):
            return {**super().get_config(), "encoder": keras.saving.serialize_keras_object(self.encoder)}

        @classmethod
        def from_config(cls, config):
            return cls(**{**config, "encoder": keras.saving.deserialize_keras_object(config["encoder"])})

    keras.utils.set_random_seed(4)
    model = SavingTestWrapper(Encoder(**TINY), name="wrapper")
    model.build()
    save_model(model, str(tmp_path), WEIGHTS, CONFIG)
    _assert_same(model, load_model(str(tmp_path), WEIGHTS, CONFIG))
    # The old format names the class only; it is looked up as xtremedistil_tf>ClassName.
    (tmp_path / CONFIG).write_text(json.dumps({"class_name": "SavingTestWrapper", "config": model.get_config()}))
    _assert_same(model, load_model(str(tmp_path), WEIGHTS, CONFIG))


@pytest.mark.parametrize("spec", [
    {"class_name": "Ghost", "config": {"name": "ghost"}},  # old format
    {"module": "xtremedistil_tf.ghost", "class_name": "Ghost", "config": {"name": "ghost"},
     "registered_name": "xtremedistil_tf>Ghost"},
])
def test_unknown_class_is_a_clear_error(spec, tmp_path):
    _task().save_weights(str(tmp_path / WEIGHTS))
    (tmp_path / CONFIG).write_text(json.dumps(spec))
    with pytest.raises(CheckpointError, match=r"model-config\.json: unknown model class 'Ghost'.*Ghost is not "
                                              r"registered"):
        load_model(str(tmp_path), WEIGHTS, CONFIG)


def test_damaged_weights_are_a_clear_error(tmp_path):
    save_model(_task(), str(tmp_path), WEIGHTS, CONFIG)
    data = (tmp_path / WEIGHTS).read_bytes()
    (tmp_path / WEIGHTS).write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match=rf"{WEIGHTS}: cannot load the weights .*remove .* to start it again"):
        load_model(str(tmp_path), WEIGHTS, CONFIG)
    (tmp_path / WEIGHTS).unlink()
    with pytest.raises(CheckpointError, match=rf"{WEIGHTS}: cannot load the weights"):
        load_model(str(tmp_path), WEIGHTS, CONFIG)


def test_damaged_config_is_a_clear_error(tmp_path):
    model = _task()
    save_model(model, str(tmp_path), WEIGHTS, CONFIG)
    spec = json.loads((tmp_path / CONFIG).read_text())
    spec["config"]["num_labels"] = "two"
    (tmp_path / CONFIG).write_text(json.dumps(spec))
    with pytest.raises(CheckpointError, match=r"model-config\.json: cannot rebuild the model"):
        load_model(str(tmp_path), WEIGHTS, CONFIG)
    (tmp_path / CONFIG).write_text('{"class_name": "TaskModel", "config": ')
    with pytest.raises(CheckpointError, match=r"model-config\.json: not valid JSON"):
        load_model(str(tmp_path), WEIGHTS, CONFIG)
    (tmp_path / CONFIG).write_text("[1, 2]")
    with pytest.raises(CheckpointError, match=r"model-config\.json: cannot rebuild the model"):
        load_model(str(tmp_path), WEIGHTS, CONFIG)


def test_extra_keys_cannot_overwrite_the_model(tmp_path):
    with pytest.raises(ValueError, match="config"):
        save_model(_task(), str(tmp_path), WEIGHTS, CONFIG, extra={"config": {}})
