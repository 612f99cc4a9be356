"""Initialise a shallower student encoder from some of the teacher's layers (as DistilBERT did: every other block).

The embeddings and the chosen transformer blocks are copied weight by weight; widths, head counts, FFN sizes and
vocabularies must match, which is checked before anything is assigned.
"""
from __future__ import annotations

from typing import Sequence

from xtremedistil_tf.errors import ConfigError
from xtremedistil_tf.models.encoder import Encoder


def parse_layers(value: str) -> tuple[int, ...]:
    """`"0,2,4"` -> (0, 2, 4); empty -> (). Raises ConfigError on anything but comma-separated integers."""
    if not value.strip():
        return ()
    try:
        return tuple(int(x) for x in value.split(","))
    except ValueError:
        raise ConfigError(f"expected comma-separated teacher layer indices such as 0,2,4, got {value!r}") from None


def check_teacher_layers(student: Encoder, teacher: Encoder, layers: Sequence[int]) -> list[str]:
    """Every reason `layers` of `teacher` cannot initialise `student` (empty when they can)."""
    problems = []
    if len(layers) != student.num_layers:
        problems.append(f"{len(layers)} teacher layers ({','.join(map(str, layers))}) for a student of "
                        f"{student.num_layers} layers")
    bad = [i for i in layers if not 0 <= i < teacher.num_layers]
    if bad:
        problems.append(f"teacher layer(s) {bad} out of range: the teacher has layers 0..{teacher.num_layers - 1}")
    for name in ("hidden_size", "num_heads", "intermediate_size", "vocab_size", "embedding_size", "type_vocab_size",
                 "hidden_act"):
        if getattr(student, name) != getattr(teacher, name):
            problems.append(f"{name}: student {getattr(student, name)}, teacher {getattr(teacher, name)} (copying "
                            "teacher layers needs the same width and shapes)")
    if student.max_position_embeddings > teacher.max_position_embeddings:
        problems.append(f"max_position_embeddings: student {student.max_position_embeddings}, teacher "
                        f"{teacher.max_position_embeddings}")
    return problems


def copy_teacher_layers(student: Encoder, teacher: Encoder, layers: Sequence[int]) -> None:
    """Copies the teacher's embeddings and blocks `layers` (0-based, bottom first) into `student`'s embeddings and
    blocks 0..n-1; the student's pooler is copied too when both have one. Raises ConfigError listing every
    mismatch before assigning anything."""
    problems = check_teacher_layers(student, teacher, layers)
    if problems:
        raise ConfigError("cannot initialise the student from teacher layers:\n  " + "\n  ".join(problems))
    for model in (student, teacher):
        if not model.built:
            model.build()
    pairs = [(student.embeddings, teacher.embeddings)]
    pairs += [(student.transformer_layers[j], teacher.transformer_layers[i]) for j, i in enumerate(layers)]
    if student.pooler is not None and teacher.pooler is not None:
        pairs.append((student.pooler, teacher.pooler))
    for target, source in pairs:
        for t, s in zip(_named(target), _named(source)):
            if t[0] != s[0]:
                raise ConfigError(f"weight {t[0]} of the student has no counterpart in the teacher (found {s[0]})")
            value = s[1].numpy()
            if tuple(t[1].shape) == value.shape:
                t[1].assign(value)
            elif t[0].endswith("position_embeddings/embeddings") and t[1].shape[1] == value.shape[1]:
                t[1].assign(value[: t[1].shape[0]])  # a shorter position table takes the first positions
            else:
                raise ConfigError(f"weight {t[0]}: student shape {tuple(t[1].shape)}, teacher {value.shape}")


def _named(layer) -> list:
    """(path within the layer, variable) pairs in a stable order."""
    prefix = layer.path + "/"
    return sorted(((v.path[len(prefix):] if v.path.startswith(prefix) else v.path, v) for v in layer.weights),
                  key=lambda pair: pair[0])
