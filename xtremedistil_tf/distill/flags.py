"""absl flags for run_distillation.py: the original release's names and meanings, then ours."""
from __future__ import annotations

from xtremedistil_tf.cli import dataclass_from_flags, define_dataclass_flags
from xtremedistil_tf.distill.config import DistilConfig

_HELP = {
    "task": "task folder (train/dev/test.tsv in the original's format), a GLUE folder with --glue_task, a CoNLL "
            "folder with --do_NER, or a TFDS name such as glue/sst2",
    "model_dir": "output folder for the student, checkpoints and caches",
    "seq_len": "maximum sequence length in tokens",
    "transfer_file": "unlabelled transfer set (text, pair or words a line); empty: the training texts",
    "teacher_model_dir": "where the fine-tuned teacher is saved and reloaded (default: model_dir/teacher)",
    "do_NER": "sequence tagging",
    "do_pairwise": "sentence-pair classification",
    "hidden_size": "student hidden size",
    "num_attention_heads": "student attention heads",
    "num_hidden_layers": "student layers",
    "pt_student_checkpoint": "initialise the student from this BERT checkpoint (folder or hub id)",
    "distil_attention": "also distil attention maps (implies --distil_multi_hidden_states)",
    "distil_multi_hidden_states": "distil the student's L+1 hidden states against the teacher's top L+1",
    "compress_word_embedding": "initialise the student's word embeddings with a PCA of the teacher's",
    "freeze_word_embedding": "keep the (compressed) word embeddings frozen (implies --compress_word_embedding)",
    "pt_teacher": "the teacher's class name in the original (TFBertModel, TFRobertaModel, ...); kept for "
                  "compatibility, the architecture is read from the checkpoint's config.json",
    "pt_teacher_checkpoint": "the teacher (Hugging Face folder or hub id); its tokenizer serves every model",
    "opt_policy": "precision policy: float32, mixed_float16 or mixed_bfloat16",
    "student_distil_batch_size": "per-replica batch size for distillation",
    "student_ft_batch_size": "per-replica batch size for the student's label stages",
    "teacher_batch_size": "per-replica batch size for the teacher",
    "ft_epochs": "maximum epochs on labelled data (teacher and label stages)",
    "distil_epochs": "maximum epochs per transfer chunk",
    "distil_chunk_size": "transfer examples per chunk",
    "patience": "early-stopping patience (epochs within a chunk, chunks within a stage)",
    "mode": "default (improved) or faithful (the original release's behaviour, quirks included)",
    "seed": "random seed",
    "glue_task": "read --task as a GLUE folder of this task (sst2, mnli, stsb, ...)",
    "student_dropout": "dropout rate of the student (the original: 0.1)",
    "intermediate_size": "student FFN size; 0: 3072 in faithful mode, 4 x hidden_size otherwise",
    "teacher_learning_rate": "Adam learning rate for teacher fine-tuning",
    "student_learning_rate": "Adam learning rate for the student; 0: 3e-5 faithful, 1e-3 from scratch, 5e-5 "
                             "from a checkpoint",
    "logit_loss": "mse (the original) or kl (with --temperature)",
    "temperature": "softmax temperature for --logit_loss=kl",
    "unfreeze_order": "faithful mode: order in which the groups dense and student are unfrozen",
    "teacher_is_finetuned": "the teacher checkpoint already has this task's head: skip teacher fine-tuning",
    "deterministic": "TF op determinism: reruns and resumed runs give identical weights",
    "jit_compile": "compile forward, loss and gradients with XLA",
    "fixed_shapes": "pad every batch to seq_len (always on TPU); otherwise each batch is cut to its longest "
                    "example, which gives the same numbers faster",
    "group_by_length": "default mode: train on batches of examples of similar length (a seeded shuffle, then a "
                       "sort by length within every 50 batches, batches in random order); with batches cut to "
                       "their longest example this skips most padding (about 3x fewer tokens on SST-2). The "
                       "faithful mode always draws random batches, as the original",
    "strategy": "auto, default, mirrored, multi_worker (TF_CONFIG) or tpu",
    "tpu": "TPU name or address for --strategy=tpu",
    "verbose": "show tracebacks on errors",
    "log_every": "log the loss every N steps",
    "export_hf": "write a Hugging Face folder of the student",
    "export_saved_model": "write a TF SavedModel of the student",
    "keep_checkpoints": "keep every finished stage's checkpoint in model_dir/checkpoints (default: only the "
                        "last), to inspect or continue from an intermediate stage",
}


def define_flags() -> None:
    define_dataclass_flags(DistilConfig, _HELP)


def config_from_flags() -> DistilConfig:
    return dataclass_from_flags(DistilConfig)
