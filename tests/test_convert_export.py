"""Export: Hugging Face folders that transformers loads as task models, SavedModels, and Keras weights + config."""
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402

from xtremedistil_tf.convert.export import (export_hf, export_saved_model, hf_state_dict,  # noqa: E402
                                            load_any, load_keras, save_keras)
from xtremedistil_tf.errors import CheckpointError, UserError  # noqa: E402
from xtremedistil_tf.models.encoder import Encoder  # noqa: E402
from xtremedistil_tf.models.heads import TaskModel  # noqa: E402

# A larger initializer range than BERT's 0.02 so that logits are O(1) and a 1e-5 comparison means something.
TINY = dict(vocab_size=97, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=37,
            max_position_embeddings=40, dropout=0.1, attention_dropout=0.1, initializer_range=0.2)
HF_CLASSES = {"classification": "ForSequenceClassification", "regression": "ForSequenceClassification",
              "ner": "ForTokenClassification"}


def _encoder(arch="bert", seed=0, **kw):
    keras.utils.set_random_seed(seed)
    extra = {"roberta": dict(type_vocab_size=1, pad_token_id=1),
             "distilbert": dict(type_vocab_size=0, use_pooler=False),
             "electra": dict(embedding_size=16, use_pooler=False)}.get(arch, {})
    enc = Encoder(**{**TINY, **extra, **kw}, architecture=arch)
    enc.build()
    return enc


def _task(kind, arch="bert", num_labels=3, seed=0):
    model = TaskModel(_encoder(arch, seed), num_labels, kind)
    model.build()
    return model


def _batch(pad=0, seed=0, lengths=(11, 6, 2), vocab=97):
    rng = np.random.default_rng(seed)
    ids = rng.integers(pad + 1, vocab, size=(len(lengths), max(lengths)))
    mask = np.zeros_like(ids)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
        ids[row, n:] = pad
    types = np.zeros_like(ids)
    types[:, 3:] = 1
    return ids, mask, types * mask


def _feed(ids, mask, types):
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


# ----------------------------------------------------------------------------------------------------- HF export
@pytest.mark.parametrize("kind", ["classification", "ner", "regression"])
def test_bert_task_model_loads_in_transformers(kind, tmp_path):
    model = _task(kind)
    labels = {"classification": ["neg", "neutral", "pos"], "ner": ["O", "B-PER", "I-PER"], "regression": None}[kind]
    export_hf(model, tmp_path, label_names=labels)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["architectures"] == ["Bert" + HF_CLASSES[kind]]
    auto = (transformers.AutoModelForTokenClassification if kind == "ner"
            else transformers.AutoModelForSequenceClassification)
    ref, info = auto.from_pretrained(tmp_path, output_loading_info=True)
    ref.eval()
    assert type(ref).__name__ == "Bert" + HF_CLASSES[kind]
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    if kind == "regression":
        assert ref.config.problem_type == "regression" and ref.config.num_labels == 1
    else:
        assert ref.config.num_labels == 3 and [ref.config.id2label[i] for i in range(3)] == labels
        assert ref.config.label2id == {name: i for i, name in enumerate(labels)}

    ids, mask, types = _batch()
    ours = model(_feed(ids, mask, types))["logits"].numpy()
    with torch.no_grad():
        theirs = ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                     token_type_ids=torch.tensor(types)).logits.numpy()
    if kind == "ner":  # per-token logits: padding positions carry no meaning
        m = mask.astype(bool)[:, :, None]
        ours, theirs = np.where(m, ours, 0), np.where(m, theirs, 0)
    assert np.abs(theirs).max() > 0.1  # the comparison is not between near-zero numbers
    np.testing.assert_allclose(ours, theirs, atol=1e-5)

    # ... and our own loader brings the same task model back.
    back = load_any(str(tmp_path))
    assert isinstance(back.model, TaskModel) and back.model.kind == kind
    assert back.label_names == (labels if labels else ["LABEL_0"])
    again, original = hf_state_dict(back.model), hf_state_dict(model)  # (a token classifier has no pooler)
    assert set(again) == set(original)
    for k in original:
        np.testing.assert_array_equal(again[k], original[k], err_msg=k)


@pytest.mark.parametrize("arch", ["bert", "roberta", "electra", "distilbert"])
def test_span_model_loads_in_transformers_as_question_answering(arch, tmp_path):
    model = _task("qa", arch)
    export_hf(model, tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    prefix = {"bert": "Bert", "roberta": "Roberta", "electra": "Electra", "distilbert": "DistilBert"}[arch]
    assert cfg["architectures"] == [prefix + "ForQuestionAnswering"]
    ref, info = transformers.AutoModelForQuestionAnswering.from_pretrained(tmp_path, output_loading_info=True)
    ref.eval()
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    ids, mask, types = _batch(pad=model.encoder.pad_token_id, seed=2)
    if model.encoder.type_vocab_size < 2:
        types = np.zeros_like(types)
    ours = model(_feed(ids, mask, types))["logits"].numpy()
    feed = {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}
    if arch in ("bert", "electra"):
        feed["token_type_ids"] = torch.tensor(types)
    with torch.no_grad():
        out = ref(**feed)
    theirs = np.stack([out.start_logits.numpy(), out.end_logits.numpy()], axis=-1)
    m = mask.astype(bool)[:, :, None]  # padding positions carry no meaning
    ours, theirs = np.where(m, ours, 0), np.where(m, theirs, 0)
    assert ours.shape == theirs.shape and np.abs(theirs).max() > 0.1
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    back = load_any(str(tmp_path))  # ... and our loader brings the span model back
    assert isinstance(back.model, TaskModel) and back.model.kind == "qa"
    np.testing.assert_array_equal(back.model(_feed(ids, mask, types))["logits"].numpy(),
                                  model(_feed(ids, mask, types))["logits"].numpy())


@pytest.mark.parametrize("arch", ["roberta", "electra", "distilbert"])
def test_other_architectures_export_as_sequence_classifiers(arch, tmp_path):
    model = _task("classification", arch, num_labels=2, seed=1)
    export_hf(model, tmp_path)
    ref, info = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path, output_loading_info=True)
    ref.eval()
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    pad = model.encoder.pad_token_id
    ids, mask, types = _batch(pad=pad, seed=2)
    if model.encoder.type_vocab_size < 2:
        types = np.zeros_like(types)
    feed = {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}
    if arch == "electra":
        feed["token_type_ids"] = torch.tensor(types)
    with torch.no_grad():
        theirs = ref(**feed).logits.numpy()
    np.testing.assert_allclose(model(_feed(ids, mask, types))["logits"].numpy(), theirs, atol=1e-5)
    back = load_any(str(tmp_path)).model  # and the head comes back into a Keras task model
    assert isinstance(back, TaskModel) and back.head_style == model.head_style
    np.testing.assert_allclose(back(_feed(ids, mask, types))["logits"].numpy(), theirs, atol=1e-5)


def test_encoder_export_is_a_base_model_with_tokenizer(tmp_path):
    enc = _encoder()
    tok_dir = tmp_path / "tok"
    tok_dir.mkdir()
    (tok_dir / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world"]))
    export_hf(enc, tmp_path / "out", tokenizer=str(tok_dir / "vocab.txt"))
    assert sorted(os.listdir(tmp_path / "out")) == ["config.json", "model.safetensors", "vocab.txt"]
    ref, info = transformers.AutoModel.from_pretrained(tmp_path / "out", output_loading_info=True)
    assert type(ref).__name__ == "BertModel" and not info["missing_keys"] and not info["unexpected_keys"]


def test_export_refuses_to_replace_an_unrelated_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not a previous export"):
        export_hf(_encoder(), tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    export_hf(_encoder(), tmp_path / "x")
    export_hf(_encoder(seed=3), tmp_path / "x")  # a previous export is replaced as a whole
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]  # no temporaries left behind


def test_label_names_must_fit_the_head(tmp_path):
    with pytest.raises(UserError, match="2 label names for a head with 3 outputs"):
        export_hf(_task("classification"), tmp_path / "x", label_names=["a", "b"])
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------------------------------------- SavedModel
@pytest.mark.parametrize("what", ["encoder", "task"])
def test_saved_model_reproduces_keras_with_dynamic_shapes(what, tmp_path):
    model = _encoder(seed=4) if what == "encoder" else _task("classification", seed=4)
    export_saved_model(model, str(tmp_path / "sm"))
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    serve = loaded.signatures["serving_default"]
    _, spec = serve.structured_input_signature
    assert {k: (tuple(v.shape.as_list()), v.dtype) for k, v in spec.items()} == {
        n: ((None, None), tf.int32) for n in ("input_ids", "attention_mask", "token_type_ids")}
    expected = {"last_hidden_state", "pooler_output"} | ({"logits"} if what == "task" else set())
    assert set(serve.structured_outputs) == expected
    for lengths in [(9, 4), (13, 13, 7, 1, 5), (3,)]:  # different batch sizes and sequence lengths
        ids, mask, types = _batch(seed=len(lengths), lengths=lengths)
        out = serve(input_ids=tf.constant(ids, tf.int32), attention_mask=tf.constant(mask, tf.int32),
                    token_type_ids=tf.constant(types, tf.int32))
        ref = model(_feed(ids, mask, types))
        m = mask.astype(bool)[:, :, None]
        np.testing.assert_allclose(np.where(m, out["last_hidden_state"], 0),
                                   np.where(m, ref["sequence_output"], 0), atol=1e-5)
        np.testing.assert_allclose(out["pooler_output"], ref["pooled_output"], atol=1e-5)
        if what == "task":
            np.testing.assert_allclose(out["logits"], ref["logits"], atol=1e-5)
    # The `serve` endpoint is callable directly, too.
    direct = loaded.serve(tf.constant(ids, tf.int32), tf.constant(mask, tf.int32), tf.constant(types, tf.int32))
    np.testing.assert_allclose(direct["last_hidden_state"], out["last_hidden_state"], atol=1e-6)


def test_saved_model_of_distilbert_ignores_token_types(tmp_path):
    model = _encoder("distilbert", seed=5)
    export_saved_model(model, str(tmp_path / "sm"))
    serve = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"]
    ids, mask, types = _batch(seed=5)
    out = serve(input_ids=tf.constant(ids, tf.int32), attention_mask=tf.constant(mask, tf.int32),
                token_type_ids=tf.constant(types, tf.int32))
    assert set(out) == {"last_hidden_state"}
    m = mask.astype(bool)[:, :, None]
    np.testing.assert_allclose(np.where(m, out["last_hidden_state"], 0),
                               np.where(m, model(_feed(ids, mask, types))["sequence_output"], 0), atol=1e-5)


# ------------------------------------------------------------------------------------------------------- Keras
@pytest.mark.parametrize("what", ["encoder", "ner", "electra-task"])
def test_keras_weights_round_trip_exactly(what, tmp_path):
    model = {"encoder": lambda: _encoder(seed=6), "ner": lambda: _task("ner", seed=6),
             "electra-task": lambda: _task("classification", "electra", seed=6)}[what]()
    save_keras(model, str(tmp_path / "k"), extra={"label_names": ["a", "b", "c"]})
    assert sorted(os.listdir(tmp_path / "k")) == ["keras_config.json", "model.weights.h5"]
    back = load_keras(str(tmp_path / "k"))
    assert type(back) is type(model) and back.get_config() == model.get_config()
    assert len(back.weights) == len(model.weights)
    for a, b in zip(model.weights, back.weights):
        assert a.path == b.path
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    ids, mask, types = _batch(seed=6)
    key = "sequence_output" if what == "encoder" else "logits"
    np.testing.assert_array_equal(back(_feed(ids, mask, types))[key].numpy(),
                                  model(_feed(ids, mask, types))[key].numpy())
    found = load_any(str(tmp_path / "k"))
    assert found.format == "keras" and found.label_names == ["a", "b", "c"]


def test_get_config_from_config_round_trip():
    for model in (_encoder(), _encoder("roberta"), _task("regression"), _task("ner", "distilbert")):
        config = model.get_config()
        json.dumps(config)  # serialisable
        clone = type(model).from_config(config)
        assert clone.get_config() == config
        clone.build()
        assert [w.shape for w in clone.weights] == [w.shape for w in model.weights]
    serialized = keras.saving.serialize_keras_object(_task("classification", "roberta"))
    clone = keras.saving.deserialize_keras_object(json.loads(json.dumps(serialized)))
    assert isinstance(clone, TaskModel) and clone.encoder.architecture == "roberta"


def test_load_keras_errors_are_clear(tmp_path):
    with pytest.raises(CheckpointError, match="not a folder written by save_keras"):
        load_keras(str(tmp_path))
    save_keras(_encoder(), str(tmp_path / "k"))
    (tmp_path / "k" / "model.weights.h5").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot load the weights"):
        load_keras(str(tmp_path / "k"))


def test_load_any_detects_formats(tmp_path):
    with pytest.raises(CheckpointError, match="no such file or folder"):
        load_any(str(tmp_path / "absent"))
    export_saved_model(_encoder(), str(tmp_path / "sm"))
    with pytest.raises(CheckpointError, match="SavedModel cannot be converted back"):
        load_any(str(tmp_path / "sm"))
    export_hf(_encoder(), str(tmp_path / "hf"))
    assert load_any(str(tmp_path / "hf")).format == "hf"
