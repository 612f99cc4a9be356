"""Tiny teachers and task folders for distillation tests: a random BERT saved by transformers with the MiniLM
tokenizer, and a few real SST-2-like sentences."""
from __future__ import annotations

import random
import shutil
from pathlib import Path

POSITIVE = ["a gripping , funny and moving film", "one of the best films of the year", "warm and wonderful",
            "the cast is superb", "a delight from start to finish", "smart , sharp and very funny",
            "beautifully shot and acted", "an absolute joy", "touching and honest", "great fun for everyone"]
NEGATIVE = ["a dull , lifeless mess", "the plot makes no sense", "boring and far too long", "badly acted",
            "a waste of time", "the jokes fall flat", "tedious and predictable", "an ugly , empty film",
            "painfully slow", "nothing works here"]

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def make_teacher(folder: Path, minilm_dir: Path, *, hidden=32, layers=2, heads=2, dropout=0.0, seed=0) -> Path:
    import torch
    import transformers
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers,
                                  num_attention_heads=heads, intermediate_size=2 * hidden,
                                  max_position_embeddings=64, hidden_dropout_prob=dropout,
                                  attention_probs_dropout_prob=dropout)
    transformers.BertModel(cfg).save_pretrained(folder)
    for name in TOKENIZER_FILES:
        if (minilm_dir / name).exists():
            shutil.copy(minilm_dir / name, folder / name)
    return folder


def make_task(folder: Path, *, n_train=64, n_dev=24, n_test=24, n_transfer=96, seed=0) -> Path:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)

    def rows(n):
        out = []
        for _ in range(n):
            label = rng.randint(0, 1)
            a, b = rng.sample(POSITIVE if label else NEGATIVE, 2)
            out.append((f"{a} , {b}", label))
        return out

    for split, n in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        (folder / f"{split}.tsv").write_text("".join(f"{t}\t{y}\n" for t, y in rows(n)))
    (folder / "transfer.tsv").write_text("".join(f"{t}\n" for t, _ in rows(n_transfer)))
    return folder


def config(task: Path, teacher: Path, model_dir: Path, **overrides):
    from xtremedistil_tf.distill.config import DistilConfig
    values = dict(task=str(task), model_dir=str(model_dir), transfer_file=str(task / "transfer.tsv"),
                  pt_teacher_checkpoint=str(teacher), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                  seq_len=24, teacher_batch_size=16, student_distil_batch_size=16, student_ft_batch_size=16,
                  ft_epochs=2, distil_epochs=2, patience=2, distil_chunk_size=1000, teacher_learning_rate=1e-3,
                  student_learning_rate=1e-3, export_hf=False, export_saved_model=False, log_every=0, cost_report=False)
    values.update(overrides)
    return DistilConfig(**values)
