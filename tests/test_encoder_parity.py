"""The Keras encoder computes what transformers' PyTorch models compute, for every supported architecture."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from xtremedistil_tf.convert.hf import encoder_state_dict, load_hf_encoder  # noqa: E402

TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=40, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def _tiny(arch):
    if arch == "bert":
        return transformers.BertConfig(**TINY, type_vocab_size=3)
    if arch == "roberta":
        return transformers.RobertaConfig(**TINY, type_vocab_size=1, pad_token_id=1)
    if arch == "xlm-roberta":
        return transformers.XLMRobertaConfig(**TINY, type_vocab_size=1, pad_token_id=1, hidden_act="gelu_new")
    if arch == "electra":
        return transformers.ElectraConfig(**TINY, embedding_size=16, type_vocab_size=2)
    if arch == "distilbert":
        return transformers.DistilBertConfig(vocab_size=99, dim=32, n_layers=2, n_heads=4, hidden_dim=37,
                                             max_position_embeddings=40, dropout=0.0, attention_dropout=0.0)
    raise ValueError(arch)


def _batch(cfg, seed=0):
    """Three sequences of lengths 12, 7 and 3, padded with the architecture's pad id."""
    rng = np.random.default_rng(seed)
    pad = cfg.pad_token_id
    ids = rng.integers(3, cfg.vocab_size, size=(3, 12))
    mask = np.zeros((3, 12), np.int64)
    for row, n in enumerate((12, 7, 3)):
        mask[row, :n] = 1
        ids[row, n:] = pad
    types = np.zeros_like(ids)
    if getattr(cfg, "type_vocab_size", 0) and cfg.type_vocab_size > 1:
        types[:, 5:] = 1
        types *= mask
    return ids, mask, types


@pytest.mark.parametrize("arch", ["bert", "roberta", "xlm-roberta", "electra", "distilbert"])
@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_tiny_architecture_matches_pytorch(arch, fmt, tmp_path):
    torch.manual_seed(0)
    cfg = _tiny(arch)
    ref = transformers.AutoModel.from_config(cfg, attn_implementation="eager").eval()
    ref.save_pretrained(tmp_path, safe_serialization=fmt == "safetensors")
    ids, mask, types = _batch(cfg)
    feed = {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}
    if arch != "distilbert":
        feed["token_type_ids"] = torch.tensor(types)
    with torch.no_grad():
        out = ref(**feed, output_hidden_states=True, output_attentions=True)

    loaded = load_hf_encoder(str(tmp_path))
    ours = loaded.encoder({"input_ids": ids, "attention_mask": mask, "token_type_ids": types},
                          output_attentions=True)
    assert len(ours["hidden_states"]) == len(out.hidden_states) == cfg.num_hidden_layers + 1 \
        if arch != "distilbert" else len(ours["hidden_states"]) == len(out.hidden_states) == 3
    m = mask[:, :, None].astype(bool)
    for theirs, mine in zip(out.hidden_states, ours["hidden_states"]):
        # Padding positions carry no meaning (and differ by mask implementation); compare real tokens.
        np.testing.assert_allclose(np.where(m, mine.numpy(), 0), np.where(m, theirs.numpy(), 0), atol=1e-5)
    for theirs, mine in zip(out.attentions, ours["attentions"]):
        q = mask[:, None, :, None].astype(bool)
        np.testing.assert_allclose(np.where(q, mine.numpy(), 0), np.where(q, theirs.numpy(), 0), atol=1e-5)
    if hasattr(out, "pooler_output") and out.pooler_output is not None:
        np.testing.assert_allclose(ours["pooled_output"].numpy(), out.pooler_output.numpy(), atol=1e-5)
    else:
        assert "pooled_output" not in ours


@pytest.mark.parametrize("arch", ["bert", "roberta", "electra", "distilbert"])
def test_state_dict_round_trip_is_exact(arch, tmp_path):
    torch.manual_seed(1)
    ref = transformers.AutoModel.from_config(_tiny(arch))
    ref.save_pretrained(tmp_path)
    encoder = load_hf_encoder(str(tmp_path)).encoder
    exported = encoder_state_dict(encoder)
    original = {k: v.numpy() for k, v in ref.state_dict().items() if not k.endswith("position_ids")}
    assert set(exported) == set(original)
    for k in original:
        np.testing.assert_array_equal(exported[k], original[k], err_msg=k)
