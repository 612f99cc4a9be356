"""The stage plan: which losses, which layer groups train, and on which data, stage by stage.

Stage 1 transfers representations (student and projection train); then logit stages and label stages each
train the head alone, then unfreeze the policy's layer groups one at a time (2L + 3 stages with the original's
two groups, 1 + 2 x (layers + 2) when every block is a group).
"""
from __future__ import annotations

import dataclasses

from xtremedistil_tf.distill.losses import AttentionLoss, LabelLoss, LogitsKL, LogitsMSE, RepresentationLoss

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

    def describe(self) -> str:
        """One readable line (loss terms, data, trainable groups) for the run's log."""
        terms = f" ({' + '.join(map(repr, self.losses))})" if self.losses else ""
        return (f"stage {self.index}: {self.loss} loss{terms} on the {self.data} set, training "
                f"{', '.join(self.trainable)}")


def stage_losses(*, kind: str, multi_hidden: bool, distil_attention: bool, logit_loss: str,
                 temperature: float) -> dict[str, tuple]:
    """The loss objects of each loss kind for a task of `kind` and the run's flags."""
    representation = (RepresentationLoss(online=kind == "ner" or multi_hidden, token_level=kind == "ner"),)
    if distil_attention:
        representation += (AttentionLoss(),)
    logits = LogitsKL(temperature) if logit_loss == "kl" and kind != "regression" else LogitsMSE()
    return {"representation": representation, "logits": (logits,), "labels": (LabelLoss(kind),)}


def build_plan(groups: list[str], *, has_projection: bool, losses: dict[str, tuple] | None = None) -> list[Stage]:
    """Stages for unfreezing `groups` (a policy's `unfreeze_groups`) one at a time after the head."""
    losses = losses or {}
    first = ("student", "dense") if has_projection else ("student",)
    stages = [Stage(1, "representation", first, losses.get("representation", ()))]
    for loss in ("logits", "labels"):
        for k in range(len(groups) + 1):
            stages.append(Stage(len(stages) + 1, loss, ("head",) + tuple(groups[:k]), losses.get(loss, ())))
    return stages
