"""MiniLM / MiniLMv2 self-attention relation losses against a plain numpy reference over each example's real tokens."""
import numpy as np
import pytest
import tensorflow as tf

from xtremedistil_tf.distill.relations import MiniLMLoss, MiniLMv2Loss, attention_kl, relation_kl, relation_log_probs

rng = np.random.default_rng(0)
LENGTHS = [5, 3, 1, 4]  # real lengths of the examples in a batch padded to T = 5
MULTI = np.array(LENGTHS) > 1  # an example of one real token has single-point distributions: its KL is always 0
T = 5


def _mask(lengths, t):
    return (np.arange(t)[None, :] < np.array(lengths)[:, None]).astype("int32")


def _normal(*shape):
    return rng.normal(size=shape).astype("float32")


def _attention(lengths, heads, t):
    """Attention probabilities as the encoder gives them: softmax over the real keys, 0 on padded keys; padded
    query rows hold arbitrary distributions over the real keys."""
    scores = rng.normal(size=(len(lengths), heads, t, t)) * 2
    scores = np.where(_mask(lengths, t)[:, None, None, :] == 0, -np.inf, scores)
    e = np.exp(scores - scores.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype("float32")


# --- numpy reference: slice each example to its real length, float64, plain loops


def _np_log_softmax(s):
    s = s - s.max(-1, keepdims=True)
    return s - np.log(np.exp(s).sum(-1, keepdims=True))


def _np_relation(x, heads):
    """[n, H] -> [heads, n, n] log-probabilities of the scaled self dot-products of each relation head."""
    n, h = x.shape
    size = h // heads
    split = x.astype("float64").reshape(n, heads, size).transpose(1, 0, 2)
    return _np_log_softmax(split @ split.transpose(0, 2, 1) / np.sqrt(size))


def _np_relation_kl(s, t, heads, lengths):
    out = []
    for b, n in enumerate(lengths):
        if n == 0:
            out.append(0.0)
            continue
        lp, lq = _np_relation(t[b, :n], heads), _np_relation(s[b, :n], heads)
        out.append((np.exp(lp) * (lp - lq)).sum(-1).mean())  # mean over heads and real query rows
    return np.array(out)


def _np_attention_kl(s, t, lengths):
    out = []
    for b, n in enumerate(lengths):
        if n == 0:
            out.append(0.0)
            continue
        p, q = t[b, :, :n, :n].astype("float64"), s[b, :, :n, :n].astype("float64")
        terms = np.where(p > 0, p * (np.log(np.where(p > 0, p, 1.0)) - np.log(q)), 0.0)
        out.append(terms.sum(-1).mean())
    return np.array(out)


def _close(actual, expected, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(np.asarray(actual, "float64"), expected, rtol=rtol, atol=atol)


# --- the functions


def test_relation_log_probs_matches_numpy_and_gives_padded_keys_no_probability():
    x = _normal(4, T, 6)
    mask = _mask(LENGTHS, T)
    out = relation_log_probs(x, 3, mask).numpy()
    assert out.shape == (4, 3, T, T) and out.dtype == np.float32
    for b, n in enumerate(LENGTHS):
        _close(out[b, :, :n, :n], _np_relation(x[b, :n], 3))
        assert np.all(np.exp(out[b, :, :, n:]) == 0)  # padded keys, in every row
        np.testing.assert_allclose(np.exp(out[b]).sum(-1), 1.0, rtol=1e-6)
        assert np.all(np.isfinite(out[b]))


@pytest.mark.parametrize("heads", [1, 2, 4])
def test_relation_kl_matches_numpy(heads):
    s, t = _normal(4, T, 8), _normal(4, T, 8) * 1.5
    out = relation_kl(s, t, heads, _mask(LENGTHS, T))
    assert out.shape == (4,) and out.dtype == tf.float32
    _close(out, _np_relation_kl(s, t, heads, LENGTHS))


def test_relation_kl_of_different_widths_matches_numpy():
    s, t = _normal(4, T, 8), _normal(4, T, 12)
    _close(relation_kl(s, t, 4, _mask(LENGTHS, T)), _np_relation_kl(s, t, 4, LENGTHS))


def test_attention_kl_matches_numpy():
    s, t = _attention(LENGTHS, 3, T), _attention(LENGTHS, 3, T)
    out = attention_kl(s, t, _mask(LENGTHS, T))
    assert out.shape == (4,) and out.dtype == tf.float32
    _close(out, _np_attention_kl(s, t, LENGTHS))


def test_zero_for_identical_inputs_and_positive_otherwise():
    mask = _mask(LENGTHS, T)
    x, y = _normal(4, T, 8), _normal(4, T, 8)
    _close(relation_kl(x, x, 2, mask), np.zeros(4), atol=1e-6)
    out = relation_kl(x, y, 2, mask).numpy()
    assert np.all(out[MULTI] > 0) and np.all(out[~MULTI] == 0)
    p, q = _attention(LENGTHS, 2, T), _attention(LENGTHS, 2, T)
    _close(attention_kl(p, p, mask), np.zeros(4), atol=1e-6)
    out = attention_kl(q, p, mask).numpy()
    assert np.all(out[MULTI] > 0) and np.all(out[~MULTI] == 0)


def test_an_example_of_padding_only_gives_zero_and_no_nan():
    mask = _mask([3, 0], 4)
    x, y = _normal(2, 4, 4), _normal(2, 4, 4)
    out = relation_kl(x, y, 2, mask).numpy()
    assert np.isfinite(out).all() and out[1] == 0 and out[0] > 0
    p = np.full((2, 2, 4, 4), 0.25, "float32")
    assert np.isfinite(attention_kl(_attention([3, 4], 2, 4), p, mask).numpy()).all()


def _pad(x, extra, axes):
    """x with `extra` random positions appended along each of `axes`."""
    for axis in axes:
        shape = list(x.shape)
        shape[axis] = extra
        x = np.concatenate([x, rng.uniform(size=shape).astype("float32")], axis=axis)
    return x


def test_relation_kl_is_invariant_to_padding():
    s, t = _normal(4, T, 8), _normal(4, T, 8)
    base = relation_kl(s, t, 2, _mask(LENGTHS, T)).numpy()
    for extra in (1, 6):
        padded = relation_kl(_pad(s, extra, [1]), _pad(t, extra, [1]), 2, _mask(LENGTHS, T + extra)).numpy()
        _close(padded, base, rtol=1e-6, atol=1e-7)
    # and to the values at the padded positions already there
    s2, t2 = s.copy(), t.copy()
    for b, n in enumerate(LENGTHS):
        s2[b, n:], t2[b, n:] = _normal(T - n, 8) * 10, _normal(T - n, 8) * 10
    _close(relation_kl(s2, t2, 2, _mask(LENGTHS, T)), base, rtol=1e-6, atol=1e-7)


def _pad_attention(p, extra, lengths):
    """Attention [B, h, T, T] with `extra` padded positions appended: 0 on the new keys of real query rows, random
    distributions in the padded query rows."""
    b, h, t, _ = p.shape
    out = np.zeros((b, h, t + extra, t + extra), "float32")
    out[:, :, :t, :t] = p
    fresh = _attention(lengths, h, t + extra)
    for i, n in enumerate(lengths):
        out[i, :, n:] = fresh[i, :, n:]
    return out


def test_attention_kl_is_invariant_to_padding():
    s, t = _attention(LENGTHS, 2, T), _attention(LENGTHS, 2, T)
    base = attention_kl(s, t, _mask(LENGTHS, T)).numpy()
    for extra in (1, 6):
        padded = attention_kl(_pad_attention(s, extra, LENGTHS), _pad_attention(t, extra, LENGTHS),
                              _mask(LENGTHS, T + extra)).numpy()
        _close(padded, base, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_inputs_give_float32(dtype):
    mask = _mask(LENGTHS, T)
    s, t = _normal(4, T, 8), _normal(4, T, 8)
    low_s, low_t = tf.cast(s, dtype), tf.cast(t, dtype)
    out = relation_kl(low_s, low_t, 2, mask)
    assert out.dtype == tf.float32
    # exactly the float32 computation on the rounded values, and loosely the float32 result
    _close(out, relation_kl(tf.cast(low_s, "float32"), tf.cast(low_t, "float32"), 2, mask).numpy(), rtol=1e-6)
    _close(out, relation_kl(s, t, 2, mask).numpy(), rtol=0.1, atol=1e-3)
    p, q = _attention(LENGTHS, 2, T), _attention(LENGTHS, 2, T)
    low = attention_kl(tf.cast(q, dtype), tf.cast(p, dtype), mask)
    assert low.dtype == tf.float32 and np.isfinite(low.numpy()).all()
    _close(low, attention_kl(q, p, mask).numpy(), rtol=0.1, atol=1e-3)


def test_gradient_reaches_the_student_only_and_not_its_padding():
    mask = _mask(LENGTHS, T)
    s, t = tf.Variable(_normal(4, T, 8)), tf.Variable(_normal(4, T, 8))
    sp, tp = tf.Variable(_attention(LENGTHS, 2, T)), tf.Variable(_attention(LENGTHS, 2, T))
    with tf.GradientTape(persistent=True) as tape:
        rel = tf.reduce_sum(relation_kl(s, t, 2, mask))
        att = tf.reduce_sum(attention_kl(sp, tp, mask))
    for loss, student, teacher in ((rel, s, t), (att, sp, tp)):
        grad = tape.gradient(loss, student).numpy()
        assert tape.gradient(loss, teacher) is None
        assert np.isfinite(grad).all() and np.abs(grad).max() > 0
    grad = tape.gradient(rel, s).numpy()
    for b, n in enumerate(LENGTHS):
        assert np.all(grad[b, n:] == 0) and (n == 1 or np.abs(grad[b, :n]).max() > 0)
    grad = tape.gradient(att, sp).numpy()
    for b, n in enumerate(LENGTHS):
        assert np.all(grad[b, :, n:] == 0) and np.all(grad[b, :, :, n:] == 0)


def test_errors_for_indivisible_width_and_unequal_head_counts():
    mask = _mask(LENGTHS, T)
    with pytest.raises(ValueError, match=r"(?=.*\b10\b)(?=.*\b4\b)"):
        relation_log_probs(_normal(4, T, 10), 4, mask)
    with pytest.raises(ValueError, match=r"(?=.*\b10\b)(?=.*\b4\b)"):
        relation_kl(_normal(4, T, 8), _normal(4, T, 10), 4, mask)
    with pytest.raises(ValueError, match=r"(?=.*\b2\b)(?=.*\b3\b)"):
        attention_kl(_attention(LENGTHS, 2, T), _attention(LENGTHS, 3, T), mask)


def test_dynamic_shapes_in_a_tf_function():
    spec = tf.TensorSpec([None, None, None], tf.float32)
    fn = tf.function(lambda s, t, m: relation_kl(s, t, 2, m),
                     input_signature=[spec, spec, tf.TensorSpec([None, None], tf.int32)])
    s, t = _normal(4, T, 8), _normal(4, T, 12)
    _close(fn(s, t, _mask(LENGTHS, T)), _np_relation_kl(s, t, 2, LENGTHS))


# --- the loss objects


def _qkv(layers, width, lengths=LENGTHS, t=T):
    return [tuple(_normal(len(lengths), t, width) for _ in range(3)) for _ in range(layers)]


def _outputs(layers, width, heads, lengths=LENGTHS, t=T):
    return {"qkv": _qkv(layers, width, lengths, t),
            "attentions": [_attention(lengths, heads, t) for _ in range(layers)]}


def _np_minilm(student, teacher, layer, lengths):
    heads = student["attentions"][-1].shape[1]
    return (_np_attention_kl(student["attentions"][-1], teacher["attentions"][layer], lengths)
            + _np_relation_kl(student["qkv"][-1][2], teacher["qkv"][layer][2], heads, lengths))


def _np_minilmv2(student, teacher, heads, layer, lengths):
    return sum(_np_relation_kl(s, t, heads, lengths) for s, t in zip(student["qkv"][-1], teacher["qkv"][layer]))


def test_loss_objects_declare_needs_and_repr():
    assert MiniLMLoss().needs == {"attentions", "qkv", "teacher"}
    assert MiniLMv2Loss(48).needs == {"qkv", "teacher"}
    assert not MiniLMLoss().reads_cache and not MiniLMv2Loss(4).reads_cache
    assert repr(MiniLMLoss()) == "MiniLM(teacher layer -1)"
    assert repr(MiniLMv2Loss(48)) == "MiniLMv2(q,k,v; 48 relation heads, teacher layer -1)"
    assert repr(MiniLMv2Loss(4, teacher_layer=2)) == "MiniLMv2(q,k,v; 4 relation heads, teacher layer 2)"


@pytest.mark.parametrize("layer", [-1, 1, 0])
def test_minilm_loss_matches_numpy_on_the_chosen_teacher_layer(layer):
    student, teacher = _outputs(2, 8, 2), _outputs(3, 12, 2)
    batch = {"attention_mask": _mask(LENGTHS, T)}
    out = MiniLMLoss(teacher_layer=layer)(student, teacher, batch, None)
    assert out.shape == (4,) and out.dtype == tf.float32
    _close(out, _np_minilm(student, teacher, layer, LENGTHS))
    # the layer is the list index: layer 1 of 3 is the same as handing that layer alone
    only = {key: [value[layer]] for key, value in teacher.items()}
    _close(out, MiniLMLoss()(student, only, batch, None).numpy(), rtol=1e-7, atol=0)


@pytest.mark.parametrize("layer", [-1, 1])
def test_minilmv2_loss_of_different_widths_and_head_counts_matches_numpy(layer):
    # student H=8 with 2 attention heads, teacher H=12 with 3; 4 relation heads of sizes 2 and 3
    student, teacher = _outputs(2, 8, 2), _outputs(3, 12, 3)
    batch = {"attention_mask": _mask(LENGTHS, T)}
    out = MiniLMv2Loss(4, teacher_layer=layer)(student, teacher, batch, None)
    assert out.shape == (4,) and out.dtype == tf.float32
    _close(out, _np_minilmv2(student, teacher, 4, layer, LENGTHS))
    only = {key: [value[layer]] for key, value in teacher.items()}
    _close(out, MiniLMv2Loss(4)(student, only, batch, None).numpy(), rtol=1e-7, atol=0)
    other = MiniLMv2Loss(4, teacher_layer=0 if layer == -1 else -1)(student, teacher, batch, None).numpy()
    assert not np.allclose(other, out.numpy())


def test_losses_read_the_batch_mask_not_the_mask_argument():
    student, teacher = _outputs(1, 8, 2), _outputs(1, 8, 2)
    batch = {"attention_mask": _mask(LENGTHS, T)}
    everything = np.ones((4, T), "int32")
    for loss in (MiniLMLoss(), MiniLMv2Loss(4)):
        _close(loss(student, teacher, batch, everything).numpy(), loss(student, teacher, batch, None).numpy(),
               rtol=0, atol=0)


def test_loss_objects_are_zero_for_identical_inputs_and_positive_otherwise():
    student, teacher = _outputs(2, 8, 2), _outputs(2, 8, 2)
    batch = {"attention_mask": _mask(LENGTHS, T)}
    for loss in (MiniLMLoss(), MiniLMv2Loss(4)):
        _close(loss(student, student, batch, None), np.zeros(4), atol=1e-6)
        out = loss(student, teacher, batch, None).numpy()
        assert np.all(out[MULTI] > 0) and np.all(out[~MULTI] == 0)


def test_loss_objects_are_invariant_to_padding():
    student, teacher = _outputs(2, 8, 2), _outputs(2, 12, 2)
    batch = {"attention_mask": _mask(LENGTHS, T)}
    losses = (MiniLMLoss(), MiniLMv2Loss(4))
    base = [loss(student, teacher, batch, None).numpy() for loss in losses]
    extra = 3

    def pad(out):
        return {"qkv": [tuple(_pad(x, extra, [1]) for x in layer) for layer in out["qkv"]],
                "attentions": [_pad_attention(p, extra, LENGTHS) for p in out["attentions"]]}

    padded_batch = {"attention_mask": _mask(LENGTHS, T + extra)}
    for loss, expected in zip(losses, base):
        _close(loss(pad(student), pad(teacher), padded_batch, None), expected, rtol=1e-6, atol=1e-7)


def test_loss_objects_pass_gradient_to_the_student_only():
    student, teacher = _outputs(1, 8, 2), _outputs(2, 12, 2)
    student = {"qkv": [tuple(tf.Variable(x) for x in student["qkv"][0])],
               "attentions": [tf.Variable(student["attentions"][0])]}
    teacher = {"qkv": [tuple(tf.Variable(x) for x in layer) for layer in teacher["qkv"]],
               "attentions": [tf.Variable(p) for p in teacher["attentions"]]}
    batch = {"attention_mask": _mask(LENGTHS, T)}
    for loss, read in ((MiniLMLoss(), [student["attentions"][0], student["qkv"][0][2]]),
                       (MiniLMv2Loss(4), list(student["qkv"][0]))):
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(loss(student, teacher, batch, None))
        teacher_vars = [v for layer in teacher["qkv"] for v in layer] + teacher["attentions"]
        grads = tape.gradient(total, read + teacher_vars)
        assert all(g is not None and np.isfinite(g.numpy()).all() and np.abs(g.numpy()).max() > 0
                   for g in grads[:len(read)])
        assert all(g is None for g in grads[len(read):])


def test_minilm_loss_needs_equal_head_counts():
    student, teacher = _outputs(1, 8, 2), _outputs(1, 12, 3)
    with pytest.raises(ValueError, match=r"(?=.*\b2\b)(?=.*\b3\b)"):
        MiniLMLoss()(student, teacher, {"attention_mask": _mask(LENGTHS, T)}, None)
