"""A distillation run's data: the task's labelled splits as arrays, and the transfer set as a tokenized cache read
in chunks, with the row order and padding the mode policy asks for."""
from __future__ import annotations

import numpy as np
from absl import logging

from xtremedistil_tf import fs, io
from xtremedistil_tf.data.pipeline import TransferCache, shuffled_row_order
from xtremedistil_tf.data.readers import Example
from xtremedistil_tf.data.tokenize import Featurizer, tokenizer_fingerprint, x_subword_labels
from xtremedistil_tf.distill.config import DistilConfig
from xtremedistil_tf.models.encoder import INPUT_NAMES


def split_tail(arrays: dict[str, np.ndarray], cut: int):
    """(the first `cut` rows, the rest): a chunk and its validation tail (the mode's `validation_cut`), as Keras'
    validation_split, before any shuffling."""
    return {k: v[:cut] for k, v in arrays.items()}, {k: v[cut:] for k, v in arrays.items()}


def transfer_line(example: Example) -> str:
    """An example as a line of a transfer file (text, or text and pair, tab-separated)."""
    text = " ".join(example.text_a) if isinstance(example.text_a, tuple) else example.text_a
    return f"{text}\t{example.text_b}\n" if example.text_b is not None else f"{text}\n"


class DistillationData:
    """Featurized train/dev/test arrays, the chunked transfer set and the optional augmentation corpus of one run.

    Args:
      config: the run's configuration (task, seq_len, transfer file, chunk size, seed, mode).
      task: the loaded task (`TaskSplits`); None for a task-agnostic run (the transfer set alone).
      tokenizer: the teacher's tokenizer, which feeds every model.
      folder: the run folder (`RunFolder`), for the transfer cache.
    """

    def __init__(self, config: DistilConfig, task, tokenizer, folder):
        c, policy = config, config.policy
        self.config = config
        self.task = task
        self.kind = task.kind if task is not None else c.kind
        self.label_names = task.label_names if task is not None else None
        self.augmentation = None
        if self.kind == "qa":
            self._init_qa(tokenizer)
            return
        feat_kwargs = {}
        self.special_tokens = ()  # NER label names of [PAD], [CLS], [SEP] (the original's scheme)
        if self.kind == "ner" and policy.ner_x_labels:
            self.label_names, feat_kwargs = x_subword_labels(task.label_names, tokenizer)
            self.special_tokens = tuple(self.label_names[i] for i in feat_kwargs["special_label_ids"].values())
        self.token_keys = INPUT_NAMES + (("labels", "t_logits", "word_index") if self.kind == "ner" else ())
        self.featurizer = Featurizer(tokenizer, c.seq_len, pad_to=policy.pad_to(self.kind), **feat_kwargs)
        self.arrays: dict[str, dict[str, np.ndarray]] = {}
        for split in ("train", "dev", "test"):
            if task is not None and task.labelled(split):
                arrays = self.featurizer.encode(task.splits[split], name=split)
                if policy.shuffle_rows:
                    order = shuffled_row_order(len(arrays["input_ids"]), c.seed)
                    arrays = {k: v[order] for k, v in arrays.items()}
                self.arrays[split] = arrays
        for split, arr in self.arrays.items():
            logging.info("%s: %d examples, padded to %d tokens", split, len(arr["input_ids"]),
                         arr["input_ids"].shape[1])
        transfer_file = c.transfer_file
        if not transfer_file:
            transfer_file = folder.path("transfer-from-train.tsv")
            logging.warning("no --transfer_file: using the training texts (%d rows) as the transfer set",
                            len(task.splits["train"]))
            if folder.chief and not fs.isfile(transfer_file):
                io.write_text(transfer_file, "".join(transfer_line(e) for e in task.splits["train"].examples))
        pairwise = task is not None and task.pairwise
        self.transfer = TransferCache(folder.path("transfer_cache"), transfer_file, self.featurizer, kind=self.kind,
                                      pairwise=pairwise, progress=c.progress)
        self.num_chunks = self.transfer.num_chunks(c.distil_chunk_size)
        logging.info("transfer set: %d examples in %d chunk(s) of at most %d%s", self.transfer.num_examples,
                     self.num_chunks, c.distil_chunk_size,
                     f", rows shuffled with seed {c.seed}" if policy.shuffle_rows else "")
        if c.augmentation_file:
            # One text a line, whatever the task: a pair task's model also reads single texts.
            self.augmentation = TransferCache(folder.path("augmentation_cache"), c.augmentation_file,
                                              self.featurizer, kind=self.kind, pairwise=False, progress=c.progress)
            logging.info("augmentation corpus: %d examples in %d chunk(s), after the transfer set in the "
                         "representation stage", self.augmentation.num_examples,
                         self.augmentation.num_chunks(c.distil_chunk_size))

    def _init_qa(self, tokenizer) -> None:
        """Question answering: the windows of every split (`self.qa_features`, what answers are read back with),
        and as transfer set the windows of --transfer_file (a SQuAD JSON file) or of the training questions."""
        from xtremedistil_tf.data.qa import featurize_qa
        from xtremedistil_tf.data.readers.squad import read_squad_json
        c = self.config
        windows = dict(max_seq_length=c.seq_len, doc_stride=c.doc_stride, max_query_length=c.max_query_length)
        self.token_keys = INPUT_NAMES + ("t_logits",)
        self.qa_features, self.arrays = {}, {}
        for split in ("train", "dev", "test"):
            if self.task.labelled(split):
                feats = featurize_qa(tokenizer, self.task.splits[split].examples, with_labels=True, name=split,
                                     **windows)
                self.qa_features[split], self.arrays[split] = feats, feats.arrays
        if c.transfer_file:
            source = read_squad_json(c.transfer_file)
            arrays = featurize_qa(tokenizer, source.examples, with_labels=False, name="transfer", **windows).arrays
            from xtremedistil_tf.distill.teacher import weights_id
            key = {"file": fs.realpath(c.transfer_file), "id": weights_id(c.transfer_file)}
        else:
            logging.warning("no --transfer_file: using the training questions' windows (%d) as the transfer set",
                            len(self.arrays["train"]["input_ids"]))
            arrays = {k: self.arrays["train"][k] for k in INPUT_NAMES}
            key = {"file": "train windows", "examples": len(self.task.splits["train"])}
        self.transfer = WindowTransfer(arrays, {**key, **windows, "tokenizer": tokenizer_fingerprint(tokenizer)})
        self.num_chunks = self.transfer.num_chunks(c.distil_chunk_size)
        logging.info("transfer set: %d windows in %d chunk(s) of at most %d", self.transfer.num_examples,
                     self.num_chunks, c.distil_chunk_size)

    @property
    def row_order(self) -> str:
        """How transfer rows are ordered (part of the teacher-output cache's key)."""
        c = self.config
        return f"shuffled with seed {c.seed}" if c.policy.shuffle_rows else "file order"

    def transfer_chunk(self, index: int) -> dict[str, np.ndarray]:
        """Chunk `index` of the transfer set: consecutive rows of the file, or of the file shuffled as a whole
        when the policy shuffles rows (so chunks and their validation tails are the original's rows)."""
        size = self.config.distil_chunk_size
        if not self.config.policy.shuffle_rows:
            return self.transfer.load_chunk(index, size)
        order = shuffled_row_order(self.transfer.num_examples, self.config.seed)
        return self.transfer.load_rows(order[index * size:(index + 1) * size])

    @property
    def num_representation_chunks(self) -> int:
        """Chunks of the representation stage: the transfer set's, then the augmentation corpus's."""
        extra = self.augmentation.num_chunks(self.config.distil_chunk_size) if self.augmentation else 0
        return self.num_chunks + extra

    def representation_chunk(self, index: int) -> dict[str, np.ndarray]:
        """Chunk `index` of the representation stage: a transfer chunk, then augmentation chunks (in file order,
        shuffled within each epoch by the trainer)."""
        if index < self.num_chunks:
            return self.transfer_chunk(index)
        return self.augmentation.load_chunk(index - self.num_chunks, self.config.distil_chunk_size)


class WindowTransfer:
    """A transfer set already in memory (QA windows), with the chunked reads of `TransferCache`."""

    def __init__(self, arrays: dict[str, np.ndarray], key: dict):
        self.arrays = arrays
        self.num_examples = len(arrays["input_ids"])
        self.manifest = {"key": key}

    def num_chunks(self, size: int) -> int:
        """Chunks of at most `size` rows."""
        return max(1, -(-self.num_examples // size))

    def load_chunk(self, index: int, size: int) -> dict[str, np.ndarray]:
        """Rows [index * size, (index + 1) * size)."""
        return {k: v[index * size:(index + 1) * size] for k, v in self.arrays.items()}

    def load_rows(self, rows) -> dict[str, np.ndarray]:
        """The given rows, in that order."""
        return {k: v[rows] for k, v in self.arrays.items()}
