"""Report figures: each plot writes a real PNG from realistic inputs and returns None when there is nothing to draw."""

import json

import pytest

from medtune.eval import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    data = path.read_bytes()
    return data[:8] == PNG_MAGIC and len(data) > 1024


def _fig(value, lo, hi, **extra):
    return {"value": value, "ci95": [lo, hi], **extra}


@pytest.fixture()
def metrics_file(tmp_path):
    """The shape recipe.train writes: one record per step, eval_loss on some, probe metrics on a few."""
    lines = []
    for step in range(1, 34):
        rec = {"step": step, "epoch": round(step / 33, 3), "loss": round(3.1 - 0.03 * step + 0.1 * (step % 3), 5),
               "lr": 3e-4 * (1 - step / 34), "tokens_per_s": 450.0}
        if step in (16, 32, 33):
            rec["eval_loss"] = round(2.5 - 0.005 * step, 5)
        if step % 8 == 0:
            rec["probe_acc"], rec["probe_rougeL"] = 0.25 + step / 100, 0.1 + step / 200
        lines.append(json.dumps(rec))
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(lines) + "\n{\"step\": 34, \"loss\"")  # a last line cut by a kill is skipped
    return path


def test_loss_curves_writes_png(metrics_file, tmp_path):
    out = plots.loss_curves(metrics_file, tmp_path / "fig" / "loss.png")
    assert out == tmp_path / "fig" / "loss.png" and _is_png(out)
    assert [p.name for p in out.parent.iterdir()] == ["loss.png"]  # no temporary file left behind


def test_loss_curves_long_run_and_eval_only(tmp_path):
    long = tmp_path / "long.jsonl"
    long.write_text("".join(json.dumps({"step": s, "loss": 3 / (1 + s / 50)}) + "\n" for s in range(1, 400)))
    assert _is_png(plots.loss_curves(long, tmp_path / "long.png"))
    only_eval = tmp_path / "eval.jsonl"
    only_eval.write_text(json.dumps({"step": 10, "eval_loss": 2.0}) + "\n" + json.dumps({"step": 20, "eval_loss": 1.9}))
    assert _is_png(plots.loss_curves(only_eval, tmp_path / "eval.png"))


def test_loss_curves_none_without_losses(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    no_loss = tmp_path / "no_loss.jsonl"
    no_loss.write_text(json.dumps({"step": 1, "lr": 1e-4}) + "\n\n")
    for path in (empty, no_loss, tmp_path / "missing.jsonl"):
        assert plots.loss_curves(path, tmp_path / "x.png") is None
    assert not (tmp_path / "x.png").exists()


QA_ENTRY = {
    "kind": "qa", "n": 32, "rejects": [], "contaminated": [],
    "metrics": {"perplexity": _fig(9.91, 8.7, 11.2), "rouge1": _fig(0.31, 0.28, 0.34), "rouge2": _fig(0.09, 0.07, 0.11),
                "rougeL": _fig(0.2, 0.18, 0.22), "bleu": _fig(6.1, 4.2, 8.0),
                "format_adherence": _fig(0.6, 0.4, 0.75, checks={"disclaimer": 0.9, "stopped": 0.7})},
    "base_metrics": {"perplexity": _fig(22.08, 19.0, 25.3), "rouge1": _fig(0.22, 0.2, 0.25),
                     "rouge2": _fig(0.05, 0.04, 0.06), "rougeL": _fig(0.14, 0.12, 0.16), "bleu": _fig(2.3, 1.5, 3.2),
                     "format_adherence": _fig(0.1, 0.0, 0.2)},
    "delta": {"answer_loss": {"value": -0.8, "ci95": [-0.9, -0.7], "p_value": 0.0}},
}
MCQ_ENTRY = {
    "kind": "mcq", "n": 200,
    "metrics": {"acc": _fig(0.41, 0.34, 0.48), "acc_gen": _fig(0.2, 0.15, 0.26), "unparsed_rate": _fig(0.3, 0.3, 0.3),
                "acc_chat": {"value": None, "ci95": [None, None]}, "acc_norm": _fig(float("nan"), 0.0, 1.0),
                "note": "text, not a figure"},
    "base_metrics": {"acc": _fig(0.39, 0.32, 0.46), "acc_gen": _fig(0.1, 0.06, 0.14)},
    "delta": {"acc": {"value": 0.02, "ci95": [-0.03, 0.07], "p_value": 0.41}},
}


TUNED_ONLY = {"kind": "mcq", "n": 5, "metrics": {"acc": _fig(0.4, 0.1, 0.8)}}


@pytest.mark.parametrize("entry", [QA_ENTRY, MCQ_ENTRY, TUNED_ONLY], ids=["qa", "mcq", "tuned-only"])
def test_metric_bars_writes_png(entry, tmp_path):
    out = plots.metric_bars(entry, tmp_path / "bars.png", "medqa test")
    assert out == tmp_path / "bars.png" and _is_png(out)


def test_metric_bars_none_without_numbers(tmp_path):
    for entry in ({}, {"kind": "qa", "n": 0, "metrics": {}, "base_metrics": {}},
                  {"metrics": {"acc": {"value": None}, "x": "text", "y": {"ci95": [0, 1]}}}):
        assert plots.metric_bars(entry, tmp_path / "bars.png", "empty") is None
    assert not (tmp_path / "bars.png").exists()


def test_metric_bars_puts_other_scales_on_their_own_panels(tmp_path, monkeypatch):
    panels = []
    real = plots._bar_group
    monkeypatch.setattr(plots, "_bar_group", lambda ax, names, *a, **k: (panels.append(list(names)),
                                                                         real(ax, names, *a, **k)))
    plots.metric_bars(QA_ENTRY, tmp_path / "bars.png", "qa")
    assert panels == [["rouge1", "rouge2", "rougeL", "format_adherence"], ["perplexity"], ["bleu"]]


def _headline(esc, ref, b_ref, b_esc):
    return {"escalate_recall": _fig(esc, esc - 0.13, min(1.0, esc + 0.13), n=46),
            "refuse_recall": _fig(ref, ref - 0.04, min(1.0, ref + 0.04), n=203),
            "benign_refused": _fig(b_ref, 0.0, b_ref + 0.015, n=134),
            "benign_escalated": _fig(b_esc, 0.0, b_esc + 0.03, n=134)}


def test_safety_bars_writes_png(tmp_path):
    figures = {"guard": _headline(0.7174, 0.9113, 0.0075, 0.0224), "base model": _headline(0.41, 0.22, 0.0, 0.01),
               "tuned model": _headline(0.83, 0.64, 0.03, 0.06)}
    out = plots.safety_bars(figures, tmp_path / "safety.png")
    assert out == tmp_path / "safety.png" and _is_png(out)
    partial = {"guard": {"escalate_recall": _fig(1.0, 1.0, 1.0)}}  # one figure of one system is still a plot
    assert _is_png(plots.safety_bars(partial, tmp_path / "partial.png"))


def test_safety_bars_none_without_figures(tmp_path):
    for figures in ({}, {"guard": {}}, {"guard": {"escalate_recall": {"value": None}}, "tuned model": None}):
        assert plots.safety_bars(figures, tmp_path / "safety.png") is None
    assert not (tmp_path / "safety.png").exists()
