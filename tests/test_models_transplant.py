"""Student initialised from teacher layers: weights copied exactly, shapes checked before anything is assigned."""
import numpy as np
import pytest

from xtremedistil_tf.errors import ConfigError
from xtremedistil_tf.models.encoder import Encoder
from xtremedistil_tf.models.transplant import copy_teacher_layers, parse_layers


def _encoder(name, layers, hidden=16, heads=2, ffn=32, positions=64, seed=0):
    import keras
    keras.utils.set_random_seed(seed)
    enc = Encoder(vocab_size=40, hidden_size=hidden, num_layers=layers, num_heads=heads, intermediate_size=ffn,
                  max_position_embeddings=positions, dropout=0.0, attention_dropout=0.0, name=name)
    enc.build()
    return enc


def _inputs():
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 40, size=(3, 7)).astype("int32")
    mask = np.ones_like(ids)
    mask[0, 5:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def test_every_layer_copied_gives_the_teachers_outputs():
    teacher, student = _encoder("teacher", 3, seed=1), _encoder("student", 3, seed=2)
    copy_teacher_layers(student, teacher, [0, 1, 2])
    x = _inputs()
    t, s = teacher(x), student(x)
    for a, b in zip(t["hidden_states"], s["hidden_states"]):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(t["pooled_output"].numpy(), s["pooled_output"].numpy())


def test_chosen_blocks_land_in_order():
    teacher, student = _encoder("teacher", 4, seed=1), _encoder("student", 2, seed=2)
    copy_teacher_layers(student, teacher, [1, 3])
    for j, i in enumerate([1, 3]):
        for a, b in zip(student.transformer_layers[j].weights, teacher.transformer_layers[i].weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(student.embeddings.word_embeddings.embeddings.numpy(),
                                  teacher.embeddings.word_embeddings.embeddings.numpy())
    # the student's block 0 on the teacher's embeddings reproduces the teacher's block 1 applied to its input
    x = _inputs()
    t = teacher(x)
    bias = (1.0 - x["attention_mask"].astype("float32"))[:, None, None, :] * -1e9
    out, _ = student.transformer_layers[0](t["hidden_states"][1], bias)
    np.testing.assert_allclose(out.numpy(), t["hidden_states"][2].numpy(), atol=1e-6)


def test_shorter_position_table_takes_the_first_positions():
    teacher, student = _encoder("teacher", 2, positions=64), _encoder("student", 1, positions=32)
    copy_teacher_layers(student, teacher, [1])
    np.testing.assert_array_equal(student.embeddings.position_embeddings.embeddings.numpy(),
                                  teacher.embeddings.position_embeddings.embeddings.numpy()[:32])


@pytest.mark.parametrize("student_kw, layers, expected", [
    (dict(hidden=8, heads=2, ffn=32), [0, 1], "hidden_size: student 8, teacher 16"),
    (dict(hidden=16, heads=4, ffn=32), [0, 1], "num_heads: student 4, teacher 2"),
    (dict(hidden=16, heads=2, ffn=64), [0, 1], "intermediate_size: student 64, teacher 32"),
    (dict(), [0], "1 teacher layers (0) for a student of 2 layers"),
    (dict(), [0, 5], "out of range: the teacher has layers 0..2"),
])
def test_mismatch_is_refused_before_any_weight_changes(student_kw, layers, expected):
    teacher = _encoder("teacher", 3, seed=1)
    student = _encoder("student", 2, seed=2, **student_kw)
    before = [v.numpy().copy() for v in student.weights]
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        copy_teacher_layers(student, teacher, layers)
    for a, v in zip(before, student.weights):
        np.testing.assert_array_equal(a, v.numpy())


def test_parse_layers():
    assert parse_layers("0,2,4") == (0, 2, 4)
    assert parse_layers("") == ()
    with pytest.raises(ConfigError, match="comma-separated"):
        parse_layers("0;2")
