"""Exports and loaders on a file system with a scheme: TensorFlow's in-memory `ram://` stands in for gs://.

Every export written to `ram://` must hold the same files (but the commit marker) with the same contents as the one
written to a local folder, and every loader must read it back to the same model. `ram://` lives in this process
only, so the command line is called in-process, and each test writes under its own unique root.
"""
import os
import uuid

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tf = pytest.importorskip("tensorflow")

from test_convert_export import _batch, _encoder, _feed, _task  # noqa: E402

from xtremedistil_tf import fs, io  # noqa: E402
from xtremedistil_tf.convert import __main__ as cli  # noqa: E402
from xtremedistil_tf.convert.export import (  # noqa: E402
    detect_format,
    export_hf,
    export_saved_model,
    load_any,
    load_keras,
    save_keras,
)
from xtremedistil_tf.convert.hf import read_hf_tf_h5, resolve_source  # noqa: E402
from xtremedistil_tf.errors import CheckpointError, UserError  # noqa: E402
from xtremedistil_tf.models.saving import load_model, save_model  # noqa: E402

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "the", "quick", "brown", "fox", "short",
         "it", "was", "of", "times", "best", "worst", ".", ",", "!"]


@pytest.fixture
def ram():
    """A unique ram:// root for one test, removed afterwards."""
    root = f"ram://xtremedistil-test-{uuid.uuid4().hex}"
    yield root
    if tf.io.gfile.exists(root):
        tf.io.gfile.rmtree(root)


@pytest.fixture
def quiet_env(monkeypatch):
    for key in ("TF_CPP_MIN_LOG_LEVEL", "TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS"):
        monkeypatch.setenv(key, os.environ.get(key, ""))  # whatever main() sets is undone after the test


def _files(folder) -> set[str]:
    """Relative paths of every file under `folder` ('/'-separated), but the object-store commit marker."""
    folder = os.fspath(folder)
    out = set()
    for root, _, names in fs.walk(folder):
        rel = root[len(folder):].strip("/").replace(os.sep, "/")
        out.update(f"{rel}/{n}" if rel else n for n in names)
    return out - {io.COMMIT_MARKER}


def _vocab(folder) -> str:
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "vocab.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(VOCAB) + "\n")
    return path


def _upload(local_folder, remote_folder) -> str:
    """Copies a local folder to the remote store, file by file (test set-up, not a crash-safe write)."""
    for root, _, names in os.walk(local_folder):
        rel = os.path.relpath(root, local_folder)
        target_dir = remote_folder if rel == "." else fs.join(remote_folder, rel.replace(os.sep, "/"))
        fs.makedirs(target_dir)
        for n in names:
            fs.copy(os.path.join(root, n), fs.join(target_dir, n))
    return remote_folder


def _outputs(model, key="sequence_output"):
    ids, mask, types = _batch()
    return np.asarray(model(_feed(ids, mask, types), training=False)[key])


def _safetensors(path) -> dict:
    from safetensors.numpy import load
    return load(fs.read_bytes(path))


# -------------------------------------------------------------------------------------------------------- exports
def test_export_hf_to_ram_matches_the_local_export(tmp_path, ram):
    model = _task("classification")
    labels = ["neg", "neutral", "pos"]
    vocab = _vocab(tmp_path / "tok")
    local, remote = str(tmp_path / "hf"), f"{ram}/hf"
    assert export_hf(model, local, tokenizer=vocab, label_names=labels) == local
    assert export_hf(model, remote, tokenizer=vocab, label_names=labels) == remote
    assert tf.io.gfile.isdir(remote) and not os.path.exists("ram:")  # never a local folder named "ram:"
    assert io.committed(remote) and io.COMMIT_MARKER in fs.listdir(remote)
    assert _files(remote) == _files(local) == {"config.json", "model.safetensors", "vocab.txt"}
    for name in ("config.json", "vocab.txt"):
        assert fs.read_bytes(fs.join(remote, name)) == fs.read_bytes(fs.join(local, name))
    mine, theirs = _safetensors(fs.join(remote, "model.safetensors")), _safetensors(fs.join(local, "model.safetensors"))
    assert mine.keys() == theirs.keys()
    for k in mine:
        np.testing.assert_array_equal(mine[k], theirs[k])

    loaded, reference = load_any(remote), load_any(local)
    assert loaded.format == "hf" and loaded.source == remote and loaded.tokenizer == remote
    assert loaded.label_names == labels
    np.testing.assert_array_equal(_outputs(loaded.model, "logits"), _outputs(reference.model, "logits"))
    np.testing.assert_allclose(_outputs(loaded.model, "logits"), _outputs(model, "logits"), atol=1e-5)

    # A previous export (marked by config.json and the commit marker) is replaced; the replacement is committed.
    export_hf(model.encoder, remote, tokenizer=remote)  # tokenizer files read from the remote folder itself
    assert io.committed(remote) and _files(remote) == {"config.json", "model.safetensors", "vocab.txt"}
    assert fs.read_bytes(fs.join(remote, "vocab.txt")) == fs.read_bytes(vocab)
    assert load_any(remote).model.__class__.__name__ == "Encoder"


def test_save_keras_to_ram_matches_the_local_folder(tmp_path, ram):
    import h5py
    model = _task("ner", num_labels=4)
    extra = {"label_names": ["O", "B", "I", "X"]}
    local, remote = str(tmp_path / "keras"), f"{ram}/keras"
    save_keras(model, local, extra=extra)
    save_keras(model, remote, extra=extra)
    assert io.committed(remote)
    assert _files(remote) == _files(local) == {"keras_config.json", "model.weights.h5"}
    assert fs.read_bytes(fs.join(remote, "keras_config.json")) == fs.read_bytes(fs.join(local, "keras_config.json"))

    def arrays(path):
        out = {}
        with fs.local_copy(path) as copy, h5py.File(copy, "r") as f:
            f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        return out
    mine, theirs = arrays(fs.join(remote, "model.weights.h5")), arrays(fs.join(local, "model.weights.h5"))
    assert mine.keys() == theirs.keys() and mine
    for k in mine:
        np.testing.assert_array_equal(mine[k], theirs[k])

    assert detect_format(remote) == "keras"
    rebuilt = load_keras(remote)
    for a, b in zip(rebuilt.get_weights(), load_keras(local).get_weights()):
        np.testing.assert_array_equal(a, b)
    loaded = load_any(remote)
    assert loaded.format == "keras" and loaded.label_names == extra["label_names"] and loaded.tokenizer is None
    np.testing.assert_array_equal(_outputs(loaded.model, "logits"), _outputs(model, "logits"))


def test_export_saved_model_to_ram_matches_the_local_folder(tmp_path, ram):
    model = _encoder()
    vocab = _vocab(tmp_path / "tok")
    local, remote = str(tmp_path / "sm"), f"{ram}/sm"
    export_saved_model(model, local, tokenizer=vocab)
    export_saved_model(model, remote, tokenizer=vocab)
    assert io.committed(remote)
    assert _files(remote) == _files(local)
    assert {"saved_model.pb", "tokenizer/vocab.txt"} <= _files(remote)
    assert detect_format(remote) == "saved_model"
    with pytest.raises(CheckpointError, match="SavedModel cannot be converted back"):
        load_any(remote)

    ids, mask, types = _batch()
    feed = {k: tf.constant(v, tf.int32) for k, v in _feed(ids, mask, types).items()}
    mine = tf.saved_model.load(remote).signatures["serving_default"](**feed)
    theirs = tf.saved_model.load(local).signatures["serving_default"](**feed)
    assert set(mine) == set(theirs) == {"last_hidden_state", "pooler_output"}
    for k in mine:
        np.testing.assert_array_equal(mine[k].numpy(), theirs[k].numpy())
    np.testing.assert_allclose(mine["last_hidden_state"].numpy(), _outputs(model), atol=1e-5)


def test_run_folder_models_round_trip_through_ram(ram):
    model = _task("regression", num_labels=1)
    save_model(model, f"{ram}/run", "student.weights.h5", "student.json", extra={"step": 3})
    assert set(fs.listdir(f"{ram}/run")) == {"student.weights.h5", "student.json"}
    np.testing.assert_array_equal(_outputs(load_model(f"{ram}/run", "student.weights.h5", "student.json"),
                                           "logits"), _outputs(model, "logits"))
    with pytest.raises(CheckpointError, match="no such file"):
        load_model(f"{ram}/nothing", "student.weights.h5", "student.json")


# -------------------------------------------------------------------------------------------------------- sources
def test_remote_sources_are_paths_never_hub_ids(ram):
    for missing in (f"{ram}/absent", f"{ram}/org/name"):
        with pytest.raises(CheckpointError, match="no such file or folder"):
            load_any(missing)
        with pytest.raises(CheckpointError, match="not a folder with config.json"):
            resolve_source(missing)


def test_hf_weight_formats_read_from_ram(tmp_path, ram):
    """transformers' own folder (safetensors), a pytorch_model.bin and a tf_model.h5 on the store."""
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=37, max_position_embeddings=40, initializer_range=0.2)
    ref = transformers.BertModel(cfg).eval()
    ref.save_pretrained(tmp_path / "st")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "config.json").write_bytes((tmp_path / "st" / "config.json").read_bytes())
    torch.save(ref.state_dict(), bin_dir / "pytorch_model.bin")
    local = load_any(str(tmp_path / "st")).model
    for name in ("st", "bin"):
        remote = _upload(tmp_path / name, f"{ram}/{name}")
        loaded = load_any(remote)
        assert loaded.source == remote
        np.testing.assert_array_equal(_outputs(loaded.model), _outputs(local))

    # tf_model.h5 (read through a local copy: h5py needs a real file)
    import h5py
    with h5py.File(tmp_path / "tf_model.h5", "w") as f:
        f.create_dataset("bert/tf_bert_model/bert/pooler/dense/bias:0", data=np.arange(3, dtype=np.float32))
    fs.copy(str(tmp_path / "tf_model.h5"), f"{ram}/tf_model.h5")
    np.testing.assert_array_equal(read_hf_tf_h5(f"{ram}/tf_model.h5")["bert.pooler.dense.bias"], np.arange(3))
    with pytest.raises(CheckpointError, match="cannot read HDF5 file"):
        read_hf_tf_h5(f"{ram}/missing/tf_model.h5")


def test_google_checkpoint_folder_read_from_ram(tmp_path, ram):
    from test_convert_google import _tiny_bert, write_google_checkpoint
    src = write_google_checkpoint(str(tmp_path / "google"), _tiny_bert(seed=2))
    folder = src if os.path.isdir(src) else os.path.dirname(src)
    remote = _upload(folder, f"{ram}/google")
    assert detect_format(remote) == "google"
    loaded, reference = load_any(remote), load_any(folder)
    assert loaded.format == "google" and loaded.source.startswith(remote + "/")
    np.testing.assert_array_equal(_outputs(loaded.model), _outputs(reference.model))


# ---------------------------------------------------------------------------------------------------- command line
def test_cli_converts_ram_to_ram(tmp_path, ram, capsys, quiet_env):
    model = _encoder(seed=7)
    src = export_hf(model, f"{ram}/src", tokenizer=_vocab(tmp_path / "tok"))
    capsys.readouterr()
    assert cli.main(["--input", src, "--output", f"{ram}/out-hf", "--format", "hf"]) == 0, capsys.readouterr()
    assert "wrote hf to ram://" in capsys.readouterr().out
    assert io.committed(f"{ram}/out-hf")
    assert _files(f"{ram}/out-hf") == {"config.json", "model.safetensors", "vocab.txt"}
    np.testing.assert_array_equal(_outputs(load_any(f"{ram}/out-hf").model), _outputs(load_any(src).model))

    # SavedModel on the store, checked against the source, then verified by the command itself (which reads the
    # remote source with transformers and its tokenizer through local copies).
    assert cli.main(["--input", src, "--output", f"{ram}/out-sm", "--format", "saved_model"]) == 0
    ids, mask, types = _batch()
    serve = tf.saved_model.load(f"{ram}/out-sm").signatures["serving_default"]
    out = serve(**{k: tf.constant(v, tf.int32) for k, v in _feed(ids, mask, types).items()})
    np.testing.assert_allclose(out["last_hidden_state"].numpy(), _outputs(model), atol=1e-5)
    assert fs.isfile(f"{ram}/out-sm/tokenizer/vocab.txt")

    capsys.readouterr()
    assert cli.main(["--input", src, "--output", f"{ram}/out-keras", "--format", "keras", "--verify",
                     "--tolerance", "1e-4"]) == 0
    captured = capsys.readouterr()
    assert "sentences tokenized by ram://" in captured.out and " OK" in captured.out, captured
    assert "note:" not in captured.err, captured.err


def test_cli_refusals_on_remote_paths(ram, capsys, quiet_env):
    src = export_hf(_encoder(seed=8), f"{ram}/model")
    io.write_text(f"{ram}/precious/thesis.tex", "do not delete")
    for output in (src, f"{src}/", ram):  # the input itself, or a folder holding it
        capsys.readouterr()
        assert cli.main(["--input", src, "--output", output, "--format", "hf"]) == 2
        assert "would replace the input" in capsys.readouterr().err
    assert cli.main(["--input", f"{ram}/absent", "--output", f"{ram}/o", "--format", "hf"]) == 2
    err = capsys.readouterr().err
    assert "no such file or folder" in err and "hub" not in err, err
    assert cli.main(["--input", src, "--output", f"{ram}/precious", "--format", "keras"]) == 2
    assert "not a previous export" in capsys.readouterr().err
    assert fs.listdir(f"{ram}/precious") == ["thesis.tex"]
    with pytest.raises(UserError, match="not a previous export"):
        save_keras(_encoder(seed=8), f"{ram}/precious")
    assert cli.main(["--input", src, "--output", f"{ram}/precious", "--format", "keras", "--overwrite"]) == 0
    assert load_keras(f"{ram}/precious").built
