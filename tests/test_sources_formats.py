import json

import pytest

from conftest import shared_file
from medtune.data import formats, sources
from medtune.data.formats import RowError, detect_format
from medtune.errors import MedtuneError


def test_jsonl_reports_bad_lines_with_numbers(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_bytes(b'{"question": "q", "answer": "a"}\n{"question": \n[1, 2]\n\xff\xfe bad\n\n{"question": "z"}\n')
    rows = list(sources.iter_file_rows(p))
    assert [w.rsplit(":", 1)[1] for w, _, _ in rows] == ["1", "2", "3", "4", "6"]
    assert rows[0][1] == {"question": "q", "answer": "a"}
    assert "broken JSON" in rows[1][2] and "JSON object" in rows[2][2] and "UTF-8" in rows[3][2]


def test_empty_and_unknown_files(tmp_path):
    (tmp_path / "e.jsonl").write_text("")
    with pytest.raises(MedtuneError, match="empty"):
        list(sources.iter_file_rows(tmp_path / "e.jsonl"))
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(MedtuneError, match="unknown file type"):
        list(sources.iter_file_rows(tmp_path / "x.txt"))


def test_csv_and_json_rows(tmp_path):
    (tmp_path / "r.csv").write_text('question,answer\n"What is it?","An answer, with a comma."\n')
    (rows,) = list(sources.iter_file_rows(tmp_path / "r.csv"))
    assert rows[0].endswith(":2") and rows[1]["answer"] == "An answer, with a comma."
    (tmp_path / "r.json").write_text(json.dumps({"data": [{"question": "a"}, 3]}))
    got = list(sources.iter_file_rows(tmp_path / "r.json"))
    assert got[0][1] == {"question": "a"} and got[1][2].startswith("expected a JSON object")


def test_a_broken_csv_quote_is_a_named_bad_row_and_the_rows_after_it_are_kept(tmp_path):
    p = tmp_path / "b.csv"
    p.write_text('question,answer\n"What is asthma?","A condition of the airways."\n"unterminated,"x\n'
                 '"What is gout?","A form of arthritis."\n"open quote,never closed\n"Last?","Yes."\n"End?","Ok."\n')
    got = list(sources.iter_file_rows(p))
    assert [(w.rsplit(":", 1)[1], r["question"] if r else None) for w, r, _ in got] == [
        ("2", "What is asthma?"), ("3", None), ("4", "What is gout?"), ("5", None), ("7", "End?")]
    assert got[1][2].startswith("broken CSV quoting") and "lines 5-6 were read as this row" in got[3][2]


def test_hub_id_offline_fails_fast_with_advice():
    with pytest.raises(MedtuneError, match="not a file"):
        list(sources.iter_rows("no_such_file.jsonl"))


@pytest.mark.parametrize("fields,fmt", [
    ({"question", "answer"}, "qa"), ({"input", "output"}, "qa"), ({"instruction", "input", "output"}, "alpaca"),
    ({"conversations"}, "sharegpt"), ({"messages"}, "messages"), ({"question", "options", "answer"}, "mcq"),
    ({"question", "opa", "opb", "cop"}, "mcq"), ({"question", "context", "answer"}, "yesno"),
    ({"prompt", "safe_response", "category"}, "safety"), ({"utterances"}, "dialog"), ({"foo", "bar"}, None),
])
def test_detect_format(fields, fmt):
    assert detect_format(fields) == fmt


def test_each_format_converts():
    conv = formats.alpaca({"instruction": "Explain", "input": "gout", "output": "Uric acid crystals."}, {})
    assert conv[0]["content"] == "Explain\n\ngout" and conv[1]["role"] == "assistant"
    conv = formats.sharegpt({"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}, {})
    assert [m["role"] for m in conv] == ["user", "assistant"]
    conv = formats.mcq({"question": "Q?", "options": ["x", "y", "z"], "answer": 2}, {})
    assert conv[1]["content"] == "The answer is C. z" and "B. y" in conv[0]["content"]
    conv = formats.yesno({"question": "Q?", "context": "C.", "answer": "Maybe", "long_answer": "L."}, {})
    assert conv[1]["content"] == "Maybe. L." and conv[0]["content"].startswith("Context: C.")
    conv = formats.qa({"input": "q?", "output": "a."}, {"question": "input", "answer": "output"})
    assert conv == [{"role": "user", "content": "q?"}, {"role": "assistant", "content": "a."}]
    conv = formats.dialog({"utterances": ["patient: it hurts", "doctor: where?"]}, {})
    assert conv[1] == {"role": "assistant", "content": "where?"}


@pytest.mark.parametrize("fn,row,match", [
    (formats.qa, {"question": "q"}, "missing field 'answer'"),
    (formats.qa, {"question": "q", "answer": "  "}, "empty field 'answer'"),
    (formats.mcq, {"question": "q", "options": {"A": "x", "B": "y"}}, "answer key"),
    (formats.mcq, {"question": "q", "options": {"A": "x", "B": "y"}, "answer": "E"}, "not one of the options"),
    (formats.yesno, {"question": "q", "context": "c", "answer": "perhaps"}, "yes, no or maybe"),
    (formats.messages, {"messages": [{"role": "user", "content": "x"}]}, "no assistant turn"),
])
def test_row_errors_say_why(fn, row, match):
    with pytest.raises(RowError, match=match):
        fn(row, {})


@pytest.mark.parametrize("name", [
    "medquad.part1.jsonl", "medquad.part2.jsonl", "medalpaca_wikidoc_patient_info.jsonl",
    "chatdoctor_genmedgpt5k.jsonl", "mediqa2019_qa.jsonl", "pubmedqa_trainval.jsonl",
    "mmlu_medical_devval.jsonl", "medsafetybench_train.jsonl",
])
def test_real_files_load_through_adapters(name):
    path = shared_file(name)
    good = bad = 0
    fmt = None
    for _, row, _err in sources.iter_file_rows(path):
        if row is None:
            bad += 1
            continue
        fmt = fmt or detect_format(set(row))
        try:
            conv = formats.FORMATS[fmt](row, {})
            assert conv[-1]["role"] == "assistant"
            good += 1
        except RowError:
            bad += 1
    assert fmt is not None and good > 0.9 * (good + bad)
