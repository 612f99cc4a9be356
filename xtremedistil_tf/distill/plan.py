"""The stage plan: which losses, which layer groups train, and on which data, stage by stage.

Stage 1 transfers representations (student and projection train); then logit stages and label stages each
train the head alone, then unfreeze the policy's layer groups one at a time (2L + 3 stages with the original's
two groups, 1 + 2 x (layers + 2) when every block is a group).
"""
from __future__ import annotations

import dataclasses

from xtremedistil_tf.distill.losses import (
    AttentionLoss,
    LabelLoss,
    LogitsKL,
    LogitsMSE,
    RepresentationLoss,
    SpanLogitsKL,
)
from xtremedistil_tf.distill.relations import MiniLMLoss, MiniLMv2Loss

LOSSES = ("representation", "logits", "labels")


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage: its loss kind, the layer groups it trains and the loss objects it sums."""
    index: int
    loss: str
    trainable: tuple[str, ...]
    losses: tuple = dataclasses.field(default=(), compare=False)

    @property
    def name(self) -> str:
        """`stage-<index>`, the stage's checkpoint and log name."""
        return f"stage-{self.index}"

    @property
    def data(self) -> str:
        """The data the stage trains on: labelled train for label stages, the transfer set otherwise."""
        return "train" if self.loss == "labels" else "transfer"

    @property
    def reads_teacher_cache(self) -> bool:
        """Whether a loss reads the teacher's cached outputs (`t_logits`, `t_rep_0`), so each chunk needs them."""
        return any(term.reads_cache for term in self.losses)

    def describe(self) -> str:
        """One readable line (loss terms, data, trainable groups) for the run's log."""
        terms = f" ({' + '.join(map(repr, self.losses))})" if self.losses else ""
        return (f"stage {self.index}: {self.loss} loss{terms} on the {self.data} set, training "
                f"{', '.join(self.trainable)}")


def relation_loss(name: str, *, relation_heads: int, teacher_layer: int):
    """The relation loss object of --relation_loss (None when empty); `teacher_layer` is 1-based, 0 the last."""
    index = teacher_layer - 1 if teacher_layer else -1
    if name == "minilm":
        return MiniLMLoss(teacher_layer=index)
    if name == "minilmv2":
        return MiniLMv2Loss(relation_heads, teacher_layer=index)
    return None


def stage_losses(*, kind: str, multi_hidden: bool, distil_attention: bool, logit_loss: str, temperature: float,
                 token_level: bool | None = None, hidden_loss: bool = True, relation=None,
                 online: bool = False) -> dict[str, tuple]:
    """The loss objects of each loss kind for a task of `kind` and the run's flags.

    Args:
      token_level: compare hidden states token by token (default: for NER).
      hidden_loss: include the representation stage's hidden-state MSE.
      relation: a relation loss object (`relation_loss`) added to the representation stage.
      online: read the teacher's hidden states from its forward pass even for the first token (when the teacher
        runs on every batch anyway, or on text whose teacher outputs are not cached).
    """
    token_level = kind == "ner" if token_level is None else token_level
    representation = ()
    if hidden_loss:
        representation += (RepresentationLoss(online=online or token_level or multi_hidden or relation is not None,
                                              token_level=token_level),)
    if distil_attention:
        representation += (AttentionLoss(),)
    if relation is not None:
        representation += (relation,)
    if logit_loss == "kl" and kind == "qa":
        logits = SpanLogitsKL(temperature)
    else:
        logits = LogitsKL(temperature) if logit_loss == "kl" and kind != "regression" else LogitsMSE()
    return {"representation": representation, "logits": (logits,), "labels": (LabelLoss(kind),)}


def build_plan(groups: list[str], *, has_projection: bool, losses: dict[str, tuple] | None = None,
               representation_only: bool = False) -> list[Stage]:
    """Stages for unfreezing `groups` (a policy's `unfreeze_groups`) one at a time after the head; with
    `representation_only` (task-agnostic runs) the representation stage alone."""
    losses = losses or {}
    first = ("student", "dense") if has_projection else ("student",)
    stages = [Stage(1, "representation", first, losses.get("representation", ()))]
    if representation_only:
        return stages
    for loss in ("logits", "labels"):
        for k in range(len(groups) + 1):
            stages.append(Stage(len(stages) + 1, loss, ("head",) + tuple(groups[:k]), losses.get(loss, ())))
    return stages
