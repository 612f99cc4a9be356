"""Tiny teachers and task folders for distillation tests: a random BERT saved by transformers with the MiniLM
tokenizer, a few real SST-2-like sentences, tiny CoNLL folders, and the check of an exported encoder."""
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


def check_encoder_export(folder: str, seq: int = 12) -> None:
    """transformers loads the encoder folder with every weight present and gives our hidden states (1e-4)."""
    import numpy as np
    import torch
    import transformers

    from xtremedistil_tf.convert.export import load_keras
    model, info = transformers.BertModel.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    enc = tok(["a gripping , funny and moving film", "dull"], padding="max_length", max_length=seq,
              return_tensors="np")
    arrays = {k: enc[k].astype("int32") for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        theirs = model.eval()(**{k: torch.tensor(v, dtype=torch.long) for k, v in arrays.items()})
    ours = load_keras(folder + "_keras")(arrays, training=False)
    real = arrays["attention_mask"].astype(bool)
    np.testing.assert_allclose(ours["sequence_output"].numpy()[real], theirs.last_hidden_state.numpy()[real],
                               atol=1e-4)
    np.testing.assert_allclose(ours["pooled_output"].numpy(), theirs.pooler_output.numpy(), atol=1e-4)


NER_WORDS = "the movie was seen in by with and a city river old new big small".split()
NER_ENTITIES = {"john": "PER", "mary": "PER", "paris": "LOC", "london": "LOC", "google": "ORG"}


def conll_folder(folder: Path, *, seed: int = 0) -> Path:
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    for split, n in (("train", 60), ("dev", 16), ("test", 16)):
        lines = ["-DOCSTART- -X- O O", ""]
        for _ in range(n):
            words = [rng.choice(NER_WORDS) for _ in range(rng.randint(3, 8))]
            words.insert(rng.randrange(len(words) + 1), rng.choice(sorted(NER_ENTITIES)))
            for w in words:
                lines.append(f"{w} NN O {'B-' + NER_ENTITIES[w] if w in NER_ENTITIES else 'O'}")
            lines.append("")
        (folder / f"{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def crash_then_resume(monkeypatch, run, model_dir: Path, *, crash_at: int, stage_index: int | None = None):
    """Runs `run()` until the `crash_at`-th call of Distillation.stage_chunk (of stage `stage_index`, or any)
    raises a simulated crash, checks that `model_dir` holds no encoder yet, then runs it again to the end;
    returns the second run's result."""
    import pytest

    from xtremedistil_tf.distill.runner import Distillation
    original = Distillation.stage_chunk
    calls = {"n": 0}

    def crashing(self, stage, index):
        if stage_index is None or stage.index == stage_index:
            calls["n"] += 1
            if calls["n"] == crash_at:
                raise KeyboardInterrupt("simulated crash")
        return original(self, stage, index)

    monkeypatch.setattr(Distillation, "stage_chunk", crashing)
    with pytest.raises(KeyboardInterrupt):
        run()
    monkeypatch.setattr(Distillation, "stage_chunk", original)
    assert not (model_dir / "encoder").exists(), "an unfinished run wrote its outputs"
    return run()


def assert_same_encoder(a: Path, b: Path) -> None:
    """Two exported encoder folders hold the same weights, bit for bit."""
    import numpy as np
    from safetensors.numpy import load_file
    x, y = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert x.keys() == y.keys()
    for k in x:
        np.testing.assert_array_equal(x[k], y[k], err_msg=k)
