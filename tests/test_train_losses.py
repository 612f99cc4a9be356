"""Label losses: the span loss of extractive QA is Hugging Face's, and padding changes nothing."""
import numpy as np
import tensorflow as tf

from xtremedistil_tf.train.losses import LabelLoss, span_cross_entropy


def _ce(logits, label):
    return float(np.log(np.exp(logits).sum()) - logits[label])


def test_span_cross_entropy_is_the_mean_of_start_and_end_cross_entropies_over_real_tokens():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 6, 2)).astype("float32")
    labels = np.array([[1, 3], [0, 0]], "int32")
    mask = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], "int32")
    got = span_cross_entropy(tf.constant(logits), tf.constant(labels), tf.constant(mask)).numpy()
    for b in range(2):
        n = int(mask[b].sum())
        want = (_ce(logits[b, :n, 0], labels[b, 0]) + _ce(logits[b, :n, 1], labels[b, 1])) / 2
        np.testing.assert_allclose(got[b], want, rtol=1e-5)
    # A batch cut to its longest example gives the same loss as the padded one.
    cut = span_cross_entropy(tf.constant(logits[1:, :3]), tf.constant(labels[1:]), tf.constant(mask[1:, :3]))
    np.testing.assert_allclose(cut.numpy(), got[1:], rtol=1e-6)
    # LabelLoss("qa") reads the batch's (start, end) labels.
    loss = LabelLoss("qa")({"logits": tf.constant(logits)}, None, {"labels": tf.constant(labels)}, tf.constant(mask))
    np.testing.assert_allclose(loss.numpy(), got, rtol=1e-6)


def test_span_cross_entropy_without_mask_matches_transformers():
    torch = __import__("pytest").importorskip("torch")
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3, 5, 2)).astype("float32")
    labels = np.array([[0, 0], [2, 4], [1, 1]], "int32")
    ours = span_cross_entropy(tf.constant(logits), tf.constant(labels)).numpy().mean()
    ce = torch.nn.CrossEntropyLoss()
    t = torch.tensor(logits)
    theirs = (ce(t[:, :, 0], torch.tensor(labels[:, 0]).long()) + ce(t[:, :, 1], torch.tensor(labels[:, 1]).long())) / 2
    np.testing.assert_allclose(ours, float(theirs), rtol=1e-6)
