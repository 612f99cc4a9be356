"""Tokenization of :class:`~xtremedistil_tf.data.readers.Example` rows into int32 numpy features.

Uses a transformers *fast* tokenizer. Encoding goes through a private copy of its Rust backend (same
normalizer, pre-tokenizer, model and special-token template; truncation "longest_first" to ``seq_len``, as
``tokenizer(..., truncation=True, max_length=seq_len)``), which avoids transformers' per-example Python work.

Padding: ``pad_to="seq_len"`` (default) pads every example to ``seq_len``; ``pad_to="longest"`` pads to the
longest example of the ``encode`` call (at most ``seq_len``), which is what the original release did for
classification files (``tokenizer(texts, padding=True, truncation=True, max_length=seq_len)`` per file). The
original padded NER files to ``seq_len``.

NER labels: the word's tag goes on its first sub-token. ``ner_subword_label="ignore"`` (default) gives -1 to the
other sub-tokens, the special tokens and the pads (-1 is left out of loss and metrics).
``ner_subword_label="x"`` is the original's scheme: other sub-tokens get ``x_label_id`` (the original's "X"
label) and, when ``special_label_ids`` is given, the first special token gets ``special_label_ids["bos"]``, the
other special tokens ``["eos"]`` and pads ``["pad"]`` (the original labelled ``[CLS]``, ``[SEP]`` and ``[PAD]``
with labels of those names appended after labels.tsv's; :func:`x_subword_labels` builds that list).
Alignment uses the encoding's word ids: linear in sentence length (the original re-tokenized every prefix).
"""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from absl import logging

from xtremedistil_tf import fs
from xtremedistil_tf.data.readers import Example, TaskData
from xtremedistil_tf.errors import CheckpointError, ConfigError

PAD_TO = ("seq_len", "longest")
NER_SUBWORD_LABELS = ("ignore", "x")
IGNORE_LABEL = -1


def load_tokenizer(name_or_path: str, *, local_files_only: bool | None = None):
    """Loads a transformers fast tokenizer from a folder (local, or remote such as gs://, read from a downloaded
    copy), or from the hub by id when online.

    Raises ConfigError with a clear message when it cannot be loaded or is not a fast tokenizer.
    """
    from transformers import AutoTokenizer

    name = os.fspath(name_or_path)
    is_dir = fs.isdir(name)
    if fs.is_remote(name) and not is_dir:
        raise ConfigError(f"cannot load a tokenizer from {name}: no such folder")
    if local_files_only is None:
        local_files_only = is_dir
    try:
        with fs.local_copy(name) if is_dir else contextlib.nullcontext(name) as source:
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_files_only,
                                                      trust_remote_code=False)  # never run code from a folder
    except Exception as e:  # noqa: BLE001 - transformers/huggingface_hub raise many types
        if is_dir:
            raise ConfigError(f"cannot load a tokenizer from the folder {name}: {type(e).__name__}: {e}. "
                              "It needs tokenizer.json (or vocab.txt) and tokenizer_config.json.") from e
        raise ConfigError(f"cannot load the tokenizer {name!r}: it is not a local folder and the Hugging Face hub "
                          f"could not provide it ({type(e).__name__}: {e}). Pass a local folder, or go online.") from e
    if not getattr(tokenizer, "is_fast", False) or not hasattr(tokenizer, "backend_tokenizer"):
        raise ConfigError(f"the tokenizer {name!r} is not a fast (Rust) tokenizer; only fast tokenizers are supported")
    if fs.is_remote(name):
        tokenizer.name_or_path = name  # not the deleted download folder: the name is part of its fingerprint
    return tokenizer


def check_vocabulary(tokenizer, vocab_size: int, *, where: str, model: str = "the model") -> None:
    """Raises CheckpointError when the tokenizer can produce ids beyond the model's embedding table (on CPU that
    is a crash deep in the first batch, on GPU silently wrong embeddings). `where`: the folder to name."""
    n = int(len(tokenizer))
    if n > int(vocab_size):
        raise CheckpointError(f"{where}: the tokenizer has {n} tokens but {model} has an embedding table of "
                              f"{vocab_size} rows (vocab_size), so token ids {vocab_size}..{n - 1} fall outside it; "
                              "use the tokenizer the model was trained with")


def tokenizer_fingerprint(tokenizer) -> dict:
    """Name, vocabulary size and a sha256 of the full backend definition (vocab, normalizer, template)."""
    spec = tokenizer.backend_tokenizer.to_str()
    return {
        "name": str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__),
        "vocab_size": int(len(tokenizer)),
        "sha256": hashlib.sha256(spec.encode("utf-8")).hexdigest(),
    }


def x_subword_labels(label_names: Sequence[str], tokenizer) -> tuple[list[str], dict]:
    """The original's NER label list and the Featurizer arguments that reproduce its label scheme.

    The original appended ``[pad, "X", eos, bos]`` (for BERT ``[PAD], X, [SEP], [CLS]``) to labels.tsv's list.
    Returns (extended label names, {"ner_subword_label": "x", "x_label_id": ..., "special_label_ids": {...}}).
    """
    pad = tokenizer.pad_token if tokenizer.pad_token is not None else "<pad>"
    if tokenizer.cls_token is not None and tokenizer.sep_token is not None:
        bos, eos = tokenizer.cls_token, tokenizer.sep_token
    else:
        bos = tokenizer.bos_token or "<s>"
        eos = tokenizer.eos_token or "</s>"
    names = list(label_names) + [pad, "X", eos, bos]
    n = len(label_names)
    return names, {"ner_subword_label": "x", "x_label_id": n + 1,
                   "special_label_ids": {"pad": n, "eos": n + 2, "bos": n + 3}}


@dataclass
class Encoded:
    """Unpadded encodings of a batch: concatenated token ids with per-example lengths."""

    ids: np.ndarray  # [sum(lengths)] int32
    type_ids: np.ndarray | None  # [sum(lengths)] int32, None when all zero
    lengths: np.ndarray  # [N] int32
    labels: np.ndarray | None  # [N] int32/float32, or [sum(lengths)] int32 for NER
    word_index: np.ndarray | None  # [sum(lengths)] int32 for NER
    num_truncated: int
    words_cut: int = 0  # NER: words whose first sub-token was cut off by truncation
    words_empty: int = 0  # NER: words the tokenizer turned into no token at all


class Featurizer:
    """Turns examples into int32 ``input_ids``, ``attention_mask``, ``token_type_ids`` [N, L] (+ labels).

    ``encode`` returns also ``labels`` when the examples are labelled: [N] int32 (class ids) or float32
    (regression); for NER [N, L] int32, plus ``word_index`` [N, L] int32 (the word's position at its first
    sub-token, -1 elsewhere) to map token predictions back to words. After each call ``last_stats`` holds
    num_examples, num_truncated and the padded length.
    """

    def __init__(self, tokenizer, seq_len: int, *, pad_to: str = "seq_len", ner_subword_label: str = "ignore",
                 x_label_id: int | None = None, special_label_ids: Mapping[str, int] | None = None,
                 batch_size: int = 4096):
        from tokenizers import Tokenizer

        if pad_to not in PAD_TO:
            raise ValueError(f"pad_to must be one of {PAD_TO}, got {pad_to!r}")
        if ner_subword_label not in NER_SUBWORD_LABELS:
            raise ValueError(f"ner_subword_label must be one of {NER_SUBWORD_LABELS}, got {ner_subword_label!r}")
        if ner_subword_label == "x" and x_label_id is None:
            raise ValueError('ner_subword_label="x" needs x_label_id (see x_subword_labels)')
        if special_label_ids is not None and set(special_label_ids) != {"pad", "bos", "eos"}:
            raise ValueError('special_label_ids needs exactly the keys "pad", "bos", "eos"')
        if int(seq_len) < 4:
            raise ValueError(f"seq_len must be at least 4, got {seq_len}")
        self.tokenizer = tokenizer
        self.seq_len = int(seq_len)
        self.pad_to = pad_to
        self.ner_subword_label = ner_subword_label
        self.x_label_id = x_label_id
        self.special_label_ids = dict(special_label_ids) if special_label_ids is not None else None
        self.batch_size = int(batch_size)
        self._backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        self._backend.no_padding()
        self._backend.enable_truncation(self.seq_len, strategy="longest_first")
        pad_id = tokenizer.pad_token_id
        if pad_id is None:
            logging.warning("tokenizer has no pad token; padding with id 0")
            pad_id = 0
        self.pad_id = int(pad_id)
        self.pad_type_id = int(getattr(tokenizer, "pad_token_type_id", 0) or 0)
        # Whether single sequences can have non-zero type ids (not for BERT-like templates): if not, skip them.
        probe = self._backend.encode("a b")
        self._single_types = any(probe.type_ids)
        self.last_stats: dict = {}

    # -- fingerprints ------------------------------------------------------------------------------------------
    def fingerprint(self) -> dict:
        """The tokenizer's fingerprint (see tokenizer_fingerprint), so caches built with another one are rebuilt."""
        return tokenizer_fingerprint(self.tokenizer)

    # -- encoding ----------------------------------------------------------------------------------------------
    def encode_unpadded(self, examples: Sequence[Example], *, kind: str | None = None) -> Encoded:
        """Tokenizes (with truncation to seq_len) without padding; see :class:`Encoded`."""
        examples = list(examples)
        if kind is None:
            kind = _infer_kind(examples)
        ner = kind == "ner"
        labelled = _labelled(examples)
        pairwise = bool(examples) and examples[0].text_b is not None
        if any((e.text_b is not None) != pairwise for e in examples):
            raise ValueError("mixing single texts and pairs in one encode call")
        ids_parts, type_parts, len_parts, lab_parts, word_parts = [], [], [], [], []
        truncated = cut = empty = 0
        want_types = pairwise or self._single_types
        for start in range(0, len(examples), self.batch_size):
            batch = examples[start:start + self.batch_size]
            if ner:
                for e in batch:
                    if not isinstance(e.text_a, tuple):
                        raise ValueError("NER examples need a tuple of words as text_a")
                encs = self._backend.encode_batch([list(e.text_a) for e in batch], is_pretokenized=True)
            elif pairwise:
                encs = self._backend.encode_batch([(e.text_a, e.text_b) for e in batch])
            else:
                encs = self._backend.encode_batch([e.text_a for e in batch])
            ids = [enc.ids for enc in encs]
            lengths = np.fromiter(map(len, ids), np.int32, count=len(ids))
            total = int(lengths.sum())
            ids_parts.append(np.fromiter(itertools.chain.from_iterable(ids), np.int32, count=total))
            if want_types:
                type_parts.append(np.fromiter(itertools.chain.from_iterable(enc.type_ids for enc in encs),
                                              np.int32, count=total))
            len_parts.append(lengths)
            truncated += sum(1 for enc in encs if enc.overflowing)
            if ner:
                labs, widx, c, m = self._align_ner(batch, encs, labelled)
                lab_parts.append(labs)
                word_parts.append(widx)
                cut += c
                empty += m
        lengths = np.concatenate(len_parts) if len_parts else np.zeros([0], np.int32)
        flat = np.concatenate(ids_parts) if ids_parts else np.zeros([0], np.int32)
        types = np.concatenate(type_parts) if type_parts else None
        labels = word_index = None
        if ner:
            word_index = np.concatenate(word_parts) if word_parts else np.zeros([0], np.int32)
            labels = (np.concatenate(lab_parts) if lab_parts else np.zeros([0], np.int32)) if labelled else None
        elif labelled:
            labels = _sentence_labels(examples, kind)
        return Encoded(flat, types, lengths, labels, word_index, truncated, cut, empty)

    def _align_ner(self, batch, encs, labelled):
        x_mode = self.ner_subword_label == "x"
        sub = self.x_label_id if x_mode else IGNORE_LABEL
        specials = self.special_label_ids if x_mode else None
        labs: list[int] = []
        widx: list[int] = []
        cut = empty = 0
        for e, enc in zip(batch, encs):
            tags = e.label if labelled else None
            if labelled and len(tags) != len(e.text_a):
                raise ValueError(f"NER example {e.idx}: {len(e.text_a)} words but {len(tags)} tags")
            prev = None
            seen = 0
            first_special = True
            for w in enc.word_ids:
                if w is None:
                    widx.append(-1)
                    if specials is None:
                        labs.append(IGNORE_LABEL)
                    else:
                        labs.append(specials["bos"] if first_special else specials["eos"])
                    first_special = False
                    prev = None
                    continue
                first_special = False
                if w != prev:
                    widx.append(w)
                    labs.append(tags[w] if labelled else IGNORE_LABEL)
                    seen += 1
                else:
                    widx.append(-1)
                    labs.append(sub)
                prev = w
            n_words = len(e.text_a)
            if seen < n_words:
                present = {w for w in enc.word_ids if w is not None}
                if enc.overflowing:
                    last = max(present) if present else -1
                    cut += n_words - 1 - last
                    empty += (last + 1) - len(present)
                else:
                    empty += n_words - len(present)
        return (np.asarray(labs, np.int32), np.asarray(widx, np.int32), cut, empty)

    def padded_length(self, encoded: Encoded) -> int:
        """The length `pad` uses by default: seq_len, or the batch's longest example with pad_to="longest"."""
        if self.pad_to == "seq_len" or encoded.lengths.size == 0:
            return self.seq_len
        return int(encoded.lengths.max())

    def pad(self, encoded: Encoded, length: int | None = None) -> dict[str, np.ndarray]:
        """Pads an :class:`Encoded` batch to ``length`` (default: by ``pad_to``)."""
        length = self.padded_length(encoded) if length is None else int(length)
        n = encoded.lengths.size
        if n and int(encoded.lengths.max()) > length:
            raise ValueError(f"cannot pad to {length}: an example has {int(encoded.lengths.max())} tokens")
        mask = np.arange(length, dtype=np.int32)[None, :] < encoded.lengths[:, None]
        input_ids = np.full((n, length), self.pad_id, np.int32)
        input_ids[mask] = encoded.ids
        token_type_ids = np.full((n, length), self.pad_type_id, np.int32)
        if encoded.type_ids is not None:
            token_type_ids[mask] = encoded.type_ids
        else:
            token_type_ids[mask] = 0
        out = {"input_ids": input_ids, "attention_mask": mask.astype(np.int32), "token_type_ids": token_type_ids}
        if encoded.word_index is not None:
            word_index = np.full((n, length), -1, np.int32)
            word_index[mask] = encoded.word_index
            out["word_index"] = word_index
            if encoded.labels is not None:
                pad_label = IGNORE_LABEL
                if self.ner_subword_label == "x" and self.special_label_ids is not None:
                    pad_label = self.special_label_ids["pad"]
                labels = np.full((n, length), pad_label, np.int32)
                labels[mask] = encoded.labels
                out["labels"] = labels
        elif encoded.labels is not None:
            out["labels"] = encoded.labels
        return out

    def encode(self, examples: Sequence[Example] | TaskData, *, name: str | None = None) -> dict[str, np.ndarray]:
        """Encodes examples (or a TaskData) to padded int32 arrays; see the class docstring."""
        kind = None
        if isinstance(examples, TaskData):
            kind, name = examples.kind, name or examples.path
            examples = examples.examples
        encoded = self.encode_unpadded(examples, kind=kind)
        out = self.pad(encoded)
        n = int(encoded.lengths.size)
        self.last_stats = {"num_examples": n, "num_truncated": encoded.num_truncated,
                           "padded_length": int(out["input_ids"].shape[1]),
                           "words_cut": encoded.words_cut, "words_empty": encoded.words_empty}
        log_truncation(name or "examples", n, encoded.num_truncated, self.seq_len)
        if encoded.words_cut or encoded.words_empty:
            logging.info("%s: %d word(s) lost to truncation, %d word(s) with no sub-token (their tags are not "
                         "in the labels)", name or "examples", encoded.words_cut, encoded.words_empty)
        return out


def log_truncation(name: str, n: int, truncated: int, seq_len: int) -> None:
    """Logs how many of `name`'s `n` examples were cut to `seq_len`, so silent truncation shows in the logs."""
    if truncated:
        logging.info("%s: %d of %d examples (%.2f%%) truncated to seq_len %d", name, truncated, n,
                     100.0 * truncated / max(n, 1), seq_len)
    else:
        logging.info("%s: %d examples, none truncated (seq_len %d)", name, n, seq_len)


def _infer_kind(examples: Sequence[Example]) -> str:
    if examples and isinstance(examples[0].text_a, tuple):
        return "ner"
    if any(isinstance(e.label, float) for e in examples):
        return "regression"
    return "classification"


def _labelled(examples: Sequence[Example]) -> bool:
    n = sum(e.label is not None for e in examples)
    if 0 < n < len(examples):
        raise ValueError(f"{n} of {len(examples)} examples have labels; all or none must")
    return bool(examples) and n == len(examples)


def _sentence_labels(examples: Sequence[Example], kind: str) -> np.ndarray:
    if kind == "regression":
        return np.asarray([float(e.label) for e in examples], np.float32)
    return np.asarray([int(e.label) for e in examples], np.int32)
