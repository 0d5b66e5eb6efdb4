"""Experiment tracking: run folders read back into records, tables, diffs, and sweeps over a config grid."""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path

import pytest

from medtune.config import dump_yaml, load_config
from medtune.errors import MedtuneError
from medtune.track.runs import best_run, diff_runs, find_runs, format_diff, load_run, runs_table
from medtune.track.sweep import combinations, parse_grid, run_name, sweep

REAL_RUN = Path(__file__).resolve().parents[1] / "runs" / "default-20261122-022100"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def metric(value, lo=None, hi=None):
    return {"value": value, "ci95": [lo if lo is not None else value * 0.9, hi if hi is not None else value * 1.1]}


def new_evaluation(ppl, bleu, rouge, fmt, loss):
    tuned = {"perplexity": metric(ppl), "rougeL": metric(rouge), "bleu": metric(bleu),
             "format_adherence": metric(fmt), "answer_loss": metric(loss)}
    base = {"perplexity": metric(ppl * 2), "rougeL": metric(rouge / 2), "bleu": metric(bleu / 2),
            "format_adherence": metric(fmt / 2), "answer_loss": metric(loss + 0.8)}
    return {"test_rows": 32, "metrics": tuned, "base_metrics": base,
            "delta": {"answer_loss": {"value": -0.8, "ci95": [-0.9, -0.7], "p_value": 0.001}}}


OLD_EVALUATION = {"test loss (base)": 3.0946, "test loss (tuned)": 2.2938, "perplexity (base)": 22.079,
                  "perplexity (tuned)": 9.912, "test rows": 32}


def training(steps=33, final_loss=2.12, eval_loss=2.2987, seconds=147.7, peak=2376.8):
    block = {"steps": steps, "train_rows": 264, "val_rows": 54, "precision": "bf16", "seconds": seconds,
             "tokens_per_s": 361.1, "final_loss": final_loss, "peak_memory_mb": peak, "threads": 2, "processes": 1}
    if eval_loss is not None:
        block["eval_loss"] = eval_loss
    return block


def steps_log(n=6, start=3.0, eval_every=3):
    rows = []
    for step in range(1, n + 1):
        row = {"step": step, "epoch": round(step / n, 3), "loss": round(start - 0.1 * step, 4),
               "lr": 3e-4 * (1 - step / n), "tokens_per_s": 400.0}
        if eval_every and step % eval_every == 0:
            row["eval_loss"] = round(start - 0.08 * step, 4)
        rows.append(row)
    return rows


def write_run(folder: Path, overrides: list[str], *, training_block=None, evaluation=None, metrics=None,
              **extra) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(dump_yaml(load_config(None, overrides)), encoding="utf-8")
    info = {"medtune_version": "0.1.0", "git_commit": "14c1624", "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct",
            "base_model_spec": "default", **extra}
    if training_block is not None:
        info["training"] = training_block
    if evaluation is not None:
        info["evaluation"] = evaluation
    (folder / "run.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    if metrics is not None:
        (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics), encoding="utf-8")
    return folder


@pytest.fixture
def runs_root(tmp_path):
    root = tmp_path / "runs"
    write_run(root / "old-lr3e-4", ["train.lr=3e-4", "train.batch_size=2", "train.grad_accum=4"],
              training_block=training(), evaluation=OLD_EVALUATION, metrics=steps_log(), created="2026-11-20T10:00:00")
    write_run(root / "new-lr1e-4", ["train.lr=1e-4", "train.batch_size=4", "train.grad_accum=2", "lora.r=8"],
              training_block=training(final_loss=1.95, eval_loss=2.05, seconds=300.0, peak=2500.0),
              evaluation=new_evaluation(ppl=8.5, bleu=12.34, rouge=0.312, fmt=0.95, loss=2.1),
              metrics=steps_log(), created="2026-11-21T10:00:00")
    # no eval_loss anywhere but the lowest perplexity: must not win while other runs have a val loss
    write_run(root / "sweep1" / "lr2e-4-r16", ["train.lr=2e-4", "train.max_steps=20"],
              training_block=training(steps=20, eval_loss=None),
              evaluation=new_evaluation(ppl=7.0, bleu=10.0, rouge=0.3, fmt=0.9, loss=2.0),
              created="2026-11-22T10:00:00")
    broken = root / "broken"
    broken.mkdir()
    (broken / "run.json").write_text('{"training": {"steps": 3', encoding="utf-8")
    (root / "notes").mkdir()  # a folder without run.json is not a run
    return root


def by_name(records):
    return {r.name: r for r in records}


def test_find_runs_reads_old_and_new_evaluation_shapes(runs_root):
    records = find_runs(runs_root)
    assert [r.name for r in records] == ["old-lr3e-4", "new-lr1e-4", "sweep1/lr2e-4-r16"]  # oldest first
    old, new, nested = records
    assert (old.lr, old.batch_size, old.grad_accum, old.effective_batch, old.lora_r) == (3e-4, 2, 4, 8, 16)
    assert (old.steps, old.train_loss, old.val_loss, old.perplexity) == (33, 2.12, 2.2987, 9.912)
    assert old.bleu is None and old.rougeL is None and old.format_adherence is None
    assert old.metrics["base.perplexity"] == 22.079 and old.metrics["test_loss"] == 2.2938
    assert old.metrics["test_rows"] == 32 and old.metrics["tokens_per_s"] == 361.1
    assert old.minutes == pytest.approx(147.7 / 60) and old.peak_memory_mb == 2376.8
    assert old.model == "HuggingFaceTB/SmolLM2-135M-Instruct" and old.created == "2026-11-20T10:00:00"
    assert (new.effective_batch, new.lora_r, new.val_loss, new.train_loss) == (8, 8, 2.05, 1.95)
    assert (new.perplexity, new.bleu, new.rougeL, new.format_adherence) == (8.5, 12.34, 0.312, 0.95)
    assert new.metrics["answer_loss"] == 2.1 and new.metrics["base.perplexity"] == 17.0
    assert new.metrics["delta.answer_loss"] == -0.8 and new.metrics["delta.answer_loss.p_value"] == 0.001
    assert new.metrics["perplexity.ci95"] == pytest.approx([8.5 * 0.9, 8.5 * 1.1])
    assert new.settings["train.lr"] == 1e-4 and new.settings["data.sources"] == ["builtin"]
    assert new.settings["seed"] == 42 and new.settings["model.name"] == "default"
    assert nested.max_steps == 20 and nested.val_loss is None and nested.perplexity == 7.0


def test_corrupt_run_json_is_skipped_with_a_warning_naming_the_file(runs_root, caplog):
    with caplog.at_level(logging.WARNING, logger="medtune.track"):
        records = find_runs(runs_root)
    assert "broken" not in by_name(records)
    assert str(runs_root / "broken" / "run.json") in caplog.text


def test_missing_values_are_none_and_losses_come_from_metrics_jsonl(tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "run.json").write_text("{}", encoding="utf-8")
    record = load_run(bare)
    assert record.status == "incomplete" and record.settings == {} and record.lr is None
    assert all(getattr(record, f) is None for f in ("steps", "train_loss", "val_loss", "perplexity", "minutes"))
    # an interrupted run: run.json written before training, losses only in metrics.jsonl
    (bare / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in steps_log()) + "not json\n")
    record = load_run(bare)
    assert (record.train_loss, record.val_loss, record.metrics["epochs_trained"]) == (2.4, 2.52, 1.0)


def test_eval_report_fills_metrics_missing_from_run_json(tmp_path):
    run = write_run(tmp_path / "r", ["train.lr=1e-4"], training_block=training(), evaluation=OLD_EVALUATION)
    (run / "eval").mkdir()
    report = {"model": str(run), "base": None, "datasets": {"medqa_open": {"kind": "qa", "n": 20, "metrics": {
        "perplexity": metric(5.0), "rougeL": metric(0.25), "bleu": metric(9.5)}}}}
    (run / "eval" / "report.json").write_text(json.dumps(report), encoding="utf-8")
    record = load_run(run)
    assert record.perplexity == 9.912  # run.json wins
    assert (record.bleu, record.rougeL) == (9.5, 0.25)
    assert record.metrics["report.medqa_open.perplexity"] == 5.0


def test_best_marker_is_on_the_lowest_val_loss(runs_root):
    records = find_runs(runs_root)
    assert best_run(records).name == "new-lr1e-4"
    lines = runs_table(records).splitlines()
    assert lines[0].startswith("| run") and "effective batch" in lines[0] and "ROUGE-L" in lines[0]
    best_lines = [line for line in lines[2:] if line.rstrip(" |").endswith("best")]
    assert len(best_lines) == 1 and "new-lr1e-4" in best_lines[0]
    assert len({len(line) for line in lines}) == 1  # aligned columns


def test_best_falls_back_to_perplexity_when_no_run_has_a_val_loss(runs_root):
    records = [r for r in find_runs(runs_root) if r.val_loss is None]
    records += [load_run(write_run(runs_root / "x", [], training_block=training(eval_loss=None),
                                   evaluation=OLD_EVALUATION))]
    assert best_run(records).name == "sweep1/lr2e-4-r16"  # perplexity 7.0 < 9.912


def test_csv_parses_back_with_the_right_numbers(runs_root):
    rows = list(csv.DictReader(io.StringIO(runs_table(find_runs(runs_root), fmt="csv"))))
    assert [r["run"] for r in rows] == ["old-lr3e-4", "new-lr1e-4", "sweep1/lr2e-4-r16"]
    new = rows[1]
    assert float(new["lr"]) == 1e-4 and int(new["batch"]) == 4 and int(new["effective batch"]) == 8
    assert float(new["val loss"]) == 2.05 and float(new["perplexity"]) == 8.5
    assert float(new["BLEU"]) == 12.34 and float(new["ROUGE-L"]) == 0.312
    assert float(new["peak memory (MB)"]) == 2500.0 and float(new["minutes"]) == 5.0
    assert [r["best"] for r in rows] == ["", "best", ""]
    assert rows[0]["BLEU"] == "" and rows[2]["val loss"] == ""
    assert float(rows[0]["epochs"]) == 1.0


def test_diff_lists_exactly_the_differing_keys(tmp_path):
    a = load_run(write_run(tmp_path / "a", ["train.lr=1e-4", "lora.r=8"], training_block=training(),
                           evaluation=OLD_EVALUATION))
    b = load_run(write_run(tmp_path / "b", ["train.lr=2e-4", "lora.r=8", "train.epochs=2"],
                           training_block=training(final_loss=1.9), evaluation=OLD_EVALUATION))
    diff = diff_runs(a, b)
    assert diff == [("train.epochs", 1.0, 2.0), ("train.lr", 1e-4, 2e-4), ("train_loss", 2.12, 1.9)]
    text = format_diff(diff, "a", "b")
    lines = text.splitlines()
    assert lines[0].split() == ["key", "a", "b"] and lines[2].split() == ["train.lr", "0.0001", "0.0002"]
    assert len({line.index(line.split()[1]) for line in lines}) == 1  # second column aligned
    assert format_diff(diff_runs(a, a)) == "no differences\n"


@pytest.mark.parametrize("specs, message", [
    (["train.lr"], "expected KEY=V1,V2"),
    (["=1,2"], "expected KEY=V1,V2"),
    (["train.lr="], "empty value"),
    (["train.lr=1e-4,,2e-4"], "empty value"),
    (["train.lr=1e-4", "train.lr=2e-4"], "given twice"),
    (["lora.r=8,8"], "repeats a value"),
    (["output=a,b"], "cannot be swept"),
])
def test_parse_grid_errors(specs, message):
    with pytest.raises(MedtuneError, match=message):
        parse_grid(specs)


def test_parse_grid_and_combinations_order():
    grid = parse_grid(["train.lr=1e-4, 2e-4,3e-4", "lora.r=8,16"])
    assert grid == {"train.lr": ["1e-4", "2e-4", "3e-4"], "lora.r": ["8", "16"]}
    combos = combinations(grid)
    assert len(combos) == 6
    assert combos[:3] == [{"train.lr": "1e-4", "lora.r": "8"}, {"train.lr": "1e-4", "lora.r": "16"},
                          {"train.lr": "2e-4", "lora.r": "8"}]
    assert combinations(grid) == combos


def test_run_name_is_short_safe_and_unique():
    assert run_name({"train.lr": "1e-4", "lora.r": "8"}) == "lr1e-4-r8"
    assert run_name({"train.batch_size": "4", "eval.batch_size": "4"}) == "train.batch_size4-eval.batch_size4"
    a, b = run_name({"data.sources": "a/b.jsonl"}), run_name({"data.sources": "a:b.jsonl"})
    assert a != b and "/" not in a and ":" not in b and a.startswith("sourcesa_b.jsonl")
    grid = parse_grid(["train.lr=1e-4,2e-4,3e-4", "lora.r=8,16", "train.epochs=1,2"])
    names = [run_name(c) for c in combinations(grid)]
    assert len(set(names)) == len(names)


class FakeTrainer:
    """Stands in for medtune.pipeline.run: writes what a real run writes, fails for one combination."""

    def __init__(self, fail_when=None):
        self.calls: list[str] = []
        self.fail_when = fail_when or (lambda cfg: False)

    def __call__(self, cfg):
        self.calls.append(Path(cfg.output).name)
        out = Path(cfg.output)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(dump_yaml(cfg), encoding="utf-8")
        (out / "run.json").write_text(json.dumps({"medtune_version": "0.1.0"}), encoding="utf-8")
        if self.fail_when(cfg):
            raise RuntimeError("CUDA out of memory (simulated)")
        val = round(2.0 + cfg.train.lr * 1000 + cfg.lora.r / 100, 4)
        (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in steps_log()), encoding="utf-8")
        info = {"medtune_version": "0.1.0", "training": training(eval_loss=val),
                "evaluation": new_evaluation(ppl=val * 4, bleu=10.0, rouge=0.3, fmt=0.9, loss=val)}
        (out / "run.json").write_text(json.dumps(info), encoding="utf-8")
        return None, {}


def test_sweep_writes_tables_and_chart_reports_failures_and_continues(tmp_path, caplog):
    grid = parse_grid(["train.lr=1e-4,3e-4", "lora.r=4,8"])
    trainer = FakeTrainer(fail_when=lambda cfg: cfg.train.lr == 3e-4 and cfg.lora.r == 4)
    out = tmp_path / "sweep"
    with caplog.at_level(logging.INFO, logger="medtune.track"):
        records = sweep(["train.batch_size=2", "train.max_steps=6"], None, grid, out, trainer)
    assert trainer.calls == ["lr1e-4-r4", "lr1e-4-r8", "lr3e-4-r4", "lr3e-4-r8"]
    assert "sweep 2/4: lr1e-4-r8" in caplog.text and "lr3e-4-r4 failed" in caplog.text
    statuses = {r.name: r.status for r in records}
    assert statuses == {"lr1e-4-r4": "ok", "lr1e-4-r8": "ok", "lr3e-4-r4": "failed", "lr3e-4-r8": "ok"}
    failed = by_name(records)["lr3e-4-r4"]
    assert "out of memory" in failed.error and failed.lr == 3e-4 and failed.lora_r == 4
    ok = by_name(records)["lr1e-4-r8"]
    assert ok.val_loss == 2.18 and ok.batch_size == 2 and ok.max_steps == 6 and ok.path == out / "lr1e-4-r8"

    rows = list(csv.DictReader(io.StringIO((out / "experiments.csv").read_text())))
    assert {r["run"]: r["status"] for r in rows} == statuses
    assert [r["run"] for r in rows if r["best"] == "best"] == ["lr1e-4-r4"]  # 2.0 + 0.1 + 0.04
    markdown = (out / "experiments.md").read_text()
    assert "lr3e-4-r4" in markdown and "failed" in markdown and "out of memory" in markdown
    assert (out / "experiments.png").read_bytes()[:8] == PNG_MAGIC
    assert {r.name for r in find_runs(out)} == set(statuses)  # the sweep's folders are ordinary runs


def test_rerun_skips_finished_combinations(tmp_path):
    grid = parse_grid(["train.lr=1e-4,3e-4", "lora.r=4,8"])
    out = tmp_path / "sweep"
    sweep([], None, grid, out, FakeTrainer(fail_when=lambda cfg: cfg.lora.r == 4 and cfg.train.lr == 3e-4))
    again = FakeTrainer()
    records = sweep([], None, grid, out, again)
    assert again.calls == ["lr3e-4-r4"]  # only the failed one runs again
    assert all(r.status == "ok" for r in records) and len(records) == 4
    third = FakeTrainer()
    sweep([], None, grid, out, third)
    assert third.calls == []


def test_interrupted_combination_is_resumed(tmp_path):
    out = tmp_path / "sweep"
    run_dir = out / "r8"
    (run_dir / "checkpoints" / "step-4").mkdir(parents=True)
    (run_dir / "data").mkdir()
    (run_dir / "data" / "manifest.json").write_text("{}")
    (run_dir / "run.json").write_text(json.dumps({"medtune_version": "0.1.0"}))  # written before training
    seen = []

    def run_one(cfg):
        seen.append((Path(cfg.output).name, cfg.train.resume))
        return FakeTrainer()(cfg)

    sweep([], None, parse_grid(["lora.r=8,16"]), out, run_one)
    assert seen == [("r8", True), ("r16", False)]


def test_a_bad_grid_key_fails_before_any_run(tmp_path):
    trainer = FakeTrainer()
    with pytest.raises(MedtuneError, match="train.lrr"):
        sweep([], None, parse_grid(["lora.r=8,16", "train.lrr=1e-4"]), tmp_path / "s", trainer)
    assert trainer.calls == []


@pytest.mark.skipif(not (REAL_RUN / "run.json").exists(), reason="no real run folder in runs/")
def test_reads_a_real_run_folder():
    record = load_run(REAL_RUN)
    assert record.status == "ok" and record.steps == 33 and record.effective_batch == 8
    assert record.val_loss == pytest.approx(2.2987, abs=1e-4) and record.perplexity == 9.912
