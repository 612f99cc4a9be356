"""Distillation loss objects against plain numpy references, and the Distiller's forward pass."""
import numpy as np
import pytest
import tensorflow as tf

from xtremedistil_tf.distill.losses import (AttentionLoss, LabelLoss, LogitsKL, LogitsMSE, RepresentationLoss,
                                            attention_mse, kl_divergence)

rng = np.random.default_rng(0)


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_logits_mse_is_the_mean_square_error_per_example():
    s, t = rng.normal(size=(4, 3)).astype("float32"), rng.normal(size=(4, 3)).astype("float32")
    out = LogitsMSE()({"logits": s}, None, {"t_logits": t}, None).numpy()
    np.testing.assert_allclose(out, ((s - t) ** 2).mean(-1), rtol=1e-6)
    assert np.all(LogitsMSE()({"logits": t}, None, {"t_logits": t}, None).numpy() == 0)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_logits_kl_matches_numpy_and_is_zero_for_equal_logits(temperature):
    s, t = rng.normal(size=(5, 4)).astype("float32"), rng.normal(size=(5, 4)).astype("float32")
    p, q = _softmax(t / temperature), _softmax(s / temperature)
    expected = (p * (np.log(p) - np.log(q))).sum(-1) * temperature ** 2
    out = LogitsKL(temperature)({"logits": s}, None, {"t_logits": t}, None).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    assert np.all(out > 0)
    np.testing.assert_allclose(kl_divergence(t, t, temperature).numpy(), 0.0, atol=1e-6)


def test_token_level_kl_counts_real_tokens_only():
    s, t = rng.normal(size=(2, 5, 3)).astype("float32"), rng.normal(size=(2, 5, 3)).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], "int32")
    full = kl_divergence(s, t, 1.0).numpy()
    masked = kl_divergence(s, t, 1.0, mask).numpy()
    per_token = (_softmax(t) * (np.log(_softmax(t)) - np.log(_softmax(s)))).sum(-1)
    np.testing.assert_allclose(full, per_token.mean(-1), rtol=1e-5)
    np.testing.assert_allclose(masked, [per_token[0, :3].mean(), per_token[1].mean()], rtol=1e-5)


def test_representation_loss_cached_and_online():
    reps = [rng.normal(size=(3, 8)).astype("float32") for _ in range(2)]
    cached = RepresentationLoss(online=False, token_level=False)
    assert cached.needs == {"representations"}
    t_rep = rng.normal(size=(3, 8)).astype("float32")
    out = cached({"representations": reps[:1]}, None, {"t_rep_0": t_rep}, None).numpy()
    np.testing.assert_allclose(out, ((reps[0] - t_rep) ** 2).mean(-1), rtol=1e-6)
    # online: the student's top representations against the teacher's top hidden states' first token
    online = RepresentationLoss(online=True, token_level=False)
    assert online.needs == {"representations", "teacher"}
    hidden = [rng.normal(size=(3, 4, 8)).astype("float32") for _ in range(3)]
    out = online({"representations": reps}, {"hidden_states": hidden}, {}, None).numpy()
    expected = ((reps[0] - hidden[-1][:, 0]) ** 2).mean(-1) + ((reps[1] - hidden[-2][:, 0]) ** 2).mean(-1)
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_attention_loss_ignores_padding_when_masked():
    s = _softmax(rng.normal(size=(2, 2, 4, 4))).astype("float32")
    t = _softmax(rng.normal(size=(2, 2, 4, 4))).astype("float32")
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1]], "int32")
    out = AttentionLoss()({"attentions": [s]}, {"attentions": [t]}, {}, mask).numpy()
    pair = mask[:, None, :, None] * mask[:, None, None, :]
    err = (s - t) ** 2 * pair
    np.testing.assert_allclose(out, err.sum((1, 2, 3)) / (pair.sum((1, 2, 3)) * 2), rtol=1e-5)
    # padding positions do not change the loss
    s2 = s.copy()
    s2[0, :, 3, :] = 0.25
    np.testing.assert_allclose(AttentionLoss()({"attentions": [s2]}, {"attentions": [t]}, {}, mask).numpy()[0],
                               out[0], rtol=1e-6)
    np.testing.assert_allclose(attention_mse(s, s, mask).numpy(), 0.0, atol=1e-7)


def test_label_loss_classification_regression_and_tokens():
    logits = rng.normal(size=(3, 4)).astype("float32")
    labels = np.array([0, 3, 1])
    out = LabelLoss("classification")({"logits": logits}, None, {"labels": labels}, None).numpy()
    np.testing.assert_allclose(out, -np.log(_softmax(logits)[np.arange(3), labels]), rtol=1e-5)
    reg = LabelLoss("regression")({"logits": logits[:, :1]}, None, {"labels": np.array([0.5, 1.0, 2.0])}, None)
    np.testing.assert_allclose(reg.numpy(), (logits[:, 0] - [0.5, 1.0, 2.0]) ** 2, rtol=1e-5)
    tok = rng.normal(size=(1, 3, 2)).astype("float32")
    out = LabelLoss("ner")({"logits": tok}, None, {"labels": np.array([[1, -1, 0]])}, np.array([[1, 1, 0]])).numpy()
    np.testing.assert_allclose(out, -np.log(_softmax(tok)[0, 0, 1]), rtol=1e-5)  # -1 and masked positions left out


def test_distiller_runs_the_teacher_only_when_a_loss_reads_it():
    from xtremedistil_tf.distill.distiller import Distiller
    from xtremedistil_tf.distill.student import Student
    from xtremedistil_tf.models.encoder import Encoder
    from xtremedistil_tf.models.heads import TaskModel

    enc = Encoder(vocab_size=60, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32)
    student = Student(enc, 2, "classification", teacher_hidden_size=24)
    student.build()
    t_enc = Encoder(vocab_size=60, hidden_size=24, num_layers=2, num_heads=2, intermediate_size=32)
    calls = []

    class CountingTeacher(TaskModel):
        def call(self, *args, **kwargs):
            calls.append(1)
            return super().call(*args, **kwargs)

    teacher = CountingTeacher(t_enc, 2, kind="classification")
    teacher.build()
    batch = {"input_ids": rng.integers(1, 60, (3, 6)).astype("int32"), "attention_mask": np.ones((3, 6), "int32"),
             "token_type_ids": np.zeros((3, 6), "int32"), "t_logits": rng.normal(size=(3, 2)).astype("float32"),
             "t_rep_0": rng.normal(size=(3, 24)).astype("float32")}
    logits = Distiller(student, teacher, [LogitsMSE()]).per_example_loss(batch, False)
    cached = Distiller(student, teacher, [RepresentationLoss(online=False, token_level=False)])
    cached_loss = cached.per_example_loss(batch, False)
    assert not calls and logits.shape == cached_loss.shape == (3,)
    online = Distiller(student, teacher, [RepresentationLoss(online=True, token_level=False)])
    assert online.per_example_loss(batch, False).shape == (3,) and calls == [1]
    # the sum of several losses is their sum
    both = Distiller(student, teacher, [LogitsMSE(), RepresentationLoss(online=False, token_level=False)])
    np.testing.assert_allclose(both.per_example_loss(batch, False).numpy(), (logits + cached_loss).numpy(),
                               rtol=1e-6)
    assert tf.reduce_all(both.test_step(batch)["loss"] > 0)


def test_span_kl_is_a_softmax_over_tokens_that_ignores_padding():
    import numpy as np
    import tensorflow as tf

    from xtremedistil_tf.distill.losses import SpanLogitsKL
    rng = np.random.default_rng(0)
    student = rng.normal(size=(3, 7, 2)).astype("float32")
    teacher = rng.normal(size=(3, 7, 2)).astype("float32")
    mask = np.ones((3, 7), "int32")
    mask[1, 4:] = 0
    loss = SpanLogitsKL(2.0)
    got = loss({"logits": tf.constant(student)}, None, {"t_logits": tf.constant(teacher)}, tf.constant(mask)).numpy()

    def kl(s, t, temp=2.0):  # KL(p_t || p_s) over tokens, times T^2
        p = np.exp(t / temp) / np.exp(t / temp).sum()
        log_q = s / temp - np.log(np.exp(s / temp).sum())
        return float((p * (np.log(p) - log_q)).sum() * temp * temp)

    for b in range(3):
        n = int(mask[b].sum())
        want = (kl(student[b, :n, 0], teacher[b, :n, 0]) + kl(student[b, :n, 1], teacher[b, :n, 1])) / 2
        np.testing.assert_allclose(got[b], want, rtol=1e-5)
    same = loss({"logits": tf.constant(teacher)}, None, {"t_logits": tf.constant(teacher)}, tf.constant(mask))
    np.testing.assert_allclose(same.numpy(), 0.0, atol=1e-6)
    # Changing padded positions changes nothing.
    padded = student.copy()
    padded[1, 4:] = 50.0
    again = loss({"logits": tf.constant(padded)}, None, {"t_logits": tf.constant(teacher)}, tf.constant(mask))
    np.testing.assert_allclose(again.numpy(), got, rtol=1e-6)
