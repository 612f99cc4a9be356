"""The stage plan and the layer groups: the faithful policy reproduces the original's stages and frozen sets."""
import numpy as np
import pytest

from xtremedistil_tf.distill.plan import build_plan
from xtremedistil_tf.distill.policy import policy_for
from xtremedistil_tf.distill.student import Student, pca_compress
from xtremedistil_tf.models.encoder import Encoder

# The original release (run_xtreme_distil.py): for stage in range(1, 2L + 4) with L groups from a Python set,
# stage 1 trains the encoder and projection on representations; stage 2 freezes every group (classifier only);
# stages 3..2+L unfreeze one more group each; stage 3+L re-freezes; stages > 3+L unfreeze again.
ORIGINAL_TWO_GROUPS = [
    ("representation", {"student", "dense"}),
    ("logits", {"head"}),
    ("logits", {"head", "dense"}),
    ("logits", {"head", "dense", "student"}),
    ("labels", {"head"}),
    ("labels", {"head", "dense"}),
    ("labels", {"head", "dense", "student"}),
]


def _plan(mode, *, num_layers, has_projection, unfreeze_order="dense,student"):
    groups = policy_for(mode).unfreeze_groups(num_layers=num_layers, has_projection=has_projection,
                                              unfreeze_order=unfreeze_order)
    return build_plan(groups, has_projection=has_projection)


def test_faithful_plan_equals_the_original_with_a_projection():
    plan = _plan("faithful", num_layers=2, has_projection=True, unfreeze_order="dense,student")
    assert [(s.loss, set(s.trainable)) for s in plan] == ORIGINAL_TWO_GROUPS
    assert [s.index for s in plan] == list(range(1, 8))
    # the order is an input (the original's Python-set order depends on the hash seed and interpreter)
    other = _plan("faithful", num_layers=2, has_projection=True, unfreeze_order="student,dense")
    assert other[2].trainable == ("head", "student")


def test_faithful_plan_without_projection_has_2L_plus_3_stages():
    plan = _plan("faithful", num_layers=4, has_projection=False)
    assert [(s.loss, s.trainable) for s in plan] == [
        ("representation", ("student",)), ("logits", ("head",)), ("logits", ("head", "student")),
        ("labels", ("head",)), ("labels", ("head", "student"))]


def test_default_plan_unfreezes_blocks_top_down_then_embeddings():
    plan = _plan("default", num_layers=3, has_projection=True)
    logits = [s.trainable for s in plan if s.loss == "logits"]
    assert logits == [("head",), ("head", "transformer_layer_2"),
                      ("head", "transformer_layer_2", "transformer_layer_1"),
                      ("head", "transformer_layer_2", "transformer_layer_1", "transformer_layer_0"),
                      ("head", "transformer_layer_2", "transformer_layer_1", "transformer_layer_0", "embeddings")]
    assert [s.trainable for s in plan if s.loss == "labels"] == logits


def _student(projected_head):
    enc = Encoder(vocab_size=50, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32)
    s = Student(enc, 3, "classification", teacher_hidden_size=32, projected_head=projected_head)
    s.build()
    return s


@pytest.mark.parametrize("projected_head", [True, False])
def test_layer_groups_partition_the_student(projected_head):
    s = _student(projected_head)
    ids = lambda vs: {id(v) for v in vs}  # noqa: E731
    student, dense, head = (ids(s.group_variables(g)) for g in ("student", "dense", "head"))
    assert len(dense) == 2 and dense.isdisjoint(student)
    assert ids([s.classifier.kernel, s.classifier.bias]) <= head
    blocks = [ids(s.group_variables(f"transformer_layer_{i}")) for i in range(2)]
    emb = ids(s.group_variables("embeddings"))
    assert emb | blocks[0] | blocks[1] <= student
    if projected_head:  # the original's head sits on the projection; the pooler is part of the encoder group only
        assert head == ids([s.classifier.kernel, s.classifier.bias])
    word = s.encoder.embeddings.word_embeddings.embeddings
    assert id(word) in emb
    assert id(word) not in ids(s.group_variables("embeddings", frozen_word_embeddings=True))


def test_projected_head_is_projection_then_classifier():
    s = _student(True)
    x = {"input_ids": np.array([[2, 5, 7, 3]]), "attention_mask": np.ones((1, 4)), "token_type_ids": np.zeros((1, 4))}
    out = s(x, with_representations=True)
    proj = out["representations"][0].numpy()
    expected = proj @ s.classifier.kernel.numpy() + s.classifier.bias.numpy()
    np.testing.assert_allclose(out["logits"].numpy(), expected, atol=1e-5)


def test_pca_matches_sklearn_up_to_component_sign():
    sklearn = pytest.importorskip("sklearn.decomposition")
    rng = np.random.default_rng(0)
    m = rng.normal(size=(200, 12)) @ rng.normal(size=(12, 12))
    ours = pca_compress(m, 4)
    ref = sklearn.PCA(n_components=4, svd_solver="full").fit_transform(m)
    signs = np.sign((ours * ref).sum(axis=0))
    np.testing.assert_allclose(ours, ref * signs, atol=1e-4)


def test_compression_of_a_scratch_student_is_lost_in_faithful_mode_and_applied_in_default():
    """The original's from-scratch student replaced the PCA matrix when built: in faithful mode the flag leaves the
    student as the seed makes it (and its embeddings trainable under --freeze_word_embedding); the default mode
    starts from the teacher's PCA and keeps them frozen when asked."""
    import keras

    from xtremedistil_tf.distill.config import DistilConfig
    from xtremedistil_tf.distill.student import build_student
    teacher = np.random.default_rng(0).normal(size=(50, 32)).astype(np.float32)

    def words(mode, **flags):
        keras.utils.set_random_seed(7)
        cfg = DistilConfig(task="t", model_dir="m", mode=mode, hidden_size=16, num_hidden_layers=1,
                           num_attention_heads=2, **flags)
        s = build_student(cfg, vocab_size=50, num_labels=2, teacher_hidden_size=32, teacher_word_embeddings=teacher)
        frozen = s.encoder.embeddings.word_embeddings.embeddings
        trainable = {id(v) for v in s.group_variables("embeddings",
                                                      frozen_word_embeddings=cfg.word_embeddings_frozen)}
        return frozen.numpy(), id(frozen) in trainable

    plain, plain_trains = words("faithful")
    for flags in ({"compress_word_embedding": True}, {"freeze_word_embedding": True}):
        matrix, trains = words("faithful", **flags)
        assert np.array_equal(matrix, plain) and trains and plain_trains, flags
    matrix, trains = words("default", freeze_word_embedding=True)
    np.testing.assert_allclose(matrix, pca_compress(teacher, 16), atol=1e-6)
    assert not trains


@pytest.mark.parametrize("mode", ["default", "faithful"])
def test_student_attention_maps_before_or_after_dropout(mode):
    """Faithful mode reports the student's attention probabilities after attention dropout, as transformers' TF
    BERT (the original's student) returned and trained on them; the default mode reports softmax's. Either way the
    context is the dropped probabilities times the values, and inference is unchanged."""
    import keras
    import tensorflow as tf

    from xtremedistil_tf.distill.config import DistilConfig
    from xtremedistil_tf.distill.student import build_student
    from xtremedistil_tf.models.layers import padding_bias
    keras.utils.set_random_seed(3)
    cfg = DistilConfig(task="t", model_dir="m", mode=mode, hidden_size=16, num_hidden_layers=1,
                       num_attention_heads=2, student_dropout=0.5)
    s = build_student(cfg, vocab_size=50, num_labels=2, teacher_hidden_size=32, teacher_word_embeddings=None)
    attention = s.encoder.transformer_layers[0].attention
    assert attention.return_dropped_probs == (mode == "faithful")
    x = tf.random.normal((2, 5, 16))
    mask = tf.constant([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    tf.random.set_seed(0)
    context, probs = attention(x, padding_bias(mask), training=True)
    v = tf.transpose(tf.reshape(attention.value(x), [2, 5, 2, 8]), [0, 2, 1, 3])
    rebuilt = tf.reshape(tf.transpose(tf.matmul(probs, v), [0, 2, 1, 3]), [2, 5, 16])
    sums = tf.reduce_sum(probs, -1).numpy()
    if mode == "faithful":  # the probabilities the context was made of: zeros and 1/(1-p) scaling
        np.testing.assert_allclose(rebuilt.numpy(), context.numpy(), atol=1e-5)
        assert np.abs(sums - 1).max() > 0.1
    else:
        np.testing.assert_allclose(sums, 1.0, atol=1e-5)
        assert np.abs(rebuilt.numpy() - context.numpy()).max() > 1e-3
    _, infer = attention(x, padding_bias(mask), training=False)
    np.testing.assert_allclose(tf.reduce_sum(infer, -1).numpy(), 1.0, atol=1e-5)
