"""Fast tests of the pure parts of benchmarks/build_general_corpus.py and benchmarks/bench_task_transfer.py:
corpus building on tiny fixture files, the task folders the benchmark writes (read back with the project's readers),
resume bookkeeping, aggregation and table formatting, distillation-log parsing. Only the baselines' test imports
TensorFlow (it builds a small student from the real MiniLM)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import bench_task_transfer as btt  # noqa: E402
import build_general_corpus as bgc  # noqa: E402


# ---------------------------------------------------------------------------------------------------- fixtures
def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def data_root(tmp_path) -> Path:
    """A miniature ../shared/data: the files both scripts read, a few rows each."""
    root = tmp_path / "data"
    write(root / "glue/SST-2/train.tsv", "sentence\tlabel\nit 's  great \t1\nawful\t0\nit 's great\t1\n\n")
    write(root / "glue/SST-2/dev.tsv", "sentence\tlabel\n" + "".join(f"dev sentence {i}\t{i % 2}\n" for i in range(7)))
    write(root / "glue/CoLA/train.tsv", "gj04\t1\t\tThe cat sat.\ngj04\t0\t*\tCat the sat.\n")
    write(root / "glue/CoLA/dev.tsv", "".join(f"gj04\t{i % 2}\t\tCoLA dev {i}.\n" for i in range(6)))
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    write(root / "glue/STS-B/train.tsv", header
          + "0\tg\tf\ty\t1\tn\tn\tA plane is taking off.\tAn air plane is taking off.\t5.000\n"
          + "1\tg\tf\ty\t2\tn\tn\tThe cat sat.\tA man plays.\t0.500\n"
          + "2\tbroken row\n")
    write(root / "glue/STS-B/dev.tsv", header + "".join(
        f"{i}\tg\tf\ty\t{i}\tn\tn\tdev a {i}\tdev b {i}\t{i % 5}.000\n" for i in range(5)))
    write(root / "glue/QNLI/dev.tsv", "index\tquestion\tsentence\tlabel\n" + "".join(
        f"{i}\tquestion {i}?\tsentence {i}.\t{'entailment' if i % 2 else 'not_entailment'}\n" for i in range(10)))
    conll = ("EU NNP B-ORG\nrejects VBZ O\n\nPeter NNP B-PER\nBlackburn NNP I-PER\nin IN O\nParis NNP B-LOC\n\n"
             "EU NNP B-ORG\nrejects VBZ O\n")
    write(root / "conll2003/train.txt", conll)
    write(root / "conll2003/dev.txt", "".join(f"Word{i} NNP B-LOC\nsaid VBD O\n\n" for i in range(5)))
    squad = {"version": "v2.0", "data": [{"title": "T", "paragraphs": [
        {"context": "Mr. Smith met J. P. Morgan in the U.S. Army. Then he left!  \"Why?\" she asked.",
         "qas": [{"question": "Who met Morgan?", "id": "1"}, {"question": "Who met Morgan?", "id": "2"}]}]}]}
    write(root / "squad/train-v2.0-first10.json", json.dumps(squad))
    return root


# ---------------------------------------------------------------------------------------------------- corpus
def test_normalise_and_split_sentences():
    assert bgc.normalise("  a\t b\n\u00a0c  ") == "a b c"
    assert bgc.split_sentences("Mr. Smith met J. P. Morgan in the U.S. Army. Then he left!  \"Why?\" she asked. "
                               "It cost 5. 3 more.") == [
        "Mr. Smith met J. P. Morgan in the U.S. Army.", "Then he left!", "\"Why?\" she asked.", "It cost 5. 3 more."]


def test_read_sources_reads_training_texts_only(data_root):
    sources = {name: (texts, bad) for name, texts, bad in bgc.read_sources(data_root)}
    assert list(sources) == ["sst2", "cola", "stsb", "conll2003", "squad_context_sentences", "squad_questions"]
    assert sources["sst2"] == (["it 's  great ", "awful", "it 's great"], 0)
    assert sources["cola"] == (["The cat sat.", "Cat the sat."], 0)
    assert sources["stsb"] == (["A plane is taking off.", "An air plane is taking off.", "The cat sat.",
                                "A man plays."], 1)
    assert sources["conll2003"][0] == ["EU rejects", "Peter Blackburn in Paris", "EU rejects"]
    assert len(sources["squad_context_sentences"][0]) == 3
    every = " ".join(t for texts, _ in sources.values() for t in texts)
    assert "dev" not in every and "question 1" not in every  # no dev file, no QNLI


def test_build_dedups_across_sources_keeps_first_and_shuffles_deterministically(data_root):
    sources = bgc.read_sources(data_root)
    lines, counts = bgc.build(sources, seed=0)
    assert len(lines) == len(set(lines))
    assert counts["sst2"] == {"read": 3, "empty": 0, "duplicates": 1, "kept": 2, "malformed_rows": 0}
    assert counts["cola"]["kept"] == 2 and counts["stsb"]["duplicates"] == 1  # "The cat sat." came from CoLA
    assert counts["conll2003"]["duplicates"] == 1 and counts["squad_questions"]["duplicates"] == 1
    assert sum(c["kept"] for c in counts.values()) == len(lines)
    again, _ = bgc.build(sources, seed=0)
    other, _ = bgc.build(sources, seed=1)
    assert again == lines and sorted(other) == sorted(lines)
    assert bgc.build([("a", ["", "  ", "x"], 0)])[1]["a"]["empty"] == 2


def test_main_writes_atomically_and_enforces_min_lines(data_root, tmp_path, capsys):
    out = tmp_path / "corpus" / "general.txt"
    summary = bgc.main(["--data_dir", str(data_root), "--output", str(out), "--min_lines", "5"])
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == summary["lines"] == 13 and all(lines)
    assert [p.name for p in out.parent.iterdir()] == ["general.txt"]  # no temporary left behind
    assert json.loads(capsys.readouterr().out)["lines"] == 13
    with pytest.raises(SystemExit, match="fewer than --min_lines=100"):
        bgc.main(["--data_dir", str(data_root), "--output", str(tmp_path / "none.txt"), "--min_lines", "100"])
    assert not (tmp_path / "none.txt").exists()
    with pytest.raises(SystemExit, match="missing source file"):
        bgc.main(["--data_dir", str(tmp_path / "nowhere"), "--output", str(out)])


# ---------------------------------------------------------------------------------------------------- flags
def test_parse_rows_and_named_paths():
    assert btt.parse_rows("teacher=/a, random-init=/b,") == {"teacher": "/a", "random-init": "/b"}
    for bad in ("teacher", "=x", "a=/x,a=/y", "a b=/x"):
        with pytest.raises(btt.BenchError):
            btt.parse_rows(bad)
    assert btt.parse_named_paths(["a=x.log", "a=dir", "b=y"]) == {"a": ["x.log", "dir"], "b": ["y"]}
    with pytest.raises(btt.BenchError):
        btt.parse_named_paths(["nopath"])
    assert btt.parse_seq_lens("sst2=32")["sst2"] == 32 and btt.parse_seq_lens("")["qnli"] == 128
    with pytest.raises(btt.BenchError):
        btt.parse_seq_lens("mnli=64")
    assert btt.parse_list("1,2", kind=int) == [1, 2]
    with pytest.raises(btt.BenchError):
        btt.parse_list("sst2,rte", btt.TASKS)
    assert btt.parse_shape("6x256x8") == (6, 256, 8) and btt.parse_shape("3X384x12") == (3, 384, 12)
    for bad in ("6x256", "6x256x0", "axbxc", "6x256x12"):  # 12 heads do not divide 256
        with pytest.raises(btt.BenchError):
            btt.parse_shape(bad)


def test_baselines_of_another_width_have_no_teacher_layers_row(minilm_dir, tmp_path):
    """A student narrower than the teacher gets the random-init baseline of its shape (FFN 4 x hidden) and no
    teacher-layers row (the teacher's blocks do not fit); transformers loads it with every weight present."""
    import transformers

    made = btt.make_baselines(tmp_path, str(minilm_dir), shape=(2, 128, 4))
    assert set(made) == {"random-init"} and not (tmp_path / "teacher-layers").exists()
    model, info = transformers.BertModel.from_pretrained(made["random-init"], output_loading_info=True)
    c = model.config
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size) == (2, 128, 4, 512)
    assert not info["missing_keys"] and not info["unexpected_keys"]


# ---------------------------------------------------------------------------------------------------- data folders
def test_prepare_task_data_writes_folders_the_readers_accept(data_root, tmp_path):
    from xtremedistil_tf.data.readers import read_glue
    from xtremedistil_tf.data.tasks import load_task
    out = tmp_path / "work" / "data"
    folder, counts = btt.prepare_task_data("sst2", data_root, out, max_dev=4, qnli_heldout=4)
    assert (folder / "train.tsv").is_symlink() and not (folder / "test.tsv").exists()
    assert counts == {"train": 3, "dev": 4, "dev_source": 7}
    task = load_task(str(folder), glue_task="sst2")
    assert len(task.splits["dev"]) == 4 and set(task.splits) == {"train", "dev"}

    folder, counts = btt.prepare_task_data("cola", data_root, out, max_dev=4, qnli_heldout=4)
    assert len(load_task(str(folder), glue_task="cola").splits["dev"]) == 4  # headerless dev stays headerless

    folder, counts = btt.prepare_task_data("stsb", data_root, out, max_dev=0, qnli_heldout=4)
    dev = read_glue("stsb", str(folder), splits=["dev"])["dev"]  # (the fixture's train has a malformed row)
    assert counts["dev"] == 5 and len(dev) == 5 and dev.kind == "regression"

    folder, counts = btt.prepare_task_data("qnli", data_root, out, max_dev=3, qnli_heldout=4)
    assert counts == {"train": 6, "dev": 3, "dev_source": 4}
    task = load_task(str(folder), glue_task="qnli")
    train_q = {e.text_a for e in task.splits["train"].examples}
    dev_q = {e.text_a for e in task.splits["dev"].examples}
    assert len(train_q) == 6 and len(dev_q) == 3 and not train_q & dev_q

    folder, counts = btt.prepare_task_data("ner", data_root, out, max_dev=2, qnli_heldout=4)
    task = load_task(str(folder), do_NER=True)
    assert counts == {"train": 3, "dev": 2, "dev_source": 5} and len(task.splits["dev"]) == 2
    assert task.splits["dev"].examples[0].text_a[1] == "said"


def test_prepare_task_data_is_deterministic_and_rewritten_on_new_params(data_root, tmp_path):
    a, _ = btt.prepare_task_data("sst2", data_root, tmp_path / "a", max_dev=3, qnli_heldout=4)
    b, _ = btt.prepare_task_data("sst2", data_root, tmp_path / "b", max_dev=3, qnli_heldout=4)
    assert (a / "dev.tsv").read_text() == (b / "dev.tsv").read_text()
    assert (a / "dev.tsv").read_text().startswith("sentence\tlabel\n")
    _, counts = btt.prepare_task_data("sst2", data_root, tmp_path / "a", max_dev=5, qnli_heldout=4)
    assert counts["dev"] == 5 and len((a / "dev.tsv").read_text().splitlines()) == 6
    with pytest.raises(btt.BenchError, match="qnli_heldout"):
        btt.prepare_task_data("qnli", data_root, tmp_path / "c", max_dev=3, qnli_heldout=10)


def test_sample_indices():
    assert btt.sample_indices(5, 0, 0) == [0, 1, 2, 3, 4] and btt.sample_indices(3, 9, 0) == [0, 1, 2]
    s = btt.sample_indices(100, 10, 0)
    assert s == sorted(s) and len(set(s)) == 10 and s == btt.sample_indices(100, 10, 0)


# ---------------------------------------------------------------------------------------------------- resume
def test_plan_pending_and_check_resume():
    plan = btt.plan_cells(["teacher", "student"], ["sst2", "ner"], [1, 2])
    assert len(plan) == 8 and plan[:4] == [("teacher", "sst2", 1), ("student", "sst2", 1), ("teacher", "ner", 1),
                                           ("student", "ner", 1)]
    done = {btt.cell_key("teacher", "sst2", 1): {}, btt.cell_key("student", "ner", 2): {}}
    assert btt.pending_cells(plan, done) == [c for c in plan if c not in (("teacher", "sst2", 1),
                                                                          ("student", "ner", 2))]
    state = {"recipe": {"epochs": 3, "lr": 1e-4}, "rows": {"teacher": "/t"}, "cells": done}
    assert btt.check_resume(state, {"epochs": 3, "lr": 1e-4}, {"teacher": "/t", "new": "/n"}) == []
    problems = btt.check_resume(state, {"epochs": 2, "lr": 1e-4}, {"teacher": "/other"})
    assert len(problems) == 2 and "epochs" in problems[0] and "/other" in problems[1]
    assert btt.check_resume(btt.load_state(Path("/nonexistent/state.json")), {"x": 1}, {"a": "/a"}) == []


def fake_metrics(task: str, value: float) -> dict:
    main = btt.DEFAULT_METRICS[task]
    return {"main_metric": main, "final": {"dev": {main: value, "loss": 0.5, "per_type": {"PER": {}}}},
            "epochs": [{"epoch": 1, "score": value - 0.1}, {"epoch": 2, "score": value}], "best_epoch": 2,
            "data": {"train": 64, "dev": 32}, "train_seconds": 1.0, "wall_seconds": 2.0}


def test_cell_record_keeps_the_main_metric_and_numbers_only():
    rec = btt.cell_record("teacher", "ner", 1, fake_metrics("ner", 0.8), 3.21, 100.04)
    assert rec["main_metric"] == "f1" and rec["main"] == 0.8 and "per_type" not in rec["dev"]
    assert rec["epoch_scores"] == [pytest.approx(0.7), 0.8] and rec["wall_s"] == 3.2 and rec["rss_mb_after"] == 100.0


@pytest.fixture
def fake_cells(tmp_path, monkeypatch):
    """run_glue replaced by a fake whose metric is 0.5 + 0.1 x seed; returns the list of cells it ran."""
    import _common
    calls = []

    def fake_run_cell(config, subprocess_mode, log_path):
        calls.append((config.model, config.task, config.seed))
        assert config.export_hf is False and config.output_dir.startswith(str(tmp_path))
        return fake_metrics(config.task, 0.5 + 0.1 * config.seed)

    def fake_glue_config(folder, task, seed, data_folder, output_dir, recipe):  # GlueConfig would import TF
        assert (Path(data_folder) / "dev.tsv").is_file() and recipe["seq_len"][task] > 0
        return SimpleNamespace(model=folder, task=task, seed=seed, output_dir=str(output_dir), export_hf=False)

    monkeypatch.setattr(btt, "glue_config", fake_glue_config)
    monkeypatch.setattr(btt, "run_cell", fake_run_cell)
    monkeypatch.setattr(btt, "release_cell_memory", lambda: None)
    monkeypatch.setattr(btt, "_quiet", lambda: None)
    monkeypatch.setattr(_common, "versions", lambda *a: {})
    return calls


def test_resume_runs_only_missing_cells(tmp_path, fake_cells, data_root):
    calls = fake_cells
    for name in ("t", "s"):
        write(tmp_path / name / "config.json", "{}")
    argv = ["--work_dir", str(tmp_path / "work"), "--results_dir", str(tmp_path / "results"), "--skip_speed",
            "--rows", f"teacher={tmp_path / 't'},student={tmp_path / 's'}", "--tasks", "sst2,stsb", "--seeds", "1,2",
            "--data_dir", str(data_root)]
    assert btt.main(argv + ["--max_cells", "3"]) == 0
    assert len(calls) == 3
    assert btt.main(argv) == 0
    assert len(calls) == 8 and len(set(calls)) == 8
    assert btt.main(argv) == 0 and len(calls) == 8  # everything done: nothing runs
    record = json.loads((tmp_path / "results" / "task_transfer.json").read_text())
    assert len(record["cells"]) == 8
    assert record["summary"]["teacher"]["tasks"]["sst2"]["mean"] == pytest.approx(65.0)
    md = (tmp_path / "results" / "task_transfer.md").read_text()
    assert "| teacher | - | - | 65.0 ± 5.0 | 65.0 ± 5.0 | 65.0 | 100.0% |" in md
    assert btt.main(argv + ["--epochs", "1"]) == 2  # another recipe in the same work_dir is refused


def test_rows_added_to_a_finished_table_from_its_results_file(tmp_path, fake_cells, data_root, monkeypatch):
    calls = fake_cells
    for name in ("t", "s", "new"):
        write(tmp_path / name / "config.json", "{}")
    common = ["--tasks", "sst2,stsb", "--seeds", "1", "--data_dir", str(data_root)]
    first = tmp_path / "first"
    assert btt.main(["--work_dir", str(tmp_path / "w1"), "--results_dir", str(first), "--skip_speed",
                     "--rows", f"teacher={tmp_path / 't'},student={tmp_path / 's'}", *common]) == 0
    assert len(calls) == 4
    (tmp_path / "s" / "config.json").unlink()  # the earlier row's folder is gone

    def fake_speed(rows, repeats):  # the teacher timed again beside the added row
        assert list(rows) == ["teacher", "added"]
        return {"repeats": repeats, "rows": {
            "teacher": {"params_m": 2.0, "forward_s_median": 0.8, "speedup": 1.0},
            "added": {"params_m": 1.0, "forward_s_median": 0.4, "speedup": 2.0}}}

    monkeypatch.setattr(btt, "measure_speed", fake_speed)
    recorded = json.loads((first / "task_transfer.json").read_text())
    recorded["speed"] = {"repeats": 7, "rows": {"teacher": {"params_m": 2.0, "forward_s_median": 0.7, "speedup": 1.0},
                                                "student": {"params_m": 1.0, "forward_s_median": 0.35,
                                                            "speedup": 2.0}}}
    write(first / "task_transfer.json", json.dumps(recorded))
    second = tmp_path / "second"
    argv = ["--work_dir", str(tmp_path / "w2"), "--results_dir", str(second), "--seed_state_from",
            str(first / "task_transfer.json"), "--rows", f"teacher={tmp_path / 't'},added={tmp_path / 'new'}", *common]
    assert btt.main(argv) == 0
    assert calls[4:] == [(str(tmp_path / "new"), "sst2", 1), (str(tmp_path / "new"), "stsb", 1)]
    record = json.loads((second / "task_transfer.json").read_text())
    assert list(record["summary"]) == ["teacher", "student", "added"]
    assert len(record["cells"]) == 6 and record["summary"]["student"]["tasks"]["sst2"]["mean"] == pytest.approx(60.0)
    speed = record["speed"]["rows"]
    assert speed["teacher"]["forward_s_median"] == 0.7 and speed["student"]["speedup"] == 2.0  # kept as recorded
    assert speed["added"]["speedup"] == 2.0 and speed["added"]["teacher_forward_s_median"] == 0.8
    assert [e["rows"] for e in record["earlier"]] == [["teacher", "student"]]
    md = (second / "task_transfer.md").read_text()
    assert "Rows added later (added)" in md and "The cells of teacher, student come from an earlier run" in md
    assert btt.main(argv) == 0 and len(calls) == 6  # the seeded work_dir resumes like any other
    with pytest.raises(SystemExit):
        btt.parse_args(["--seed_state_from"])
    write(tmp_path / "bad.json", "{}")
    assert btt.main(["--work_dir", str(tmp_path / "w3"), "--seed_state_from", str(tmp_path / "bad.json"),
                     "--rows", f"teacher={tmp_path / 't'}", *common]) == 2


# ---------------------------------------------------------------------------------------------------- tables
def cells_of(values: dict) -> dict:
    """{(row, task, seed): value} -> state cells."""
    return {btt.cell_key(r, t, s): {"row": r, "task": t, "seed": s, "main_metric": btt.DEFAULT_METRICS[t], "main": v}
            for (r, t, s), v in values.items()}


def test_summarize_means_spread_average_and_pct_of_teacher():
    cells = cells_of({("teacher", "sst2", 1): 0.90, ("teacher", "sst2", 2): 0.80, ("teacher", "cola", 1): 0.40,
                      ("teacher", "cola", 2): 0.50, ("small", "sst2", 1): 0.70, ("small", "sst2", 2): 0.80,
                      ("small", "cola", 1): 0.10})
    s = btt.summarize(cells, ["teacher", "small", "absent"], ["sst2", "cola"], [1, 2],
                      extra={"teacher": {"params_m": 22.7, "speedup": 1.0}})
    assert s["teacher"]["tasks"]["sst2"]["mean"] == pytest.approx(85.0)
    assert s["teacher"]["tasks"]["sst2"]["spread"] == pytest.approx(5.0)
    assert s["teacher"]["average"] == pytest.approx(65.0) and s["teacher"]["average_pct_of_teacher"] == 100.0
    assert s["small"]["tasks"]["cola"]["n"] == 1
    assert s["small"]["average"] == pytest.approx((75.0 + 10.0) / 2)
    assert s["small"]["average_pct_of_teacher"] == pytest.approx(42.5 / 65.0 * 100)
    assert s["absent"]["average"] is None and s["absent"]["average_pct_of_teacher"] is None
    assert s["teacher"]["params_m"] == 22.7

    table = btt.format_table(s, ["sst2", "cola"], [1, 2], cells)
    lines = table.splitlines()
    assert lines[0] == "| model | #params (M) | speedup | SST-2 acc | CoLA mcc | average | % of teacher |"
    assert lines[2] == "| teacher | 22.7 | 1.00x | 85.0 ± 5.0 | 45.0 ± 5.0 | 65.0 | 100.0% |"
    assert lines[3] == "| small | - | - | 75.0 ± 5.0 | 10.0 (n=1) | 42.5 | 65.4% |"
    assert lines[4] == "| absent | - | - | - | - | - | - |"


def test_task_header_follows_the_recorded_metric():
    assert btt.task_header("stsb", {}) == "STS-B Pearson"
    cells = cells_of({("a", "stsb", 1): 0.5})
    cells[btt.cell_key("a", "stsb", 1)]["main_metric"] = "spearman"
    assert btt.task_header("stsb", cells) == "STS-B Spearman"
    assert btt.task_header("ner", {}) == "NER F1"


# ---------------------------------------------------------------------------------------------------- distillation
TIME_V = """\tCommand being timed: "python run_distillation.py --task_agnostic {n}"
\tUser time (seconds): 100.00
\tSystem time (seconds): 20.00
\tPercent of CPU this job got: 150%
\tElapsed (wall clock) time (h:mm:ss or m:ss): {wall}
\tMaximum resident set size (kbytes): {rss}
\tExit status: 0
"""


def test_distill_runs_from_logs_and_model_dirs(tmp_path):
    log = write(tmp_path / "ag.log", "I1204 12:00:00.0 stuff\n" + TIME_V.format(n=1, wall="1:02:03", rss=2097152)
                + "more log\n" + TIME_V.format(n=2, wall="2:30.5", rss=1048576))
    blocks = btt.parse_time_blocks(log.read_text())
    assert [b["wall_s"] for b in blocks] == [3723.0, 150.5] and blocks[0]["peak_rss_mb"] == 2048.0
    model_dir = tmp_path / "tt"
    write(model_dir / "metrics.json", json.dumps({"stages": {"10": {"wall_time": 5.0, "loss": "labels"},
                                                             "2": {"wall_time": 60.26, "loss": "logits"}},
                                                  "wall_time_total": 65.26}))
    write(tmp_path / "tt.log", TIME_V.format(n=3, wall="0:59", rss=1024))
    runs = [btt.read_distill_run("task-agnostic", [str(log), str(tmp_path / "missing.log")]),
            btt.read_distill_run("task-transfer", [str(model_dir)]),
            btt.read_distill_run("gone", [str(tmp_path / "nodir")])]
    assert runs[0]["wall_s"] == 3873.5 and runs[0]["peak_rss_mb"] == 2048.0 and runs[0]["missing"]
    assert list(runs[1]["stages"]) == ["2", "10"] and runs[1]["stages"]["2"]["wall_s"] == 60.3
    assert runs[1]["wall_s"] == 59.0 and runs[1]["stage_wall_s_total"] == 65.3
    assert runs[2]["commands"] == [] and runs[2]["wall_s"] is None
    table = btt.format_distill_table(runs).splitlines()
    assert table[2] == "| task-agnostic | 62.0 + 2.5 | 150, 150 | 2.00 | - | - |"
    assert table[3] == "| task-transfer | 1.0 | 150 | 0.00 | 2: 60, 10: 5 | 1.1 |"
    assert table[4] == "| gone | - | - | - | - | - |"
    assert "Not found:" in table[-1] and "missing.log" in table[-1]
    assert btt.format_distill_table([]) == ""


def test_render_markdown_has_both_tables():
    cells = cells_of({("teacher", "sst2", 1): 0.9})
    record = {"recipe": btt.recipe_from_args(btt.parse_args(["--data_dir", "/tmp"])), "tasks": ["sst2"], "seeds": [1],
              "cells": list(cells.values()), "speed": {"repeats": 7}, "failures": {"x/sst2/seed1": "boom"},
              "summary": btt.summarize(cells, ["teacher"], ["sst2"], [1]),
              "distillation_runs": [btt.read_distill_run("ag", ["/nonexistent"])]}
    md = btt.render_markdown(record)
    assert "(1 of 1 cells)" in md and "| teacher | - | - | 90.0 | 90.0 | 100.0% |" in md
    assert "## Distillation runs" in md and "## Failed cells" in md and "boom" in md
    assert "1500 training examples" in md and "lr 0.0001" in md
