"""The distillation configuration: the original release's flags plus ours, validated once before any work.

Saved as `xtremedistil-config.json` in model_dir (the original's keys, then ours). A rerun into the same model_dir
must carry the same configuration, or it is refused.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Optional

from xtremedistil_tf import fs
from xtremedistil_tf.config import RuntimeConfig, option
from xtremedistil_tf.deploy.config import DeployOptions
from xtremedistil_tf.distill.policy import MODES, ModePolicy, policy_for
from xtremedistil_tf.distill.pyhash import original_unfreeze_order
from xtremedistil_tf.errors import ConfigError


@dataclasses.dataclass
class DistilConfig(RuntimeConfig, DeployOptions):
    """run_distillation.py's flags: the original release's names and meanings first, then ours."""

    NEUTRAL_KEYS = RuntimeConfig.NEUTRAL_KEYS + DeployOptions.NEUTRAL_KEYS + (
        "export_saved_model", "export_hf", "keep_checkpoints", "export_encoder")

    # --- the original release's flags (same names and meanings)
    task: str = option("", "task folder (train/dev/test.tsv in the original's format), a GLUE folder with "
                           "--glue_task, a CoNLL folder with --do_NER, or a TFDS name such as glue/sst2")
    model_dir: str = option("", 'output folder for the student, checkpoints and caches')
    seq_len: int = option(128, 'maximum sequence length in tokens')
    transfer_file: str = option("", 'unlabelled transfer set (text, pair or words a line); empty: the training texts')
    teacher_model_dir: str = option("", 'where the fine-tuned teacher is saved and reloaded (default: '
                                        'model_dir/teacher)')
    do_NER: bool = option(False, 'sequence tagging')
    do_pairwise: bool = option(False, 'sentence-pair classification')
    hidden_size: int = option(384, 'student hidden size')
    num_attention_heads: int = option(6, 'student attention heads')
    num_hidden_layers: int = option(6, 'student layers')
    pt_student_checkpoint: str = option("", 'initialise the student from this BERT checkpoint (folder or hub id)')
    distil_attention: bool = option(False, 'also distil attention maps (implies --distil_multi_hidden_states)')
    distil_multi_hidden_states: bool = option(False, "distil the student's L+1 hidden states against the teacher's top "
                                                     'L+1')
    compress_word_embedding: bool = option(False, "initialise the student's word embeddings with a PCA of the "
                                                  "teacher's")
    freeze_word_embedding: bool = option(False, 'keep the (compressed) word embeddings frozen (implies '
                                                '--compress_word_embedding)')
    pt_teacher: str = option("TFBertModel", "the teacher's class name in the original (TFBertModel, TFRobertaModel, "
                                            '...); kept for compatibility, the architecture is read from the '
                                            "checkpoint's config.json")
    pt_teacher_checkpoint: str = option("bert-base-multilingual-cased", 'the teacher (Hugging Face folder or hub id); '
                                                                        'its tokenizer serves every model')
    student_distil_batch_size: int = option(128, 'per-replica batch size for distillation')
    student_ft_batch_size: int = option(32, "per-replica batch size for the student's label stages")
    teacher_batch_size: int = option(128, 'per-replica batch size for the teacher')
    ft_epochs: int = option(100, 'maximum epochs on labelled data (teacher and label stages)')
    distil_epochs: int = option(500, 'maximum epochs per transfer chunk')
    distil_chunk_size: int = option(100000, 'transfer examples per chunk')
    patience: int = option(5, 'early-stopping patience (epochs within a chunk, chunks within a stage)')
    # --- ours
    mode: str = option("default", "default (improved) or faithful (the original release's behaviour, quirks "
                                  "included)")
    glue_task: str = option("", 'read --task as a GLUE folder of this task (sst2, mnli, stsb, ...)')
    student_dropout: float = option(0.1, 'dropout rate of the student (the original: 0.1)')
    intermediate_size: int = option(0, 'student FFN size; 0: 3072 in faithful mode, 4 x hidden_size otherwise')
    teacher_learning_rate: float = option(0.0, "peak Adam learning rate for teacher fine-tuning; 0: the mode's "
                                               "(3e-5; for NER in default mode 1e-4, warmed up over 10% of "
                                               "the steps, then decayed linearly, as run_glue.py)")
    student_learning_rate: float = option(0.0, 'Adam learning rate for the student; 0: 3e-5 faithful, 1e-3 from '
                                               'scratch, 5e-5 from a checkpoint or teacher layers')
    logit_loss: str = option("mse", 'mse (the original) or kl (with --temperature)')
    temperature: float = option(1.0, 'softmax temperature for --logit_loss=kl')
    unfreeze_order: str = option("", "faithful mode: order in which the groups dense and student are unfrozen "
                                     "(dense,student or student,dense); empty: the original's order for --seed (its "
                                     "PYTHONHASHSEED), as its Python 3.6/3.7 set order gave it: dense,student for "
                                     "seeds 1-4 and 42, student,dense for 0 and 5")
    teacher_is_finetuned: bool = option(False, "the teacher checkpoint already has this task's head: skip teacher "
                                               'fine-tuning')
    group_by_length: bool = option(True, 'default mode: train on batches of examples of similar length (a seeded '
                                         'shuffle, then a sort by length within every 50 batches, batches in random '
                                         'order); with batches cut to their longest example this skips most padding '
                                         '(about 3x fewer tokens on SST-2). The faithful mode always draws random '
                                         'batches, as the original')
    export_hf: bool = option(True, 'write a Hugging Face folder of the student')
    export_saved_model: bool = option(True, 'write a TF SavedModel of the student')
    # --- task transfer and task-agnostic distillation (XtremeDistilTransformers, MiniLM, MiniLMv2)
    task_agnostic: bool = option(False, "distil on --transfer_file alone (one text a line): no task, no head, no "
                                        "teacher fine-tuning, the representation stage only; the output is the "
                                        "student's encoder (model_dir/encoder)")
    augmentation_file: str = option("", "unlabelled text (one a line) the representation stage also trains on, after "
                                        "the transfer set (task transfer: the source task plus a general corpus)")
    relation_loss: str = option("", "self-attention relation loss of the representation stage: minilm (attention "
                                    "distributions + value relations; equal head counts) or minilmv2 (query, key "
                                    "and value relations over --relation_heads; any widths and head counts)")
    relation_heads: int = option(0, "MiniLMv2 relation heads (0: the student's attention heads); must divide the "
                                    "student's and the teacher's widths")
    relation_teacher_layer: int = option(0, "the teacher layer the relations come from, 1-based (0: the last; "
                                            "MiniLMv2 finds an upper-middle layer better for large teachers); the "
                                            "student's is its last")
    hidden_loss: bool = option(True, "the representation stage's hidden-state MSE (off: relation or attention "
                                     "losses alone)")
    student_init_from_teacher_layers: str = option("", "initialise the student's embeddings and blocks from these "
                                                       "teacher blocks, 0-based (e.g. 0,2,4, as DistilBERT); needs "
                                                       "the teacher's width, heads and FFN size")
    export_encoder: bool = option(False, "also write the student's encoder without a head (the general checkpoint): "
                                         "model_dir/encoder (Hugging Face BertModel + tokenizer), "
                                         "encoder_saved_model/ and encoder_keras/; always on with --task_agnostic")
    source_tasks: str = option("", "task transfer from several source tasks at once: more sources besides --task, "
                                   "comma-separated, each PATH or PATH:KIND (KIND: pairwise, ner or a GLUE task "
                                   "name such as cola or stsb; as --do_pairwise, --do_NER, --glue_task). Each source "
                                   "gets its own fine-tuned teacher, head and teacher-output cache (model_dir/"
                                   "sources/); every stage trains on the sources' batches interleaved, stops and "
                                   "selects on their mean score; the output is the shared encoder")
    # --- extractive question answering (SQuAD)
    do_QA: bool = option(False, "extractive question answering: --task is a folder with SQuAD JSON files (train.json, "
                                "dev.json, optional test.json) or squad/v1.1 / squad/v2.0 (TFDS); windows of --seq_len "
                                "tokens; --transfer_file, if given, is a SQuAD JSON file whose answers are not used")
    doc_stride: int = option(128, "--do_QA: tokens shared by consecutive windows of a long context")
    max_query_length: int = option(64, "--do_QA: questions are cut to this many tokens")
    n_best_size: int = option(20, "--do_QA: best starts and ends paired per window in the answer search")
    max_answer_length: int = option(30, "--do_QA: longest answer in tokens")
    keep_checkpoints: bool = option(False, "keep every finished stage's checkpoint in model_dir/checkpoints (default: "
                                           'only the last), to inspect or continue from an intermediate stage')

    # ------------------------------------------------------------------------------------------------ derived values
    @property
    def policy(self) -> ModePolicy:
        """What --mode decides (faithful: the original release's behaviour; default: ours)."""
        return policy_for(self.mode)

    @property
    def grouped_batches(self) -> bool:
        """Training batches of similar length (where batches are cut to their length), where the mode allows."""
        return self.group_by_length and self.policy.group_batches

    @property
    def kind(self) -> str:
        """The task's kind from the flags: ner (--do_NER), regression (STS-B) or classification (also the unused
        head of a task-agnostic run)."""
        if self.do_NER:
            return "ner"
        if self.do_QA:
            return "qa"
        return "regression" if self.glue_task in ("stsb", "sts-b") else "classification"

    @property
    def student_intermediate_size(self) -> int:
        """The student's FFN size: --intermediate_size, or when 0 the mode's default for the hidden size."""
        return self.intermediate_size or self.policy.intermediate_size(self.hidden_size)

    @property
    def student_lr(self) -> float:
        """The student's learning rate: --student_learning_rate, or when 0 the mode's default (which depends on
        whether the student starts from trained weights: a checkpoint or the teacher's layers)."""
        pretrained = bool(self.pt_student_checkpoint or self.student_init_from_teacher_layers)
        return self.student_learning_rate or self.policy.student_learning_rate(pretrained)

    @property
    def multi_hidden(self) -> bool:
        """The original forces multi-hidden-state distillation on when attention is distilled."""
        return self.distil_multi_hidden_states or self.distil_attention

    @property
    def token_representations(self) -> bool:
        """Hidden states compared token by token (NER, QA, and task-agnostic runs, which have no first-token
        task)."""
        return self.do_NER or self.do_QA or self.task_agnostic

    @property
    def init_layers(self) -> tuple[int, ...]:
        """--student_init_from_teacher_layers as integers."""
        from xtremedistil_tf.models.transplant import parse_layers
        return parse_layers(self.student_init_from_teacher_layers)

    @property
    def writes_encoder(self) -> bool:
        """Whether the run writes the student's encoder as a general checkpoint."""
        return self.export_encoder or self.task_agnostic or bool(self.source_tasks)

    @property
    def deploys_student(self) -> bool:
        """Whether the run writes int8 exports or a cost report of its task student (a run with one task; with
        several sources the product is the encoder, deployed after run_glue.py fine-tunes it)."""
        return (self.export_int8 or self.cost_report) and not self.task_agnostic and not self.source_tasks

    @property
    def sources(self) -> list[SourceTask]:
        """--source_tasks parsed (the sources besides --task)."""
        return parse_source_tasks(self.source_tasks)

    @property
    def resolved_unfreeze_order(self) -> str:
        """--unfreeze_order, or the original's order for --seed when it is empty."""
        return self.unfreeze_order or original_unfreeze_order(self.seed)

    @property
    def compress(self) -> bool:
        """The original forces compression on when the word embeddings are frozen."""
        return self.compress_word_embedding or self.freeze_word_embedding

    @property
    def from_scratch(self) -> bool:
        """The student starts from random weights (no checkpoint, no teacher layers)."""
        return not self.pt_student_checkpoint and not self.init_layers

    @property
    def word_embeddings_compressed(self) -> bool:
        """Whether the student's word embeddings start from the teacher's PCA: asked for, and not lost as the
        original lost them for a from-scratch student (the mode's `compresses_scratch_student`)."""
        return self.compress and (not self.from_scratch or self.policy.compresses_scratch_student)

    @property
    def word_embeddings_frozen(self) -> bool:
        """Whether the (compressed) word embeddings stay fixed: --freeze_word_embedding where compression holds."""
        return self.freeze_word_embedding and self.word_embeddings_compressed

    def to_json(self) -> dict:
        """The original's keys first (student_distil_batch_size as in its README), then ours."""
        values = dataclasses.asdict(self)
        runtime = {f.name for cls in (DeployOptions, RuntimeConfig) for f in dataclasses.fields(cls)}
        out = {k: v for k, v in values.items() if k not in runtime}
        out.update((k, v) for k, v in values.items() if k in runtime)
        out["distil_multi_hidden_states"] = self.multi_hidden
        out["compress_word_embedding"] = self.compress
        out["unfreeze_order"] = self.resolved_unfreeze_order
        return out

    def fingerprint(self) -> dict:
        """The values that decide what a run computes (what a rerun into the same model_dir must repeat)."""
        return {k: v for k, v in self.to_json().items() if k not in self.NEUTRAL_KEYS}

    # ------------------------------------------------------------------------------------------------ validation
    def validate_flags(self) -> None:
        """Checks that need no file: values, ranges and combinations."""
        problems = []
        if self.task_agnostic:
            if self.task:
                problems.append("--task_agnostic distils on --transfer_file alone: drop --task")
            if not self.transfer_file:
                problems.append("--task_agnostic needs --transfer_file (the corpus, one text a line)")
            if self.augmentation_file:
                problems.append("--augmentation_file is for task transfer; with --task_agnostic put every text in "
                                "--transfer_file")
            if self.do_NER or self.do_pairwise or self.glue_task or self.do_QA:
                problems.append("--task_agnostic takes no task flags (--do_NER, --do_pairwise, --do_QA, --glue_task)")
        elif not self.task:
            problems.append("--task is required (a task folder, a GLUE folder with --glue_task, or glue/<name>), or "
                            "--task_agnostic with --transfer_file")
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
        problems += self.runtime_problems() + self.deploy_problems()
        if self.logit_loss not in ("mse", "kl"):
            problems.append(f"--logit_loss={self.logit_loss!r}: expected mse or kl")
        if self.relation_loss not in ("", "minilm", "minilmv2"):
            problems.append(f"--relation_loss={self.relation_loss!r}: expected minilm, minilmv2 or empty")
        if self.relation_heads < 0 or self.relation_teacher_layer < 0:
            problems.append("--relation_heads and --relation_teacher_layer must be >= 0 (0: the default)")
        if not (self.hidden_loss or self.relation_loss or self.distil_attention):
            problems.append("--nohidden_loss leaves the representation stage without a loss: add --relation_loss "
                            "or --distil_attention")
        try:
            layers = self.init_layers
        except ConfigError as e:
            problems.append(f"--student_init_from_teacher_layers: {e}")
        else:
            if layers and self.pt_student_checkpoint:
                problems.append("--student_init_from_teacher_layers and --pt_student_checkpoint both initialise the "
                                "student: choose one")
            if layers and len(layers) != self.num_hidden_layers:
                problems.append(f"--student_init_from_teacher_layers={self.student_init_from_teacher_layers}: "
                                f"{len(layers)} layers for a student of --num_hidden_layers={self.num_hidden_layers}")
        if self.temperature <= 0:
            problems.append(f"--temperature={self.temperature}: must be positive")
        if self.unfreeze_order and sorted(self.unfreeze_order.split(",")) != ["dense", "student"]:
            problems.append(f"--unfreeze_order={self.unfreeze_order!r}: expected 'dense,student' or 'student,dense'")
        if self.source_tasks:
            try:
                sources = self.sources
            except ConfigError as e:
                problems.append(f"--source_tasks: {e}")
            else:
                if not sources:
                    problems.append(f"--source_tasks={self.source_tasks!r}: no source task")
                if len({s.name for s in sources} | {SourceTask(self.task).name}) <= len(sources):
                    problems.append(f"--source_tasks={self.source_tasks!r}: each source (and --task) needs its own "
                                    "folder name")
            if self.task_agnostic or self.do_QA:
                problems.append("--source_tasks is task transfer from several classification, regression or NER "
                                "tasks: not with --task_agnostic or --do_QA")
            if self.mode != "default":
                problems.append("--source_tasks needs --mode=default (the original release has one task)")
            if self.export_int8:
                problems.append("--export_int8 quantizes a task student: with --source_tasks the output is the encoder "
                                "(fine-tune it with run_glue.py --export_int8)")
        kinds = [f"--{name}" for name in ("do_NER", "do_pairwise", "do_QA") if getattr(self, name)]
        if len(kinds) > 1:
            problems.append(f"{' and '.join(kinds)} cannot be combined")
        if self.do_QA:
            from xtremedistil_tf.data.qa import check_window_flags
            try:
                check_window_flags(self.seq_len, self.doc_stride, self.max_query_length)
            except ConfigError as e:
                problems.append(str(e))
            if self.glue_task or self.augmentation_file:
                problems.append("--do_QA takes neither --glue_task nor --augmentation_file")
        if self.glue_task:
            from xtremedistil_tf.data.registry import glue_task_name
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
        if self.relation_loss == "minilm" and student_heads != teacher_heads:
            problems.append(f"--relation_loss=minilm needs the same number of attention heads: student "
                            f"{student_heads}, teacher {teacher_heads} (minilmv2 does not)")
        if self.relation_loss == "minilmv2":
            heads = self.relation_heads or student_heads
            for who, width in (("student", student_hidden), ("teacher", teacher_hidden)):
                if width % heads:
                    problems.append(f"--relation_heads={heads} does not divide the {who}'s width {width}")
        if self.relation_loss and self.relation_teacher_layer > teacher_layers:
            problems.append(f"--relation_teacher_layer={self.relation_teacher_layer}: the teacher has "
                            f"{teacher_layers} layers")
        layers = self.init_layers
        if layers:
            if student_hidden != teacher_hidden or student_heads != teacher_heads:
                problems.append(f"--student_init_from_teacher_layers needs the teacher's width and heads: student "
                                f"{student_hidden} wide with {student_heads} heads, teacher {teacher_hidden} with "
                                f"{teacher_heads}")
            if any(not 0 <= i < teacher_layers for i in layers):
                problems.append(f"--student_init_from_teacher_layers={self.student_init_from_teacher_layers}: the "
                                f"teacher has layers 0..{teacher_layers - 1}")
        limit = min(teacher_max_len, student_max_len)
        if self.seq_len > limit:
            problems.append(f"--seq_len={self.seq_len} is beyond the position table "
                            f"(teacher {teacher_max_len}, student {student_max_len} positions)")
        if problems:
            raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))

    def validate_paths(self) -> None:
        """Checks that need the file system: inputs exist, output folders can be created and written. Raises one
        ConfigError listing every problem."""
        problems = []
        for name in ("transfer_file", "augmentation_file"):
            value = getattr(self, name)
            if value and not fs.isfile(value):
                problems.append(f"--{name}={value}: no such file")
        is_tfds = (self.task.startswith(("glue/", "squad/")) or self.task == "conll2003") and not fs.exists(self.task)
        # NER reads the original's train.tsv or a CoNLL folder's train.txt.
        train_files = ("train.json",) if self.do_QA else ("train.tsv", "train.txt") if self.do_NER else ("train.tsv",)
        if not (self.task_agnostic or is_tfds):  # a task-agnostic run has no task
            problems += _task_folder_problems("--task", self.task, train_files, glue_task=self.glue_task)
        for source in self.sources:
            problems += _task_folder_problems("--source_tasks", source.task,
                                              ("train.tsv", "train.txt") if source.do_NER else ("train.tsv",),
                                              glue_task=source.glue_task)
        for name in ("pt_teacher_checkpoint", "pt_student_checkpoint"):
            value = getattr(self, name)
            looks_like_path = fs.is_remote(value) or value.startswith((".", "/")) or value.strip("/").count("/") > 1
            if value and looks_like_path and not fs.isdir(value):
                problems.append(f"--{name}={value}: no such folder")
        for name in ("model_dir", "teacher_model_dir"):
            value = getattr(self, name)
            if value:
                err = _writable(value)
                if err:
                    problems.append(f"--{name}={value}: {err}")
        if problems:
            raise ConfigError("invalid paths:\n  " + "\n  ".join(problems))


def _task_folder_problems(flag: str, task: str, train_files: tuple[str, ...], *, glue_task: str) -> list[str]:
    if not fs.isdir(task):
        return [f"{flag}={task}: no such folder"]
    if not glue_task and not any(fs.isfile(fs.join(task, f)) for f in train_files):
        return [f"{flag}={task}: no {' or '.join(train_files)} in the task folder"]
    return []


@dataclasses.dataclass(frozen=True)
class SourceTask:
    """One source task of --source_tasks: its folder and the task flags that read it."""
    task: str
    do_pairwise: bool = False
    do_NER: bool = False
    glue_task: str = ""

    @property
    def name(self) -> str:
        """The folder's name, which names the source's subfolder of model_dir and its metrics."""
        return fs.basename(self.task.rstrip("/")) or self.task


def parse_source_tasks(value: str) -> list[SourceTask]:
    """`PATH[:KIND],...` as SourceTasks; KIND is pairwise, ner or a GLUE task name (a colon followed by a path, as in
    gs://, belongs to the path)."""
    from xtremedistil_tf.data.registry import glue_task_name
    out = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        path, sep, kind = item.rpartition(":")
        if not sep or not kind or "/" in kind:
            path, kind = item, ""
        if not path:
            raise ConfigError(f"{item!r}: expected PATH or PATH:KIND")
        if kind.lower() == "pairwise":
            out.append(SourceTask(path, do_pairwise=True))
        elif kind.lower() == "ner":
            out.append(SourceTask(path, do_NER=True))
        elif kind:
            try:
                out.append(SourceTask(path, glue_task=glue_task_name(kind)))
            except ConfigError as e:
                raise ConfigError(f"{item!r}: KIND is pairwise, ner or a GLUE task ({e})") from None
        else:
            out.append(SourceTask(path))
    return out


def _writable(folder: str) -> Optional[str]:
    try:
        fs.makedirs(folder)
    except OSError as e:
        return f"cannot create it ({e.strerror})"
    if not fs.is_remote(folder) and not os.access(folder, os.W_OK | os.X_OK):
        return "not writable"
    return None


def diff_configs(saved: dict, current: dict) -> list[str]:
    """`key: saved -> current` for every fingerprint value that differs (neutral keys ignored), to explain why a
    rerun into the same model_dir is refused."""
    keys = sorted((set(saved) | set(current)) - set(DistilConfig.NEUTRAL_KEYS))
    return [f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in keys if saved.get(k) != current.get(k)]
