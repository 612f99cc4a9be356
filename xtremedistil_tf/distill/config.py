"""The distillation configuration: the original release's flags plus ours, validated once before any work.

Saved as `xtremedistil-config.json` in model_dir (the original's keys, then ours). A rerun into the same model_dir
must carry the same configuration, or it is refused.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Optional

from xtremedistil_tf.errors import ConfigError

MODES = ("default", "faithful")
# Keys that do not change what is computed: a rerun may change them.
RUNTIME_KEYS = ("strategy", "tpu", "verbose", "log_every", "export_saved_model", "export_hf", "fixed_shapes",
                "jit_compile", "keep_checkpoints")


@dataclasses.dataclass
class DistilConfig:
    # --- the original release's flags (same names and meanings)
    task: str = ""
    model_dir: str = ""
    seq_len: int = 128
    transfer_file: str = ""
    teacher_model_dir: str = ""
    do_NER: bool = False
    do_pairwise: bool = False
    hidden_size: int = 384
    num_attention_heads: int = 6
    num_hidden_layers: int = 6
    pt_student_checkpoint: str = ""
    distil_attention: bool = False
    distil_multi_hidden_states: bool = False
    compress_word_embedding: bool = False
    freeze_word_embedding: bool = False
    pt_teacher: str = "TFBertModel"
    pt_teacher_checkpoint: str = "bert-base-multilingual-cased"
    opt_policy: str = "float32"
    student_distil_batch_size: int = 128
    student_ft_batch_size: int = 32
    teacher_batch_size: int = 128
    ft_epochs: int = 100
    distil_epochs: int = 500
    distil_chunk_size: int = 100000
    patience: int = 5
    # --- ours
    mode: str = "default"
    seed: int = 42
    glue_task: str = ""  # read `task` as a GLUE folder (or TFDS `glue/<name>` when `task` is not a folder)
    student_dropout: float = 0.1
    intermediate_size: int = 0  # 0: 3072 in faithful mode (the original's BertConfig default), 4 x hidden otherwise
    teacher_learning_rate: float = 3e-5
    student_learning_rate: float = 0.0  # 0: 3e-5 in faithful mode; default mode 1e-3 from scratch, 5e-5 pretrained
    logit_loss: str = "mse"
    temperature: float = 1.0
    unfreeze_order: str = "dense,student"  # faithful mode: the original's Python-set order (3.6/3.7, seed 42)
    teacher_is_finetuned: bool = False
    deterministic: bool = False
    jit_compile: bool = False
    fixed_shapes: bool = False  # pad every batch to seq_len (TPU); else batches are cut to their longest example
    group_by_length: bool = True  # default mode: batches of similar length (the faithful mode: random batches)
    strategy: str = "auto"
    tpu: str = ""
    verbose: bool = False
    log_every: int = 50
    export_hf: bool = True
    export_saved_model: bool = True
    keep_checkpoints: bool = False  # keep every finished stage's checkpoint (by default only the last is kept)

    # ------------------------------------------------------------------------------------------------ derived values
    @property
    def faithful(self) -> bool:
        return self.mode == "faithful"

    @property
    def grouped_batches(self) -> bool:
        """Training batches of similar length (where batches are cut to their length): the default mode's; the
        original drew random batches."""
        return self.group_by_length and not self.faithful

    @property
    def kind(self) -> str:
        if self.do_NER:
            return "ner"
        return "regression" if self.glue_task in ("stsb", "sts-b") else "classification"

    @property
    def student_intermediate_size(self) -> int:
        if self.intermediate_size:
            return self.intermediate_size
        return 3072 if self.faithful else 4 * self.hidden_size

    @property
    def student_lr(self) -> float:
        if self.student_learning_rate:
            return self.student_learning_rate
        if self.faithful:
            return 3e-5
        return 5e-5 if self.pt_student_checkpoint else 1e-3

    @property
    def multi_hidden(self) -> bool:
        """The original forces multi-hidden-state distillation on when attention is distilled."""
        return self.distil_multi_hidden_states or self.distil_attention

    @property
    def compress(self) -> bool:
        """The original forces compression on when the word embeddings are frozen."""
        return self.compress_word_embedding or self.freeze_word_embedding

    def to_json(self) -> dict:
        """The original's keys first (student_distil_batch_size as in its README), then ours."""
        out = dataclasses.asdict(self)
        out["distil_multi_hidden_states"] = self.multi_hidden
        out["compress_word_embedding"] = self.compress
        return out

    def fingerprint(self) -> dict:
        return {k: v for k, v in self.to_json().items() if k not in RUNTIME_KEYS}

    # ------------------------------------------------------------------------------------------------ validation
    def validate_flags(self) -> None:
        """Checks that need no file: values, ranges and combinations."""
        problems = []
        if not self.task:
            problems.append("--task is required (a task folder, a GLUE folder with --glue_task, or glue/<name>)")
        if not self.model_dir:
            problems.append("--model_dir is required")
        if self.mode not in MODES:
            problems.append(f"--mode={self.mode!r}: expected one of {MODES}")
        for name in ("seq_len", "hidden_size", "num_attention_heads", "num_hidden_layers",
                     "student_distil_batch_size", "student_ft_batch_size", "teacher_batch_size", "ft_epochs",
                     "distil_epochs", "distil_chunk_size", "patience"):
            if getattr(self, name) <= 0:
                problems.append(f"--{name}={getattr(self, name)}: must be positive")
        if self.seq_len < 3:
            problems.append(f"--seq_len={self.seq_len}: needs room for [CLS], one token and [SEP]")
        if self.hidden_size % max(self.num_attention_heads, 1):
            problems.append(f"--hidden_size={self.hidden_size} is not a multiple of "
                            f"--num_attention_heads={self.num_attention_heads}")
        if self.opt_policy not in ("float32", "mixed_float16", "mixed_bfloat16"):
            problems.append(f"--opt_policy={self.opt_policy!r}: expected float32, mixed_float16 or mixed_bfloat16")
        if self.logit_loss not in ("mse", "kl"):
            problems.append(f"--logit_loss={self.logit_loss!r}: expected mse or kl")
        if self.temperature <= 0:
            problems.append(f"--temperature={self.temperature}: must be positive")
        if sorted(self.unfreeze_order.split(",")) != ["dense", "student"]:
            problems.append(f"--unfreeze_order={self.unfreeze_order!r}: expected 'dense,student' or 'student,dense'")
        if self.do_NER and self.do_pairwise:
            problems.append("--do_NER and --do_pairwise cannot be combined")
        if self.glue_task:
            from xtremedistil_tf.data.readers import glue_task_name
            try:
                glue_task_name(self.glue_task)
            except ConfigError as e:
                problems.append(f"--glue_task: {e}")
        if problems:
            raise ConfigError("invalid flags:\n  " + "\n  ".join(problems))

    def validate_models(self, *, teacher_hidden: int, teacher_heads: int, teacher_max_len: int,
                        student_hidden: int, student_heads: int, student_layers: int, teacher_layers: int,
                        student_max_len: int) -> None:
        """Checks that need the teacher's and student's shapes."""
        problems = []
        if student_hidden > teacher_hidden:
            problems.append(f"the student (hidden size {student_hidden}) is wider than the teacher "
                            f"({teacher_hidden}); XtremeDistil projects the student up to the teacher's width")
        if self.distil_attention and student_heads != teacher_heads:
            problems.append(f"--distil_attention needs the same number of attention heads: student "
                            f"{student_heads}, teacher {teacher_heads}")
        if self.multi_hidden and student_layers > teacher_layers:
            problems.append(f"--distil_multi_hidden_states needs a student no deeper than the teacher: student "
                            f"{student_layers} layers, teacher {teacher_layers}")
        limit = min(teacher_max_len, student_max_len)
        if self.seq_len > limit:
            problems.append(f"--seq_len={self.seq_len} is beyond the position table "
                            f"(teacher {teacher_max_len}, student {student_max_len} positions)")
        if problems:
            raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))

    def validate_paths(self) -> None:
        problems = []
        if self.transfer_file and not os.path.isfile(self.transfer_file):
            problems.append(f"--transfer_file={self.transfer_file}: no such file")
        is_tfds = self.task.startswith("glue/") and not os.path.exists(self.task)
        if not is_tfds and not os.path.isdir(self.task):
            problems.append(f"--task={self.task}: no such folder")
        elif not is_tfds and not self.glue_task and not os.path.isfile(os.path.join(self.task, "train.tsv")):
            problems.append(f"--task={self.task}: no train.tsv in the task folder")
        for name in ("pt_teacher_checkpoint", "pt_student_checkpoint"):
            value = getattr(self, name)
            if value and (value.startswith((".", "/")) or os.sep in value.strip("/").replace("/", os.sep, 1)[1:]) \
                    and not os.path.isdir(value):
                problems.append(f"--{name}={value}: no such folder")
        for name in ("model_dir", "teacher_model_dir"):
            value = getattr(self, name)
            if value:
                err = _writable(value)
                if err:
                    problems.append(f"--{name}={value}: {err}")
        if problems:
            raise ConfigError("invalid paths:\n  " + "\n  ".join(problems))


def _writable(folder: str) -> Optional[str]:
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        return f"cannot create it ({e.strerror})"
    if not os.access(folder, os.W_OK | os.X_OK):
        return "not writable"
    return None


def diff_configs(saved: dict, current: dict) -> list[str]:
    keys = sorted((set(saved) | set(current)) - set(RUNTIME_KEYS))
    return [f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in keys if saved.get(k) != current.get(k)]
