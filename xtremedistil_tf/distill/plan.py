"""The stage plan: which loss, which layer groups train, and on which data, stage by stage.

Faithful mode reproduces the original's 2L + 3 stages: representation transfer; logits with the head alone, then
unfreezing the L groups (`dense`, the projection, and `student`, the whole encoder) one at a time in the original's
Python-set order; then hard labels in the same pattern. The default mode unfreezes one transformer block at a time,
top-down, and the embeddings last.
"""
from __future__ import annotations

import dataclasses

LOSSES = ("representation", "logits", "labels")


@dataclasses.dataclass(frozen=True)
class Stage:
    index: int
    loss: str
    trainable: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"stage-{self.index}"

    @property
    def data(self) -> str:
        return "train" if self.loss == "labels" else "transfer"

    def describe(self) -> str:
        return f"stage {self.index}: {self.loss} loss on the {self.data} set, training {', '.join(self.trainable)}"


def build_plan(*, faithful: bool, num_layers: int, has_projection: bool, unfreeze_order: str = "dense,student",
               with_embeddings: bool = True) -> list[Stage]:
    if faithful:
        groups = [g for g in unfreeze_order.split(",") if has_projection or g != "dense"]
    else:
        groups = [f"transformer_layer_{i}" for i in reversed(range(num_layers))]
        if with_embeddings:
            groups.append("embeddings")
    first = ("student", "dense") if has_projection else ("student",)
    stages = [Stage(1, "representation", first)]
    for loss in ("logits", "labels"):
        for k in range(len(groups) + 1):
            trainable = ("head",) + tuple(groups[:k])
            stages.append(Stage(len(stages) + 1, loss, trainable))
    return stages
