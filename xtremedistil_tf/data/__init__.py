"""Data: the task registry, readers for every input format, finding a task's splits, tokenization to int32
features, the transfer cache.

TensorFlow is imported only where the transfer cache needs it.
"""
from xtremedistil_tf.data.pipeline import TransferCache
from xtremedistil_tf.data.readers import (
    CONLL2003_TFDS_TAGS, GLUE_LABEL_NAMES, GLUE_TASKS, Example, MissingFileError, TaskData, count_lines,
    iter_transfer_file, read_conll, read_glue, read_labels_file, read_task_file, read_task_folder, read_tfds,
)
from xtremedistil_tf.data.tasks import TaskSplits, load_task
from xtremedistil_tf.data.tokenize import Featurizer, x_subword_labels, load_tokenizer, tokenizer_fingerprint

__all__ = [
    "CONLL2003_TFDS_TAGS", "GLUE_LABEL_NAMES", "GLUE_TASKS", "Example", "Featurizer", "MissingFileError", "TaskData",
    "TaskSplits", "TransferCache", "count_lines", "x_subword_labels", "iter_transfer_file",
    "load_task", "load_tokenizer", "read_conll", "read_glue", "read_labels_file", "read_task_file",
    "read_task_folder", "read_tfds", "tokenizer_fingerprint",
]
