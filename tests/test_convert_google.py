"""Checkpoints in TensorFlow formats (a Google BERT TF1 checkpoint, HF's `tf_model.h5`) and the loaders' errors.

The Google checkpoint and the h5 file are written here from a tiny PyTorch BERT, naming variables with string rules
written in this file (not with the package's name maps), so a wrong map cannot cancel itself out.
"""
import argparse
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tf = pytest.importorskip("tensorflow")

from xtremedistil_tf.convert.export import load_any  # noqa: E402
from xtremedistil_tf.convert.google import load_google_checkpoint  # noqa: E402
from xtremedistil_tf.convert.hf import load_hf_encoder  # noqa: E402
from xtremedistil_tf.errors import CheckpointError  # noqa: E402

TINY = dict(vocab_size=101, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=40, type_vocab_size=2, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0, initializer_range=0.2)
GOOGLE_CONFIG_KEYS = ("attention_probs_dropout_prob", "hidden_act", "hidden_dropout_prob", "hidden_size",
                      "initializer_range", "intermediate_size", "max_position_embeddings", "num_attention_heads",
                      "num_hidden_layers", "type_vocab_size", "vocab_size")


def _tiny_bert(cls=None, seed=0, **extra):
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(**TINY, **extra)
    return (cls or transformers.BertModel)(cfg).eval()


def _batch(vocab=101, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab, size=(3, 11))
    mask = np.zeros_like(ids)
    for row, n in enumerate((11, 6, 2)):
        mask[row, :n] = 1
        ids[row, n:] = 0
    types = np.zeros_like(ids)
    types[:, 4:] = 1
    return ids, mask, types * mask


def _torch_out(model, ids, mask, types):
    with torch.no_grad():
        return model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                     token_type_ids=torch.tensor(types))


def _close_on_real_tokens(mine, theirs, mask, atol=1e-5):
    m = mask.astype(bool)[:, :, None]
    np.testing.assert_allclose(np.where(m, np.asarray(mine), 0), np.where(m, np.asarray(theirs), 0), atol=atol)


# ------------------------------------------------------------------------------------------------- Google TF1
def _google_name(key: str) -> tuple[str, bool]:
    """HF BertModel key -> (Google variable name, transpose), by the naming rules of google-research/bert."""
    name = "bert/" + key.replace("encoder.layer.", "encoder.layer_").replace(".", "/")
    if "LayerNorm" in name:
        return name.replace("/weight", "/gamma").replace("/bias", "/beta"), False
    if name.startswith("bert/embeddings/") and name.endswith("_embeddings/weight"):
        return name[: -len("/weight")], False  # embedding tables are plain variables
    if name.endswith("/weight"):
        return name[: -len("weight")] + "kernel", True  # Linear [out, in] -> TF kernel [in, out]
    return name, False


def write_google_checkpoint(folder, model, *, drop=(), reshape=(), extra=None, heads=True):
    """Writes bert_config.json + bert_model.ckpt.* with tf.compat.v1 (a TF1 graph and Saver), like Google's BERT."""
    os.makedirs(folder, exist_ok=True)
    variables = {}
    for key, value in model.state_dict().items():
        if key.endswith("position_ids"):
            continue
        name, transpose = _google_name(key)
        value = value.numpy()
        variables[name] = np.ascontiguousarray(value.T if transpose else value)
    for name in drop:
        del variables[name]
    for name in reshape:
        variables[name] = np.zeros((3,) + variables[name].shape[1:], np.float32)
    if heads:  # pre-training heads and optimizer state, as in released and fine-tuned checkpoints
        h, v = model.config.hidden_size, model.config.vocab_size
        variables["cls/predictions/output_bias"] = np.zeros(v, np.float32)
        variables["cls/predictions/transform/dense/kernel"] = np.ones((h, h), np.float32)
        variables["cls/seq_relationship/output_weights"] = np.ones((2, h), np.float32)
        variables["bert/embeddings/word_embeddings/adam_m"] = np.zeros((v, h), np.float32)
        variables["global_step"] = np.array(1000, np.int64)
    variables.update(extra or {})
    graph = tf.Graph()
    with graph.as_default():
        for name, value in variables.items():
            tf.compat.v1.get_variable(name, initializer=tf.constant(value))
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, os.path.join(folder, "bert_model.ckpt"), write_meta_graph=False)
    cfg = {k: getattr(model.config, k) for k in GOOGLE_CONFIG_KEYS}
    with open(os.path.join(folder, "bert_config.json"), "w") as f:
        json.dump(cfg, f)
    return folder


@pytest.fixture(scope="module")
def google_ckpt(tmp_path_factory):
    model = _tiny_bert()
    folder = str(tmp_path_factory.mktemp("uncased_L-2_H-32_A-4"))
    write_google_checkpoint(folder, model)
    with open(os.path.join(folder, "vocab.txt"), "w") as f:
        f.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(96)]) + "\n")
    return folder, model


def test_google_tf1_checkpoint_matches_pytorch(google_ckpt):
    folder, model = google_ckpt
    assert os.path.isfile(os.path.join(folder, "bert_model.ckpt.index"))
    loaded = load_google_checkpoint(folder)
    ids, mask, types = _batch()
    theirs = _torch_out(model, ids, mask, types)
    ours = loaded.encoder({"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
    _close_on_real_tokens(ours["sequence_output"], theirs.last_hidden_state.numpy(), mask)
    np.testing.assert_allclose(ours["pooled_output"], theirs.pooler_output.numpy(), atol=1e-5)
    # Pre-training heads are reported (not fatal); optimizer state is skipped.
    assert set(loaded.heads) == {"cls/predictions/output_bias", "cls/predictions/transform/dense/kernel",
                                 "cls/seq_relationship/output_weights"}


def test_google_checkpoint_explicit_paths_and_detection(google_ckpt):
    folder, model = google_ckpt
    prefix = os.path.join(folder, "bert_model.ckpt")
    loaded = load_google_checkpoint(config_path=os.path.join(folder, "bert_config.json"),
                                    checkpoint_path=prefix + ".index")
    w = loaded.encoder.transformer_layers[1].attention.query.kernel.numpy()
    np.testing.assert_array_equal(w, model.encoder.layer[1].attention.self.query.weight.detach().numpy().T)
    any_ = load_any(folder)
    assert any_.format == "google" and any_.tokenizer == folder
    assert load_any(prefix).format == "google"


def test_google_checkpoint_errors_list_every_problem(tmp_path):
    model = _tiny_bert(seed=1)
    write_google_checkpoint(str(tmp_path), model, drop=["bert/encoder/layer_1/output/dense/bias"],
                            reshape=["bert/encoder/layer_0/intermediate/dense/kernel"],
                            extra={"bert/encoder/layer_0/attention/self/rotary": np.zeros(4, np.float32)})
    with pytest.raises(CheckpointError) as err:
        load_google_checkpoint(str(tmp_path))
    msg = str(err.value)
    assert "missing (1): bert/encoder/layer_1/output/dense/bias" in msg
    assert "unexpected (1): bert/encoder/layer_0/attention/self/rotary" in msg
    assert "wrong shape (1): bert/encoder/layer_0/intermediate/dense/kernel: checkpoint (3, 37) vs model (32, 37)" \
        in msg
    assert "cls/" not in msg and "adam" not in msg and "global_step" not in msg


def test_google_folder_without_checkpoint(tmp_path):
    (tmp_path / "bert_config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="no TF checkpoint"):
        load_google_checkpoint(str(tmp_path))


# ---------------------------------------------------------------------------------------------- HF tf_model.h5
def _tf_h5_name(key: str, scope: str) -> tuple[str, bool]:
    """HF PyTorch key -> (dataset path in HF's TF `tf_model.h5`, transpose)."""
    top = key.split(".", 1)[0]  # the Keras layer: "bert" or "classifier"
    path = key.replace(".", "/").replace("encoder/layer/", "encoder/layer_._")
    transpose = False
    if "LayerNorm" in path:
        path = path.replace("/weight", "/gamma").replace("/bias", "/beta")
    elif path.endswith("word_embeddings/weight"):
        pass  # TFBertEmbeddings keeps the word table as "weight"
    elif path.endswith("_embeddings/weight"):
        path = path[: -len("weight")] + "embeddings"
    elif path.endswith("/weight"):
        path, transpose = path[: -len("weight")] + "kernel", True
    return f"{top}/{scope}/{path}:0", transpose


def write_tf_h5(path, model, scope):
    import h5py
    groups = {}
    with h5py.File(path, "w") as f:
        for key, value in model.state_dict().items():
            if key.endswith("position_ids"):
                continue
            name, transpose = _tf_h5_name(key, scope)
            value = value.numpy()
            f.create_dataset(name, data=np.ascontiguousarray(value.T if transpose else value))
            top, weight = name.split("/", 1)
            groups.setdefault(top, []).append(weight.encode())
        f.attrs["layer_names"] = [g.encode() for g in groups]  # the Keras 2 h5 weights layout
        for g, weights in groups.items():
            f[g].attrs["weight_names"] = weights


def test_hf_tf_h5_loads_and_matches(tmp_path):
    model = _tiny_bert(transformers.BertForSequenceClassification, seed=2, num_labels=3)
    model.config.architectures = ["BertForSequenceClassification"]  # as save_pretrained writes it
    model.config.save_pretrained(tmp_path)
    write_tf_h5(str(tmp_path / "tf_model.h5"), model, "tf_bert_for_sequence_classification")
    import h5py
    with h5py.File(tmp_path / "tf_model.h5") as f:
        assert "bert/tf_bert_for_sequence_classification/bert/encoder/layer_._0/attention/self/query/kernel:0" in f
        assert "bert/tf_bert_for_sequence_classification/bert/embeddings/word_embeddings/weight:0" in f
        assert "bert/tf_bert_for_sequence_classification/bert/embeddings/position_embeddings/embeddings:0" in f
        assert "bert/tf_bert_for_sequence_classification/bert/embeddings/LayerNorm/gamma:0" in f

    loaded = load_hf_encoder(str(tmp_path))
    assert set(loaded.heads) == {"classifier.weight", "classifier.bias"}
    ids, mask, types = _batch(seed=3)
    with torch.no_grad():
        theirs = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                       token_type_ids=torch.tensor(types), output_hidden_states=True)
    ours = loaded.encoder({"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
    _close_on_real_tokens(ours["sequence_output"], theirs.hidden_states[-1].numpy(), mask)
    # The whole classifier comes back as a task model with the same logits.
    task = load_any(str(tmp_path))
    assert type(task.model).__name__ == "TaskModel" and task.model.kind == "classification"
    logits = task.model({"input_ids": ids, "attention_mask": mask, "token_type_ids": types})["logits"]
    np.testing.assert_allclose(logits, theirs.logits.numpy(), atol=1e-5)


# ------------------------------------------------------------------------------------------------- HF errors
def _save_state(folder, state, config):
    from safetensors.numpy import save_file
    os.makedirs(folder, exist_ok=True)
    config.save_pretrained(folder)
    save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, os.path.join(folder, "model.safetensors"))


def test_missing_unexpected_and_misshapen_weights_in_one_error(tmp_path):
    model = _tiny_bert(seed=4)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    del state["encoder.layer.1.attention.self.key.bias"]
    del state["pooler.dense.bias"]
    state["encoder.layer.0.intermediate.dense.weight"] = np.zeros((40, 32), np.float32)
    state["encoder.layer.0.attention.self.rel_bias"] = np.zeros(3, np.float32)
    _save_state(str(tmp_path), state, model.config)
    with pytest.raises(CheckpointError) as err:
        load_hf_encoder(str(tmp_path))
    msg = str(err.value)
    assert "missing (2): encoder.layer.1.attention.self.key.bias, pooler.dense.bias" in msg
    assert "unexpected (1): encoder.layer.0.attention.self.rel_bias" in msg
    # shapes in the checkpoint's own (PyTorch [out, in]) layout
    assert "wrong shape (1): encoder.layer.0.intermediate.dense.weight: checkpoint (40, 32) vs model (37, 32)" in msg


def test_unused_head_is_reported_not_fatal(tmp_path):
    model = _tiny_bert(transformers.BertForMaskedLM, seed=5)
    model.save_pretrained(tmp_path)
    loaded = load_hf_encoder(str(tmp_path))
    assert loaded.heads and all(k.startswith("cls.") for k in loaded.heads)
    any_ = load_any(str(tmp_path))  # not a classifier: an encoder, with the heads listed as unused
    assert type(any_.model).__name__ == "Encoder" and set(any_.unused) == set(loaded.heads)
    np.testing.assert_array_equal(loaded.encoder.embeddings.word_embeddings.embeddings.numpy(),
                                  model.bert.embeddings.word_embeddings.weight.detach().numpy())


def test_truncated_safetensors_is_a_clear_error(tmp_path):
    _tiny_bert(seed=6).save_pretrained(tmp_path)
    path = tmp_path / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: cannot read safetensors file .*truncated"):
        load_hf_encoder(str(tmp_path))


class _Payload:
    """Unpickling this creates a file: proof of arbitrary code execution if it ever happens."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, "w")


def test_pytorch_bin_is_read_weights_only(tmp_path):
    model = _tiny_bert(seed=7)
    model.config.save_pretrained(tmp_path)
    state = dict(model.state_dict())
    torch.save(state, tmp_path / "pytorch_model.bin")
    enc = load_hf_encoder(str(tmp_path)).encoder  # plain tensors: fine
    np.testing.assert_array_equal(enc.pooler.kernel.numpy(), model.pooler.dense.weight.detach().numpy().T)

    marker = tmp_path / "pwned"
    torch.save({**state, "payload": _Payload(str(marker))}, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="weights-only"):
        load_hf_encoder(str(tmp_path))
    assert not marker.exists()

    torch.save({**state, "args": argparse.Namespace(lr=1e-3)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="weights-only"):
        load_hf_encoder(str(tmp_path))
    enc = load_hf_encoder(str(tmp_path), allow_pickle=True).encoder  # the user vouches for the file
    np.testing.assert_array_equal(enc.pooler.kernel.numpy(), model.pooler.dense.weight.detach().numpy().T)
