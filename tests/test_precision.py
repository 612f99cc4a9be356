"""The encoder under Keras mixed-precision policies: it builds, runs, keeps float32 variables, and stays close to
float32.

Tolerances come from the formats' unit roundoff u (half the distance between 1 and the next number): float16 has an
11-bit significand, u = 2**-11 ~ 4.9e-4 (about 3.3 significant digits); bfloat16 has an 8-bit significand,
u = 2**-8 ~ 3.9e-3 (about 2.4 digits). Every hidden state is the output of a LayerNorm, so its elements have a scale
set by the LayerNorm (RMS ~ 0.4-0.7 for MiniLM, with a few outlier dimensions up to ~10); errors are measured
relative to that RMS over the real tokens. Rounding the embedding output alone gives a relative RMS error of about
u; six blocks of matmuls (accumulated in float32), GELU and residual sums grow it to about 3u at the last layer
(measured on MiniLM: 1.5e-3 in float16, 1.2e-2 in bfloat16, i.e. 3.0u for both), and the largest single error to
about 20-25u x RMS. The bounds below are 8u (relative RMS) and 64u x RMS (largest element), a margin of about
2.7x over the measurement, and still tight enough to fail if any block silently ran at a coarser precision or if
the attention mask or softmax lost its float32 handling (those errors are O(1)).
"""
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402

from xtremedistil_tf.models.encoder import Encoder  # noqa: E402
from xtremedistil_tf.models.heads import TaskModel  # noqa: E402

UNIT_ROUNDOFF = {"mixed_float16": 2.0 ** -11, "mixed_bfloat16": 2.0 ** -8}
COMPUTE = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}
POLICIES = sorted(UNIT_ROUNDOFF)
SENTENCES = ["Hello world!", "The quick brown fox jumps over the lazy dog.",
             "Knowledge distillation trains a small student model to reproduce the predictions of a much larger "
             "teacher, so that it runs fast on modest hardware.", "Short."]


@pytest.fixture
def global_policy():
    """Sets a global Keras policy for the test and always restores the previous one."""
    previous = keras.config.dtype_policy()
    yield keras.config.set_dtype_policy
    keras.config.set_dtype_policy(previous)


def _check_close(reference, mixed, mask, u):
    m = mask.astype(bool)
    assert len(reference) == len(mixed)
    for layer, (h32, hlow) in enumerate(zip(reference, mixed)):
        h32 = np.asarray(h32)[m]
        hlow = np.asarray(tf.cast(hlow, tf.float32))[m]
        assert np.isfinite(hlow).all(), layer
        rms = np.sqrt(np.mean(h32 ** 2))
        err = np.abs(hlow - h32)
        rel_rms = np.sqrt(np.mean(err ** 2)) / rms
        assert rel_rms < 8 * u, (layer, rel_rms, 8 * u)
        assert err.max() < 64 * u * rms, (layer, err.max(), 64 * u * rms)


@pytest.mark.parametrize("policy", POLICIES)
def test_minilm_under_mixed_policy_is_close_to_float32(policy, minilm_dir):
    transformers = pytest.importorskip("transformers")
    from xtremedistil_tf.convert.hf import load_hf_encoder
    tok = transformers.AutoTokenizer.from_pretrained(str(minilm_dir))
    batch = dict(tok(SENTENCES, padding=True, return_tensors="np"))
    reference = load_hf_encoder(str(minilm_dir)).encoder(batch)
    encoder = load_hf_encoder(str(minilm_dir), dtype=policy).encoder  # dtype= reaches every sublayer
    assert encoder.transformer_layers[3].intermediate.compute_dtype == COMPUTE[policy]
    assert all(w.dtype == "float32" for w in encoder.weights)  # variables stay float32
    out = encoder(batch, output_attentions=True)
    assert out["sequence_output"].dtype == COMPUTE[policy]
    assert all(a.dtype == tf.float32 for a in out["attentions"])  # softmax in float32
    _check_close(reference["hidden_states"], out["hidden_states"], batch["attention_mask"], UNIT_ROUNDOFF[policy])
    pooled = np.asarray(tf.cast(out["pooled_output"], tf.float32))
    # tanh output in [-1, 1], its error at most its argument's: 8u absolute (measured about 0.6u in both formats).
    np.testing.assert_allclose(pooled, reference["pooled_output"], atol=8 * UNIT_ROUNDOFF[policy])


TINY = dict(vocab_size=97, hidden_size=64, num_layers=2, num_heads=4, intermediate_size=96,
            max_position_embeddings=40, dropout=0.0, attention_dropout=0.0, initializer_range=0.1)


def _batch():
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 97, size=(3, 12))
    mask = np.zeros_like(ids)
    for row, n in enumerate((12, 7, 1)):
        mask[row, :n] = 1
        ids[row, n:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("arch", ["bert", "roberta", "electra", "distilbert"])
def test_global_policy_builds_runs_and_trains(policy, arch, global_policy):
    extra = {"roberta": dict(type_vocab_size=1, pad_token_id=1), "electra": dict(embedding_size=32),
             "distilbert": dict(type_vocab_size=0, use_pooler=False)}.get(arch, {})
    batch = _batch()
    if arch == "roberta":
        batch["input_ids"] = np.where(batch["attention_mask"] == 1, batch["input_ids"] + 1, 1) % 97
    keras.utils.set_random_seed(0)
    fp32 = TaskModel(Encoder(**TINY, **extra, architecture=arch), 3, "classification")
    fp32.build()
    reference = fp32(batch)

    global_policy(policy)  # restored by the fixture whatever happens
    model = TaskModel(Encoder(**TINY, **extra, architecture=arch), 3, "classification")
    model.build()
    model.set_weights(fp32.get_weights())
    assert model.encoder.compute_dtype == COMPUTE[policy]
    assert all(w.dtype == "float32" for w in model.weights)
    out = model(batch)
    assert out["sequence_output"].dtype == COMPUTE[policy]
    assert out["logits"].dtype == tf.float32  # the head's output layer is pinned to float32
    _check_close(reference["hidden_states"], out["hidden_states"], batch["attention_mask"], UNIT_ROUNDOFF[policy])

    # A training step's gradients exist and are finite under the policy.
    with tf.GradientTape() as tape:
        logits = model(batch, training=True)["logits"]
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(tf.constant([0, 1, 2]), logits))
    grads = tape.gradient(loss, model.trainable_variables)
    assert all(g is None or bool(tf.reduce_all(tf.math.is_finite(tf.convert_to_tensor(g)))) for g in grads)
    unused = [v.path for v, g in zip(model.trainable_variables, grads) if g is None]
    assert all("pooler" in p for p in unused), unused  # roberta/electra heads read the first token, not the pooler


def test_policy_survives_get_config():
    encoder = Encoder(**TINY, dtype="mixed_bfloat16")
    clone = Encoder.from_config(encoder.get_config())
    assert clone.dtype_policy.name == "mixed_bfloat16"
    assert clone.transformer_layers[0].attention.query.dtype_policy.name == "mixed_bfloat16"
