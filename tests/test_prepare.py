import json
from collections import defaultdict

import pytest

from conftest import ASSETS, shared_file, write_jsonl
from medtune.config import DataConfig
from medtune.data.clean import question_key
from medtune.data.prepare import load_split, prepare
from medtune.errors import MedtuneError


def _keys(folder, split):
    return {question_key(next(m["content"] for m in r["messages"] if m["role"] == "user"))
            for r in load_split(folder, split)}


def _rows(n, prefix="Question"):
    return [{"id": f"r{i}", "question": f"{prefix} number {i} about blood pressure {i * 7}?",
             "answer": f"{prefix} answer {i}: keep a log of readings, numbers {i} {i * 3} {i * 11} and see a doctor."}
            for i in range(n)]


def test_split_never_leaks_a_question(tmp_path):
    rows = _rows(200)
    # the same question with a different answer, and the same question in other casing/punctuation
    rows += [{"question": r["question"], "answer": r["answer"] + " Also rest, drink water, sleep well."}
             for r in rows[:40]]
    rows += [{"question": r["question"].upper().replace("?", "!!"), "answer": "Completely different text: "
              + "x" * 30 + r["id"]} for r in rows[40:60]]
    src = write_jsonl(tmp_path / "rows.jsonl", rows)
    cfg = DataConfig(val_fraction=0.2, test_fraction=0.2, near_dup_threshold=0.95)
    m = prepare([str(src)], tmp_path / "out", cfg, seed=3)
    tr, va, te = (_keys(tmp_path / "out", s) for s in ("train", "val", "test"))
    assert not (tr & va) and not (tr & te) and not (va & te)
    assert m["counts"]["val"] > 10 and m["counts"]["test"] > 10
    m2 = prepare([str(src)], tmp_path / "out2", cfg, seed=3)
    assert m2["counts"] == m["counts"]
    assert (tmp_path / "out" / "test.jsonl").read_text() == (tmp_path / "out2" / "test.jsonl").read_text()


def test_exact_and_near_duplicates_are_removed(tmp_path):
    base = _rows(30)
    base[1]["answer"] = " ".join(f"w{k}" for k in range(80))
    dup = dict(base[0])
    near = dict(base[1], answer=base[1]["answer"].replace("w40", "x40"))
    src = write_jsonl(tmp_path / "rows.jsonl", base + [dup, near])
    m = prepare([str(src)], tmp_path / "out", DataConfig(val_fraction=0, test_fraction=0), seed=0)
    reasons = m["sources"][0]["rejects"]
    assert reasons == {"exact duplicate": 1, "near-duplicate": 1}
    assert m["counts"]["train"] == 30
    listed = {r["where"].rsplit(":", 1)[1]: r["reason"] for r in m["rejects"]}
    assert listed["31"].startswith("exact duplicate of") and listed["32"] == "near-duplicate"


def test_rejects_name_file_line_and_never_store_text(tmp_path):
    p = tmp_path / "bad.jsonl"
    secret = "Sarah's private story that must not be copied"
    p.write_text(json.dumps({"question": "What is anemia?", "answer": "A lack of healthy red blood cells."}) + "\n"
                 + '{"question": "broken", \n' + json.dumps({"question": secret}) + "\n")
    m = prepare([str(p)], tmp_path / "out", DataConfig(val_fraction=0, test_fraction=0), seed=0)
    assert [r["where"] for r in m["rejects"]] == [f"{p}:2", f"{p}:3"]
    assert m["rejects"][1]["reason"] == "missing field 'answer'"
    assert secret not in (tmp_path / "out" / "manifest.json").read_text()
    assert m["counts"]["train"] == 1


def test_weights_mix_train_only(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", _rows(40, "Alpha"))
    b = write_jsonl(tmp_path / "b.jsonl", _rows(40, "Beta"))
    cfg = DataConfig(val_fraction=0.25, test_fraction=0.0)
    m = prepare([f"{a}:2", f"{b}:0.5"], tmp_path / "out", cfg, seed=1)
    by = {s["name"]: s["splits"] for s in m["sources"]}
    ta = sum(1 for r in load_split(tmp_path / "out", "train") if r["source"] == "a")
    assert by["a"]["train"] == ta
    val_a, val_b = by["a"]["val"], by["b"]["val"]
    assert ta == 2 * (40 - val_a)
    assert abs(by["b"]["train"] - 0.5 * (40 - val_b)) <= 1
    val_rows = [(r["source"], r["id"]) for r in load_split(tmp_path / "out", "val")]
    assert len(val_rows) == len(set(val_rows)) == val_a + val_b  # val rows appear once


def test_phi_is_scrubbed_and_counted(tmp_path):
    rows = [{"question": "Hi doctor, I am Sarah Jones, call me at (555) 123-4567. Why do I cough at night?",
             "answer": "Coughing at night can come from asthma, reflux or postnasal drip; see a doctor if it lasts."}]
    src = write_jsonl(tmp_path / "r.jsonl", rows)
    m = prepare([str(src)], tmp_path / "out", DataConfig(val_fraction=0, test_fraction=0), seed=0)
    text = (tmp_path / "out" / "train.jsonl").read_text()
    assert "Sarah" not in text and "555" not in text and "[PHONE]" in text
    assert m["sources"][0]["phi_replaced"]["phone"] == 1


def test_max_rows_and_unknown_shape(tmp_path):
    src = write_jsonl(tmp_path / "r.jsonl", _rows(50))
    m = prepare([str(src)], tmp_path / "out", DataConfig(max_rows=10, val_fraction=0, test_fraction=0), seed=0)
    assert m["counts"]["train"] == 10
    (tmp_path / "u.csv").write_text("foo,bar\n1,2\n")
    with pytest.raises(MedtuneError, match=r"u\.csv:2: cannot tell the format.*question \+ answer"):
        prepare([str(tmp_path / "u.csv")], tmp_path / "o2", DataConfig(), seed=0)
    with pytest.raises(MedtuneError, match="file not found"):
        prepare([str(tmp_path / "missing.jsonl")], tmp_path / "o3", DataConfig(), seed=0)
    for typo in ("mydata/typo.cvs", str(tmp_path / "nodir" / "x.csv"), "notes.txt"):  # never a hub id
        with pytest.raises(MedtuneError, match="file not found"):
            prepare([typo], tmp_path / "o4", DataConfig(), seed=0)
    with pytest.raises(MedtuneError, match="no such file, and not a dataset name"):
        prepare(["medqaud"], tmp_path / "o5", DataConfig(), seed=0)


def test_builtin_prepares_with_licenses(tmp_path):
    m = prepare(["builtin"], tmp_path / "out", DataConfig(), seed=42)
    assert m["sources"][0]["license"].startswith("CC BY") and m["rejects_total"] == 0
    assert sum(m["counts"].values()) >= 300


def test_real_qa_files_mix(tmp_path):
    shared_file("medquad.part1.jsonl")
    m = prepare(["medquad", "wikidoc"], tmp_path / "out", DataConfig(max_rows=300), seed=0)
    names = {s["name"]: s for s in m["sources"]}
    assert set(names) == {"medquad", "wikidoc"} and names["medquad"]["license"] == "CC BY 4.0"
    assert all(len(s["inputs"][0]["sha256"]) == 64 for s in m["sources"])
    counts = defaultdict(int)
    for split in ("train", "val", "test"):
        for r in load_split(tmp_path / "out", split):
            counts[r["source"]] += 1
    assert counts == {"medquad": 300, "wikidoc": 300}


def test_fixture_file_is_valid():
    assert len((ASSETS / "qa_small.jsonl").read_text().splitlines()) >= 10


def _hash_only_test_count(rows, seed, test=0.1):
    """How many questions the seeded hash alone puts into the test split (the split rule before top-up)."""
    from medtune.data.prepare import _unit

    return sum(_unit(seed, question_key(r["question"])) < test for r in rows)


def test_a_small_input_still_gets_a_test_split(tmp_path, capsys):
    rows = _rows(30)
    seed = next(s for s in range(200) if _hash_only_test_count(rows, s) == 0)  # the hash alone: no test row
    src = write_jsonl(tmp_path / "mine.jsonl", rows)
    m = prepare([str(src)], tmp_path / "out", DataConfig(), seed=seed)
    assert m["counts"]["test"] >= 2 and m["counts"]["val"] >= 2 and m["counts"]["train"] >= 20
    assert sum(m["counts"].values()) == 30 and m["notes"] == []
    tr, va, te = (_keys(tmp_path / "out", s) for s in ("train", "val", "test"))
    assert not (tr & va) and not (tr & te) and not (va & te)
    prepare([str(src)], tmp_path / "again", DataConfig(), seed=seed)
    assert (tmp_path / "out" / "test.jsonl").read_text() == (tmp_path / "again" / "test.jsonl").read_text()
    capsys.readouterr()


def test_an_empty_test_split_is_explained(tmp_path, capsys):
    rows = _rows(6)  # too few questions to promise a test split: say so, and why
    seed = next(s for s in range(200) if _hash_only_test_count(rows, s) == 0)
    src = write_jsonl(tmp_path / "tiny.jsonl", rows)
    m = prepare([str(src)], tmp_path / "out", DataConfig(), seed=seed)
    err = capsys.readouterr().err
    assert m["counts"]["test"] == 0 and len(m["notes"]) == 1
    assert "the test split is empty: 6 usable rows" in m["notes"][0]
    assert f"note: {m['notes'][0]}" in err and "val.jsonl" in err
    m = prepare([str(src)], tmp_path / "train", DataConfig(), seed=0, hold_out_test=False)
    assert m["counts"]["test"] == 0 and "no test split: `medtune train` holds out" in capsys.readouterr().err
    assert "no test split" in json.loads((tmp_path / "train" / "manifest.json").read_text())["notes"][0]
    m = prepare([str(src)], tmp_path / "zero", DataConfig(test_fraction=0), seed=0)
    assert m["notes"] == ["no test split: data.test_fraction is 0"]
