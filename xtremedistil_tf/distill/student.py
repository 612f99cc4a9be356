"""The student: a small BERT encoder, projections up to the teacher's width, and a task head.

The projected head is the original release's (first token -> dropout -> projection to the teacher's width ->
dropout -> classifier); otherwise the head is the standard BERT one (pooler -> dropout -> classifier, or a
per-token classifier), which exports to transformers' task models exactly. `to_task_model` folds either into a
TaskModel.
"""
from __future__ import annotations

import keras
import numpy as np
from absl import logging

from xtremedistil_tf.errors import ConfigError
from xtremedistil_tf.models.encoder import Encoder
from xtremedistil_tf.models.heads import TOKEN_KINDS, TaskModel
from xtremedistil_tf.models.layers import _init
from xtremedistil_tf.train.trainer import unique_variables

# Pooler weight used to pass the first token through tanh almost linearly when exporting a projected head.
_LINEAR_POOLER_SCALE = 1e-4


@keras.saving.register_keras_serializable(package="xtremedistil_tf")
class Student(keras.Model):
    """Returns `logits`, the encoder outputs and, with `with_representations`, `representations`: the student's
    hidden states (top first: the first token for classification, every token for NER or with
    `token_representations`) projected to the teacher width."""

    def __init__(self, encoder: Encoder, num_labels: int, kind: str, teacher_hidden_size: int,
                 num_projections: int = 1, projected_head: bool = False, dropout: float = 0.1,
                 token_representations: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.kind = kind
        self.token_representations = token_representations or kind in TOKEN_KINDS
        self.num_labels = {"regression": 1, "qa": 2}.get(kind, num_labels)
        self.teacher_hidden_size = teacher_hidden_size
        self.projected_head = projected_head
        self.rate = dropout
        self.num_projections = num_projections
        init = _init(0.02)
        self.projections = []
        if teacher_hidden_size != encoder.hidden_size:
            self.projections = [keras.layers.Dense(teacher_hidden_size, kernel_initializer=init,
                                                   name=f"dense_{i}") for i in range(num_projections)]
        self.dropouts = [keras.layers.Dropout(dropout) for _ in range(max(num_projections, 1))]
        self.head_dropout = keras.layers.Dropout(dropout)
        self.classifier = keras.layers.Dense(self.num_labels, kernel_initializer=init, name="classifier",
                                             dtype="float32")

    def build(self, input_shape=None):
        if not self.encoder.built:
            self.encoder.build()
        for p in self.projections:
            p.build((None, self.encoder.hidden_size))
        width = self.teacher_hidden_size if (self.projected_head and self.projections) else self.encoder.hidden_size
        self.classifier.build((None, width))
        self.built = True

    def _rep(self, hidden):
        return hidden if self.token_representations else hidden[:, 0]

    def project(self, i, hidden, training):
        """Hidden state `hidden` (its first token, or every token with `token_representations`) through dropout and
        projection `i`, to the teacher's width so it can be compared with the teacher's (unprojected when the widths
        already match)."""
        x = self.dropouts[i](self._rep(hidden), training=training)
        return self.projections[i](x) if self.projections else x

    def call(self, inputs, training=False, output_attentions=False, with_representations=False, output_qkv=False):
        out = dict(self.encoder(inputs, training=training, output_attentions=output_attentions,
                                output_qkv=output_qkv))
        hidden = out["hidden_states"]
        reps = []
        if with_representations or self.projected_head:
            n = self.num_projections if with_representations else 1
            reps = [self.project(i, hidden[-1 - i], training) for i in range(n)]
        if self.projected_head:
            x = reps[0]
        elif self.kind in TOKEN_KINDS:  # per-token logits (QA: start and end)
            x = out["sequence_output"]
        else:
            x = out.get("pooled_output", out["sequence_output"][:, 0])
        out["logits"] = self.classifier(self.head_dropout(x, training=training))
        if with_representations:
            out["representations"] = reps
        return out

    def get_config(self):
        return {"name": self.name, "encoder": keras.saving.serialize_keras_object(self.encoder),
                "num_labels": self.num_labels, "kind": self.kind, "teacher_hidden_size": self.teacher_hidden_size,
                "num_projections": self.num_projections, "projected_head": self.projected_head, "dropout": self.rate,
                "token_representations": self.token_representations}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        if "faithful_head" in config:  # the key's name in student-config.json files written before 0.2
            config["projected_head"] = config.pop("faithful_head")
        return cls(**config)

    # ------------------------------------------------------------------------------------------------ layer groups
    def group_variables(self, group: str, *, frozen_word_embeddings: bool = False) -> list:
        """Variables of a named group: `student` (the encoder), `dense` (projections), `head`, `embeddings`,
        `transformer_layer_{i}`. The word-embedding table is left out when it is frozen."""
        enc = self.encoder
        if group == "student":
            layers = enc.layer_groups()
        elif group == "dense":
            layers = self.projections
        elif group == "head":
            layers = [self.classifier] + ([enc.pooler] if enc.pooler is not None and not self.projected_head else [])
        elif group == "embeddings":
            layers = [enc.embeddings]
        elif group.startswith("transformer_layer_"):
            layers = [enc.transformer_layers[int(group.rsplit("_", 1)[1])]]
        else:
            raise ValueError(f"unknown layer group {group!r}")
        word = enc.embeddings.word_embeddings.embeddings
        return unique_variables(v for layer in layers for v in layer.trainable_weights
                                if not (frozen_word_embeddings and v is word))

    # ------------------------------------------------------------------------------------------------ export
    def to_task_model(self) -> TaskModel:
        """An equivalent TaskModel with a BERT head (same logits at inference), for export.

        A projected head is linear after the first token (projection then classifier, dropout off), so it folds into
        one classifier; transformers' sequence classifier applies a tanh pooler first, which we make nearly linear
        with a tiny weight and undo in the classifier (the error is about (1e-4 x)^2 relative: far below 1e-6).
        """
        model = TaskModel(self.encoder, self.num_labels, kind=self.kind, dropout=self.rate, head_style="bert",
                          name="task_model")
        if not self.built:
            self.build()
        kernel = self.classifier.kernel.numpy()
        bias = self.classifier.bias.numpy()
        if self.projected_head and self.projections:
            p = self.projections[0]
            bias = p.bias.numpy() @ kernel + bias
            kernel = p.kernel.numpy() @ kernel
        if self.projected_head and self.kind not in TOKEN_KINDS:
            if self.encoder.pooler is None:
                raise ValueError("a projected classification head exports through a pooler; build the encoder "
                                 "with use_pooler=True")
            h = self.encoder.hidden_size
            self.encoder.pooler.kernel.assign(np.eye(h, dtype=np.float32) * _LINEAR_POOLER_SCALE)
            self.encoder.pooler.bias.assign(np.zeros(h, np.float32))
            kernel = kernel / _LINEAR_POOLER_SCALE
        model.build()
        dense = model.head.qa_outputs if self.kind == "qa" else model.head.classifier
        dense.kernel.assign(kernel)
        dense.bias.assign(bias)
        return model


def pca_compress(matrix: np.ndarray, width: int) -> np.ndarray:
    """Rows of `matrix` projected on its top `width` principal components (centred, not whitened), as the
    original's sklearn PCA(n_components=width).fit_transform did; component signs fixed for determinism."""
    x = np.asarray(matrix, np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    cov = x.T @ x / max(len(x) - 1, 1)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1][:width]
    vectors = vectors[:, order]
    signs = np.sign(vectors[np.argmax(np.abs(vectors), axis=0), np.arange(vectors.shape[1])])
    vectors = vectors * signs
    explained = values[order].sum() / values.sum()
    logging.info("PCA: %d x %d word embeddings -> %d dims, %.1f%% of the variance kept", x.shape[0], x.shape[1],
                 width, 100 * explained)
    return (x @ vectors).astype(np.float32)


def build_student(config, *, vocab_size: int, num_labels: int, teacher_hidden_size: int,
                  teacher_word_embeddings: np.ndarray | None, pad_token_id: int = 0, dtype=None,
                  teacher_encoder: Encoder | None = None, encoder: Encoder | None = None) -> Student:
    """The student from flags: from scratch, from pt_student_checkpoint or from the teacher's layers
    (`teacher_encoder`, with --student_init_from_teacher_layers), with compressed word embeddings; or around
    `encoder`, an existing student encoder it shares (as it is: no initialisation)."""
    own = encoder is None
    if own:
        encoder = _student_encoder(config, vocab_size=vocab_size, pad_token_id=pad_token_id, dtype=dtype,
                                   teacher_encoder=teacher_encoder)
    num_projections = encoder.num_layers + 1 if config.multi_hidden else 1
    student = Student(encoder, num_labels, config.kind, teacher_hidden_size, num_projections=num_projections,
                      projected_head=config.policy.student_projected_head, dropout=config.student_dropout,
                      token_representations=config.token_representations, name="student_model", dtype=dtype)
    student.build()
    for block in encoder.transformer_layers:
        block.attention.return_dropped_probs = config.policy.attentions_after_dropout
    if own:
        _init_word_embeddings(config, encoder, teacher_word_embeddings)
    return student


def _student_encoder(config, *, vocab_size: int, pad_token_id: int, dtype, teacher_encoder: Encoder | None) -> Encoder:
    """The student's encoder, built: from pt_student_checkpoint, or new (from scratch or from the teacher's
    layers)."""
    if config.pt_student_checkpoint:
        from xtremedistil_tf.convert.hf import load_hf_encoder
        encoder = load_hf_encoder(config.pt_student_checkpoint, name="student", dtype=dtype).encoder
        if encoder.architecture != "bert":
            raise ConfigError(f"--pt_student_checkpoint={config.pt_student_checkpoint}: the student must be a BERT "
                              f"model, found {encoder.architecture}")
        return encoder
    shape = dict(intermediate_size=config.student_intermediate_size, hidden_act="gelu",
                 max_position_embeddings=512, type_vocab_size=2)
    if config.init_layers:  # the teacher's blocks bring their FFN size, activation and position table
        t = teacher_encoder
        shape = dict(intermediate_size=config.intermediate_size or t.intermediate_size, hidden_act=t.hidden_act,
                     max_position_embeddings=t.max_position_embeddings, type_vocab_size=t.type_vocab_size)
    encoder = Encoder(vocab_size=vocab_size, hidden_size=config.hidden_size,
                      num_layers=config.num_hidden_layers, num_heads=config.num_attention_heads,
                      pad_token_id=pad_token_id, dropout=config.student_dropout,
                      attention_dropout=config.student_dropout, use_pooler=True, name="student", dtype=dtype,
                      **shape)
    encoder.build()
    if config.init_layers:
        from xtremedistil_tf.models.transplant import copy_teacher_layers
        copy_teacher_layers(encoder, teacher_encoder, config.init_layers)
        logging.info("student initialised from the teacher's embeddings and layers %s",
                     ",".join(map(str, config.init_layers)))
    return encoder


def _init_word_embeddings(config, encoder: Encoder, teacher_word_embeddings: np.ndarray | None):
    """--compress_word_embedding: the teacher's word embeddings, PCA-compressed to the student's width, where the
    mode applies it (a warning where it does not, as the original release)."""
    if config.compress and not config.word_embeddings_compressed:
        logging.warning("--compress_word_embedding%s has no effect on a from-scratch student in %s mode, as in the "
                        "original release (its build replaced the PCA matrix); the default mode applies it",
                        " / --freeze_word_embedding" if config.freeze_word_embedding else "", config.mode)
    if not config.word_embeddings_compressed or teacher_word_embeddings is None:
        return
    width = encoder.embedding_size
    matrix = teacher_word_embeddings
    if matrix.shape[1] > width:
        matrix = pca_compress(matrix, width)
    elif matrix.shape[1] < width:
        raise ConfigError(f"--compress_word_embedding: the teacher's embeddings ({matrix.shape[1]} wide) are "
                          f"narrower than the student's ({width})")
    table = encoder.embeddings.word_embeddings.embeddings
    if tuple(table.shape) != matrix.shape:
        raise ConfigError(f"--compress_word_embedding: teacher vocabulary {matrix.shape[0]} does not match the "
                          f"student's {table.shape[0]}")
    table.assign(matrix)
