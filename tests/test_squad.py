"""Question answering end to end on a tiny teacher: run_squad.py fine-tunes and scores with the official SQuAD
figures and writes the official prediction files; run_distillation.py --do_QA distils a span student whose Hugging
Face export is a question-answering model."""
import json
import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from distill_helpers import config as distil_config  # noqa: E402
from distill_helpers import make_teacher  # noqa: E402

PLACES = ["Alvara", "Brontis", "Cedrel", "Dunmore", "Elsfield", "Farrow", "Glenholt", "Harrowgate", "Islemere",
          "Jorvale", "Kestrel", "Lunford"]
CAPITALS = ["Port Amel", "Ostrava", "Kelmar", "Sandvik", "Tirane", "Velden", "Marrow", "Quill", "Rennick", "Soltane",
            "Umber", "Wexley"]


def _article(i, rng, impossible=False):
    place, capital = PLACES[i], CAPITALS[i]
    year = 1700 + rng.randint(0, 299)
    context = (f"{place} is a small country in the north. Its capital is {capital}, a city on the river. "
               f"The country was founded in {year} by traders.")
    qas = [{"id": f"{place}-capital", "question": f"What is the capital of {place}?",
            "answers": [{"text": capital, "answer_start": context.index(capital)}], "is_impossible": False},
           {"id": f"{place}-year", "question": f"When was {place} founded?",
            "answers": [{"text": str(year), "answer_start": context.index(str(year))}], "is_impossible": False}]
    if impossible:
        qas.append({"id": f"{place}-king", "question": f"Who is the king of {place}?", "answers": [],
                    "plausible_answers": [{"text": "traders", "answer_start": context.index("traders")}],
                    "is_impossible": True})
    return {"title": place, "paragraphs": [{"context": context, "qas": qas}]}


@pytest.fixture
def squad_folder(tmp_path):
    rng = random.Random(0)
    folder = tmp_path / "squad"
    folder.mkdir()
    for name, ids in (("train", range(0, 8)), ("dev", range(8, 12))):
        data = {"version": "v2.0", "data": [_article(i, rng, impossible=i % 2 == 0) for i in ids]}
        (folder / f"{name}.json").write_text(json.dumps(data))
    return folder


@pytest.fixture
def teacher(tmp_path, minilm_dir):
    return make_teacher(tmp_path / "teacher", minilm_dir, hidden=32, layers=2, heads=2)


def _hf_logits(folder, ids, mask, types):
    ref = transformers.AutoModelForQuestionAnswering.from_pretrained(folder)
    ref.eval()
    with torch.no_grad():
        out = ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), token_type_ids=torch.tensor(types))
    return type(ref).__name__, np.stack([out.start_logits.numpy(), out.end_logits.numpy()], axis=-1)


def test_run_squad_v2_fine_tunes_scores_and_writes_official_files(tmp_path, squad_folder, teacher):
    from xtremedistil_tf.apps.squad import SquadConfig, run_squad
    out = tmp_path / "run"
    metrics = run_squad(SquadConfig(task="squad_v2", model=str(teacher), output_dir=str(out),
                                    train_file=str(squad_folder / "train.json"),
                                    dev_file=str(squad_folder / "dev.json"), seq_len=48, doc_stride=8,
                                    max_query_length=16, batch_size=8, eval_batch_size=8, epochs=2,
                                    learning_rate=1e-3, log_every=0, export_saved_model=False))
    dev = metrics["final"]["dev"]
    assert {"exact", "f1", "HasAns_f1", "NoAns_f1", "best_f1", "best_f1_thresh"} <= set(dev)
    assert dev["total"] == 10 and dev["HasAns_total"] == 8 and dev["NoAns_total"] == 2
    assert metrics["main_metric"] == "f1" and len(metrics["epochs"]) >= 1
    assert metrics["windows"]["train"]["answers_in_no_window"] == 0
    predictions = json.loads((out / "predictions.json").read_text())
    null_odds = json.loads((out / "null_odds.json").read_text())
    questions = {q["id"] for a in json.loads((squad_folder / "dev.json").read_text())["data"]
                 for p in a["paragraphs"] for q in p["qas"]}
    assert set(predictions) == questions == set(null_odds)
    # Every answer is a piece of its own context (or "" for no answer).
    contexts = {q["id"]: p["context"] for a in json.loads((squad_folder / "dev.json").read_text())["data"]
                for p in a["paragraphs"] for q in p["qas"]}
    assert all(text in contexts[qid] for qid, text in predictions.items())
    # The Hugging Face export is a BertForQuestionAnswering giving our start/end logits.
    from xtremedistil_tf.convert.export import load_keras
    model = load_keras(str(out / "keras"))
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 5000, size=(2, 20))
    mask, types = np.ones_like(ids), np.concatenate([np.zeros((2, 8), int), np.ones((2, 12), int)], axis=1)
    name, theirs = _hf_logits(out / "hf", ids, mask, types)
    ours = model({"input_ids": ids, "attention_mask": mask, "token_type_ids": types})["logits"].numpy()
    assert name == "BertForQuestionAnswering"
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_squad_v1_refuses_unanswerable_questions(tmp_path, squad_folder, teacher):
    from xtremedistil_tf.apps.squad import SquadConfig, run_squad
    from xtremedistil_tf.errors import ConfigError
    with pytest.raises(ConfigError, match="squad_v2"):
        run_squad(SquadConfig(task="squad", model=str(teacher), output_dir=str(tmp_path / "run"),
                              train_file=str(squad_folder / "train.json"), dev_file=str(squad_folder / "dev.json"),
                              seq_len=48, doc_stride=8, max_query_length=16, epochs=1, log_every=0))


def test_window_flags_are_refused_before_any_work(tmp_path, squad_folder, teacher):
    from xtremedistil_tf.apps.squad import SquadConfig
    from xtremedistil_tf.errors import ConfigError
    with pytest.raises(ConfigError, match="--doc_stride=40"):
        SquadConfig(task="squad_v2", model=str(teacher), output_dir=str(tmp_path / "run"),
                    train_file=str(squad_folder / "train.json"), dev_file=str(squad_folder / "dev.json"),
                    seq_len=48, doc_stride=40, max_query_length=16).validate()


@pytest.mark.slow  # about 35 s; the SQuAD fine-tuning test keeps features, spans and official files by default
def test_distillation_do_qa_runs_every_stage_and_exports_a_span_student(tmp_path, squad_folder, teacher):
    from xtremedistil_tf.distill.runner import run_distillation
    model_dir = tmp_path / "distilled"
    cfg = distil_config(squad_folder, teacher, model_dir, transfer_file="", do_QA=True, seq_len=48, doc_stride=8,
                        max_query_length=16, ft_epochs=1, distil_epochs=1, logit_loss="kl", temperature=2.0,
                        export_hf=True)
    metrics = run_distillation(cfg)
    assert "f1" in metrics["teacher"]["dev"] and metrics["teacher"]["dev"]["NoAns_total"] == 2
    stages = metrics["stages"]
    assert [stages[k]["loss"] for k in sorted(stages, key=int)][:2] == ["representation", "logits"]
    assert all("f1" in s["dev"] for k, s in stages.items() if s["loss"] != "representation")
    assert all(np.isfinite(s["train_loss_after"]) for s in stages.values())
    cfg_json = json.loads((model_dir / "hf" / "config.json").read_text())
    assert cfg_json["architectures"] == ["BertForQuestionAnswering"]
    # The export gives the student's own start/end logits.
    from xtremedistil_tf.distill.outputs import STUDENT_CONFIG, STUDENT_WEIGHTS
    from xtremedistil_tf.distill.student import Student  # noqa: F401 - registers the class
    from xtremedistil_tf.models.saving import load_model
    student = load_model(str(model_dir), STUDENT_WEIGHTS, STUDENT_CONFIG)
    rng = np.random.default_rng(1)
    ids = rng.integers(1000, 5000, size=(2, 20))
    mask, types = np.ones_like(ids), np.concatenate([np.zeros((2, 8), int), np.ones((2, 12), int)], axis=1)
    ours = student({"input_ids": ids, "attention_mask": mask, "token_type_ids": types})["logits"].numpy()
    _, theirs = _hf_logits(model_dir / "hf", ids, mask, types)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
