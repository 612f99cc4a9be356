"""Mode policies: everything that differs between the faithful mode (the original release, quirks included) and
the default mode, in one place. Nothing else in the package asks which mode runs; it asks the policy.

See the README's side-by-side table and `docs/original_release.md` for where each faithful choice comes from.
"""
from __future__ import annotations

import math

from xtremedistil_tf.errors import ConfigError
from xtremedistil_tf.train.phase import StoppingRule


class ModePolicy:
    """What a mode decides: stage plan, row order, padding, batches, heads, learning rates, early stopping,
    validation and selection. Subclasses set the attributes; the methods derive what depends on the model."""

    name: str = ""
    shuffle_rows: bool = False  # every file shuffled after tokenisation (sklearn's shuffle, random_state=seed)
    pad_to_longest: bool = False  # sentence tasks padded to the file's longest example instead of seq_len
    group_batches: bool = True  # batches of similar length allowed (--group_by_length)
    drop_partial_batch: bool = True  # drop an epoch's last partial batch when there is a whole one
    mean_over_real_batch: bool = False  # average a step's loss over its examples, not the global batch size
    compresses_scratch_student: bool = True  # --compress_word_embedding initialises a from-scratch student
    compresses_fine_tuned_teacher: bool = False  # the PCA is of the teacher's embeddings after its fine-tuning
    attentions_after_dropout: bool = False  # the student's attention maps (--distil_attention) after dropout
    mask_padding: bool = True  # token-level losses count real first sub-tokens only (NER)
    ner_x_labels: bool = False  # NER sub-words labelled X, and [PAD]/[CLS]/[SEP] labelled, as the original
    ner_full_length: bool = False  # NER batches and predictions at the full seq_len (pads trained on and predicted)
    # NER scored by the original's flat evaluation (needs ner_x_labels), with training stopped on token accuracy
    # over every position (Keras' val_acc) instead of the entity F1.
    ner_original_evaluation: bool = False
    teacher_first_token_head: bool = False  # the teacher's head reads the first token, no pooler
    student_projected_head: bool = False  # student head: first token -> projection to teacher width -> classifier
    stopping_rule: StoppingRule = StoppingRule()
    logits_validated_on_dev: bool = True  # logit stages stop on the dev score, not on the chunk's tail
    carry_best_across_logit_stages: bool = False  # a logit stage starts from the previous one's best val loss
    selection_split: str = "dev"  # the split that picks the final stage
    selection_ties_to_later: bool = False

    def pad_to(self, kind: str) -> str:
        """The featurizer's padding for a task of this kind."""
        return "longest" if (self.pad_to_longest and kind != "ner") else "seq_len"

    def intermediate_size(self, hidden_size: int) -> int:
        """The student's FFN size when --intermediate_size is 0."""
        return 4 * hidden_size

    def student_learning_rate(self, pretrained: bool) -> float:
        """The student's learning rate when --student_learning_rate is 0."""
        return 5e-5 if pretrained else 1e-3

    def teacher_learning_rate(self, kind: str) -> float:
        """The teacher's peak learning rate when --teacher_learning_rate is 0: BERT's 3e-5 for sentence tasks, 1e-4
        for NER (one epoch at a constant 3e-5 left a MiniLM teacher at CoNLL dev entity F1 0.39)."""
        return 1e-4 if kind == "ner" else 3e-5

    def teacher_warmup(self, kind: str) -> float | None:
        """The share of the teacher's fine-tuning steps spent warming up before a linear decay (as run_glue.py), or
        None for a constant rate. NER only: on the SST-2 reference job one run with it gave a teacher of test 0.794,
        below the constant rate's 0.80-0.83 over seeds, so sentence tasks keep the constant rate until measured."""
        return 0.1 if kind == "ner" else None

    def unfreeze_groups(self, *, num_layers: int, has_projection: bool, unfreeze_order: str) -> list[str]:
        """The layer groups logit and label stages unfreeze one at a time, after the head."""
        return [f"transformer_layer_{i}" for i in reversed(range(num_layers))] + ["embeddings"]

    def validation_cut(self, n: int) -> int:
        """The rows of a transfer chunk of `n` rows trained on; the rest (a tenth, at least one row) validates."""
        return n - max(1, int(n * 0.1)) if n > 1 else n

    def stopping_metric(self, kind: str, main: str) -> str:
        """The dev score that stops the teacher's fine-tuning and the label stages (`main`: the task's metric)."""
        return "token_accuracy" if (kind == "ner" and self.ner_original_evaluation) else main

    def selection_better(self, value: float, best: float | None) -> bool:
        """Whether a stage's selection score replaces the best so far."""
        return best is None or (value >= best if self.selection_ties_to_later else value > best)

    def selection_split_of(self, available) -> str:
        """The split that picks the final stage: the mode's, or dev when the task lacks it (e.g. unlabelled test)."""
        return self.selection_split if self.selection_split in available else "dev"


class DefaultPolicy(ModePolicy):
    """Same flags, stages and losses as the original, with what is wrong or weak fixed: selection on dev, one
    transformer block unfrozen at a time, best epochs always restored, padding cut, standard BERT heads."""

    name = "default"


class FaithfulPolicy(ModePolicy):
    """The original release's behaviour (run_xtreme_distil.py at f9b14c3)."""

    name = "faithful"
    shuffle_rows = True
    pad_to_longest = True
    group_batches = False
    drop_partial_batch = False
    mean_over_real_batch = True
    # The original set the PCA matrix on its unbuilt from-scratch student, whose build then replaced it with a fresh
    # initialisation: --compress_word_embedding / --freeze_word_embedding did nothing there (only with a checkpoint).
    compresses_scratch_student = False
    # The original took the PCA of the teacher's word embeddings after fine-tuning (or reloading) it
    # (`get_word_embedding(teacher_model.get_layer("tf_model"), ...)`); the default mode takes the checkpoint's.
    compresses_fine_tuned_teacher = True
    # transformers 4.1.1's TF BERT returns attention probabilities after attention dropout (and trains on those):
    # the original's student attention maps, compared with the teacher's (dropout off at prediction), are dropped.
    attentions_after_dropout = True
    mask_padding = False
    ner_x_labels = True
    ner_full_length = True
    ner_original_evaluation = True
    teacher_first_token_head = True
    student_projected_head = True
    stopping_rule = StoppingRule(always_restore_best=False, score_chunk_by_best=False)
    logits_validated_on_dev = False
    carry_best_across_logit_stages = True
    selection_split = "test"
    selection_ties_to_later = True

    def intermediate_size(self, hidden_size: int) -> int:
        """3072 at any width: the original built the student's BertConfig without setting it (the default)."""
        return 3072  # the original's BertConfig default, whatever the width

    def student_learning_rate(self, pretrained: bool) -> float:
        """3e-5 with or without a checkpoint: the original compiled every stage with Adam(3e-5, epsilon=1e-8)."""
        return 3e-5

    def teacher_learning_rate(self, kind: str) -> float:
        """3e-5 for every task: the original fine-tuned the teacher with Adam(3e-5, epsilon=1e-8)."""
        return 3e-5

    def teacher_warmup(self, kind: str) -> float | None:
        """None: the original's constant rate."""
        return None

    def validation_cut(self, n: int) -> int:
        """Keras 2.3's `validation_split=0.1`: floor(0.9 n) rows trained on, n - floor(0.9 n) validate
        (`data_adapter.train_validation_split`); Keras refused a split that left either side empty, which only
        chunks of one row meet, and those keep the default's split here."""
        cut = int(math.floor(n * (1.0 - 0.1)))
        return cut if 0 < cut < n else super().validation_cut(n)

    def unfreeze_groups(self, *, num_layers: int, has_projection: bool, unfreeze_order: str) -> list[str]:
        """The original's shared-layer groups in --unfreeze_order (`dense` only when there is a projection)."""
        # Two coarse groups, `dense` (the projection) and `student` (the whole encoder), in Python-set order.
        return [g for g in unfreeze_order.split(",") if has_projection or g != "dense"]


POLICIES: dict[str, ModePolicy] = {p.name: p for p in (DefaultPolicy(), FaithfulPolicy())}
MODES = tuple(POLICIES)


def policy_for(mode: str) -> ModePolicy:
    """The policy of --mode."""
    if mode not in POLICIES:
        raise ConfigError(f"--mode={mode!r}: expected one of {MODES}")
    return POLICIES[mode]
