"""The Distiller: teacher and student in one Keras model whose `train_step` trains the student on a stage's losses
(as Keras 3's `keras.distillation.Distiller`, plus stages, projections between widths and cached teacher outputs)."""
from __future__ import annotations

import keras

from xtremedistil_tf.train.trainer import LossModel, model_inputs


class Distiller(LossModel):
    """Trains `student` on the sum of a stage's loss objects.

    The forward pass produces what the losses need: the student's projected representations, attention maps and
    query/key/value projections when a loss reads them, and the teacher's own forward pass (inference mode, no
    gradient) only when a loss reads the teacher online; logit losses read the teacher's cached outputs from the
    batch (`t_logits`).

    Args:
      student: the `Student`.
      teacher: the fine-tuned teacher (a `TaskModel`).
      losses: the stage's loss objects.
      token_mask: token-level losses count real tokens only.
    """

    def __init__(self, student: keras.Model, teacher: keras.Model, losses=(), *, token_mask: bool = False,
                 **kwargs):
        super().__init__(student, losses, token_mask=token_mask, **kwargs)
        self.teacher = teacher

    @property
    def student(self) -> keras.Model:
        """The model being trained (LossModel's `model`), under its distillation name."""
        return self.model

    def forward(self, batch, training):
        """(student outputs, teacher outputs or None): only what the stage's losses need, so a stage that reads
        cached teacher logits never runs the teacher."""
        needs = self.needs
        inputs = model_inputs(batch)
        extra = {"output_attentions": "attentions" in needs, "output_qkv": "qkv" in needs}
        if "representations" in needs:
            outputs = self.student(inputs, training=training, with_representations=True, **extra)
        else:
            outputs = self.student(inputs, training=training, **extra)
        teacher = self.teacher(inputs, training=False, **extra) if "teacher" in needs else None
        return outputs, teacher
