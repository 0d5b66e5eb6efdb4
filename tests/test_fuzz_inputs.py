"""Fuzzed input files (hypothesis): JSONL, CSV, JSON and Parquet mixing good rows and bad ones (wrong types,
missing and empty fields, huge fields, a UTF-8 BOM, CRLF, blank lines, latin-1 bytes, NUL bytes, lone
surrogate escapes, broken quotes, a torn file) fed to the readers, `medtune prepare`, `medtune eval --data`
and `medtune guard --file`.

Properties: no exception but MedtuneError from a reader, no internal error (exit 1) from the CLI; every
bad row named by its location (FILE:LINE, FILE:item N, FILE:row N) on stderr or in the manifest/report;
every good row kept (questions are distinct, so de-duplication keeps them all). Examples are bounded so
the file runs in well under a minute.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medtune.data.formats import RowError, qa
from medtune.data.sources import TORN, iter_file_rows
from medtune.errors import MedtuneError

VOCAB = ("artery", "vessel", "kidney", "membrane", "protein", "tissue", "airway", "rash", "fever", "nerve",
         "joint", "muscle", "liver", "enzyme", "hormone", "gland", "retina", "cartilage", "plasma", "lung",
         "spleen", "valve", "cortex", "tendon", "marrow", "pulse", "lymph", "skin", "bladder", "colon")
HUGE = 200_000
# text a good row may carry: accents, other scripts, an emoji, a NUL byte, a tab, a lone surrogate (JSON only)
DECORATIONS = ("", " café naïve", " 你好 мир", " 😀", " a\x00b", "\tend", " \ud800")
FORMATS = ("jsonl", "csv", "json", "parquet")


@dataclass
class Row:
    """One generated row: what is written, and what the reader and prepare must make of it."""

    tag: str  # a word unique to this row, in its question (to find it in prepare's output)
    fields: dict | None  # the object written (None for a raw line)
    raw: bytes | object | None = None  # a raw JSONL/CSV line, or a non-object JSON item
    reader_bad: bool = False  # the reader or the format converter rejects it (named on stderr by prepare)
    prepare_bad: bool = False  # rejected somewhere in prepare (stderr or the manifest)


def _sentence(draw: st.DrawFn, n: int) -> str:
    return " ".join(draw(st.lists(st.sampled_from(VOCAB), min_size=n, max_size=n)))


@st.composite
def rows_for(draw: st.DrawFn, fmt: str) -> Row:
    i = draw(st.integers(0, 10**9))
    tag = f"case{i}"
    deco = draw(st.sampled_from([d for d in DECORATIONS if fmt in ("jsonl", "json") or "\ud800" not in d]))
    question = f"Why does the {tag} {_sentence(draw, 6)} change{deco}?"
    answer = f"The {_sentence(draw, 12)} explains it{deco}."
    bad = ["missing_question", "null_question", "blank_question", "empty_answer", "huge_answer", "short_question"]
    if fmt in ("jsonl", "json"):
        bad += ["list_question", "dict_answer", "number_answer", "not_object"]
    if fmt == "jsonl":
        bad += ["broken_line", "latin1_line", "raw_nul"]
    if fmt == "csv":
        bad += ["extra_cells", "broken_quote", "latin1_line"]
    kind = draw(st.sampled_from(["good"] * len(bad) + ["huge_question"] + bad))
    good = Row(tag, {"question": question, "answer": answer})
    if kind == "good":
        return good
    if kind == "huge_question":  # a long question is kept (the answer has a limit, the question none)
        return Row(tag, {"question": question + " x" * (HUGE // 2), "answer": answer})
    prepare_only = {"huge_answer": {"question": question, "answer": "y" * HUGE},
                    "short_question": {"question": "Q?", "answer": answer},
                    "number_answer": {"question": question, "answer": 12345}}
    if kind in prepare_only:  # the converter takes it; cleaning rejects it (listed in the manifest)
        return Row(tag, prepare_only[kind], prepare_bad=True)
    fields = {"missing_question": {"answer": answer}, "null_question": {"question": None, "answer": answer},
              "blank_question": {"question": "   ", "answer": answer}, "empty_answer": {"question": question,
                                                                                      "answer": ""},
              "list_question": {"question": [question], "answer": answer},
              "dict_answer": {"question": question, "answer": {"text": answer}}}.get(kind)
    raw: bytes | object | None = None
    question, answer = question.replace("\ud800", ""), answer.replace("\ud800", "")  # raw lines are UTF-8
    if kind == "not_object":
        raw = draw(st.sampled_from([5, "text", [question], None]))
    elif kind == "broken_line":
        raw = json.dumps({"question": question, "answer": answer}).encode()[:-7]
    elif kind == "latin1_line":
        raw = (f'{{"question": "{tag} caf' if fmt == "jsonl" else f"{tag} caf").encode() + b"\xe9" + (
            b' menu?", "answer": "' + answer.encode() + b'"}' if fmt == "jsonl" else b" menu?," + answer.encode())
    elif kind == "raw_nul":
        raw = b'{"question": "' + question.encode() + b'\x00", "answer": "' + answer.encode() + b'"}'
    elif kind == "extra_cells":
        raw = f'"{question}","{answer}",surplus'.encode()
    elif kind == "broken_quote":
        raw = f'"{question}","{answer}"trailing text'.encode()
    return Row(tag, fields, raw, reader_bad=True, prepare_bad=True)


@st.composite
def input_files(draw: st.DrawFn, fmt: str | None = None, *, first_good: bool = False) -> tuple[str, list[Row], dict]:
    fmt = fmt or draw(st.sampled_from(FORMATS))
    rows = draw(st.lists(rows_for(fmt), min_size=1, max_size=10, unique_by=lambda r: r.tag))
    if first_good:  # prepare tells the format from the first readable row
        rows[0] = Row(rows[0].tag, {"question": f"What is the {rows[0].tag} artery?",
                                    "answer": "An artery carries blood away from the heart."})
    huge = [r for r in rows if r.fields and any(isinstance(v, str) and len(v) > HUGE // 2
                                                for v in r.fields.values())]
    for r in huge[1:]:  # at most one huge row per file keeps the examples fast
        rows.remove(r)
    style = {"bom": draw(st.booleans()), "crlf": draw(st.booleans()), "blank_lines": draw(st.booleans()),
             "ascii": draw(st.booleans()), "torn": fmt == "json" and len(rows) > 1 and draw(st.booleans())}
    return fmt, rows, style


def write(folder: Path, fmt: str, rows: list[Row], style: dict) -> tuple[Path, dict[str, str], int | None]:
    """The file, {tag: location} for every row, and the index of the torn item (rows from it on are lost)."""
    path = folder / f"in.{fmt}"
    eol = b"\r\n" if style["crlf"] else b"\n"
    bom = b"\xef\xbb\xbf" if style["bom"] else b""
    where: dict[str, str] = {}
    torn = None
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({"question": [r.fields.get("question") for r in rows],
                          "answer": [r.fields.get("answer") for r in rows],
                          "tags": [[r.tag, "x"] for r in rows]})  # a list column the converter ignores
        pq.write_table(table, path)
        return path, {r.tag: f"{path}:row {k}" for k, r in enumerate(rows, 1)}, None
    if fmt == "json":
        items = [r.raw if r.fields is None else r.fields for r in rows]
        parts = [json.dumps(x, ensure_ascii=style["ascii"]).encode("utf-8", "surrogatepass") for x in items]
        if not style["ascii"]:  # a lone surrogate written raw is not UTF-8: keep the file valid but for that
            parts = [json.dumps(x).encode() if b"\xed" in p else p for x, p in zip(items, parts)]
        data = bom + b"[" + (b"," + eol).join(parts) + b"]" + eol
        for k, r in enumerate(rows, 1):
            where[r.tag] = f"{path}:item {k}"
        if style["torn"]:
            torn = len(rows) - 1  # cut inside the last item: it and nothing after it is read
            data = data[: data.rindex(parts[-1]) + len(parts[-1]) // 2]
        path.write_bytes(data)
        return path, where, torn
    lines: list[bytes] = []
    if fmt == "csv":
        lines.append(b"question,answer")
    for r in rows:
        if style["blank_lines"]:
            lines.append(b"")
        where[r.tag] = f"{path}:{len(lines) + 1}"
        if isinstance(r.raw, bytes):
            lines.append(r.raw)
        elif fmt == "jsonl":
            lines.append(json.dumps(r.fields if r.fields is not None else r.raw, ensure_ascii=True).encode())
        else:  # csv; a row without a question has one cell (its answer lands in the question column)
            cells = [r.fields["question"] or ""] if "question" in r.fields else []
            buf = io.StringIO()
            csv.writer(buf, lineterminator="").writerow(cells + [r.fields["answer"]])
            lines.append(buf.getvalue().encode())
    path.write_bytes(bom + eol.join(lines) + eol)
    return path, where, None


def expected(rows: list[Row], where: dict[str, str], torn: int | None, flag: str) -> tuple[set[str], list[str]]:
    """(locations that must be named, locations that must be kept) for the rows the reader reaches."""
    reached = rows if torn is None else rows[:torn]
    bad = {where[r.tag] for r in reached if getattr(r, flag)}
    if torn is not None:
        bad.add(where[rows[torn].tag])
    return bad, [where[r.tag] for r in reached if not getattr(r, flag)]


def read_all(path: Path) -> tuple[set[str], list[str]]:
    """Through the reader and the QA converter: (bad locations, locations of the good rows in order)."""
    bad, good = set(), []
    for loc, row, error in iter_file_rows(path):
        if row is None:
            assert error, loc
            bad.add(loc)
            continue
        try:
            qa(row, {})
        except RowError:
            bad.add(loc)
            continue
        good.append(loc)
    return bad, good


SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=20, deadline=None, suppress_health_check=SLOW_OK)
@given(data=st.data())
def test_readers_name_every_bad_row_and_keep_every_good_one(fmt, data):
    fmt, rows, style = data.draw(input_files(fmt))
    with tempfile.TemporaryDirectory() as tmp:
        path, where, torn = write(Path(tmp), fmt, rows, style)
        bad, good = read_all(path)  # prepare-only rejects (a short question, a huge answer) pass the converter
        want_bad, want_good = expected(rows, where, torn, "reader_bad")
        assert bad == want_bad
        assert good == want_good


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """medtune.cli.main in this process: (exit status, stdout, stderr); an internal error fails the test."""
    from medtune import cli

    def crash(exc: BaseException, argv: list[str]) -> int:
        raise AssertionError(f"internal error on fuzzed input: {exc!r}") from exc

    out, err = io.StringIO(), io.StringIO()
    with mock.patch.object(cli, "report_crash", crash), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=6, deadline=None, suppress_health_check=SLOW_OK)
@given(data=st.data())
def test_prepare_names_every_bad_row_and_keeps_every_good_one(fmt, data):
    fmt, rows, style = data.draw(input_files(fmt, first_good=True))
    with tempfile.TemporaryDirectory() as tmp:
        path, where, torn = write(Path(tmp), fmt, rows, style)
        out = Path(tmp) / "prepared"
        code, stdout, stderr = run_cli(["prepare", "--data", str(path), "--output", str(out)])
        assert "Traceback" not in stderr and "internal error" not in stderr
        want_bad, want_good = expected(rows, where, torn, "prepare_bad")
        assert code == (2 if torn is not None else 0), stderr
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        named = {r["where"] for r in manifest["rejects"]}
        for loc in want_bad:
            assert f"skipped {loc}: " in stderr or loc in named, (loc, stderr)
        kept = [json.loads(line)["where"] for split in ("train", "val", "test")
                for line in (out / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]
        assert sorted(kept) == sorted(want_good)
        if torn is not None:
            assert manifest["stopped_early"] == [where[rows[torn].tag]]
            assert f"{where[rows[torn].tag]}: the file breaks off here" in stderr


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=6, deadline=None, suppress_health_check=SLOW_OK)
@given(data=st.data())
def test_eval_reader_names_every_bad_row(fmt, data):
    from medtune.eval.suite import read_eval_file

    fmt, rows, style = data.draw(input_files(fmt, first_good=True))
    with tempfile.TemporaryDirectory() as tmp:
        path, where, torn = write(Path(tmp), fmt, rows, style)
        kind, items, rejects = read_eval_file(path, None)
        assert kind == "qa"
        named = {r.get("where", r["id"]) for r in rejects}
        unscorable = set()
        for item in items:
            try:
                qa(item, {})
            except RowError:
                unscorable.add(item["id"])  # the scorer rejects it by this id: FILE:LINE when the row has none
        want_bad, want_good = expected(rows, where, torn, "reader_bad")
        assert want_bad <= named | unscorable
        huge = {where[r.tag] for r in rows if r.fields and sum(len(str(v)) for v in r.fields.values()) > HUGE // 2}
        assert {i["id"] for i in items} >= set(want_good) - huge


def test_eval_cli_scores_the_good_rows_and_names_the_bad(tiny_model_dir, tmp_path):
    good = [{"question": "What is anemia?", "answer": "Too few healthy red blood cells."},
            {"question": "What is asthma? \ud800", "answer": "A long-term condition of the airways."}]
    lines = [json.dumps(good[0]).encode(), b"", b'{"question": "broken', json.dumps(good[1]).encode(),
             b'{"question": "caf\xe9?", "answer": "A drink made from roasted beans."}',
             json.dumps({"question": ["a list"], "answer": "An answer that is long enough."}).encode(),
             json.dumps({"question": "What is gout?", "answer": "y" * HUGE}).encode(), b"[1, 2]"]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(lines) + b"\r\n")
    code, stdout, stderr = run_cli(["eval", "--model", str(tiny_model_dir), "--data", str(path),
                                    "--output", str(tmp_path / "ev")])
    assert code == 0, stderr
    entry = json.loads((tmp_path / "ev" / "report.json").read_text())["datasets"]["mixed"]
    assert entry["n"] == 2
    named = {r.get("where", r["id"]) for r in entry["rejects"]}
    assert named == {f"{path}:{n}" for n in (3, 5, 6, 7, 8)}


@st.composite
def prompt_files(draw: st.DrawFn) -> tuple[str, list[tuple[object, bool]], dict]:
    fmt = draw(st.sampled_from(FORMATS))
    texts = draw(st.lists(st.sampled_from(["what is asthma?", "", "my chest hurts and my left arm is numb",
                                            "ok " * 500, "naïve café 你好 \x00"]), min_size=1, max_size=5))
    kinds = draw(st.lists(st.sampled_from(["good", "good", "number", "null", "missing"]), min_size=len(texts),
                          max_size=len(texts)))
    rows = []
    for text, kind in zip(texts, kinds):
        if fmt in ("csv", "parquet") and kind == "number":
            kind = "null"  # one type per column
        value = {"good": text, "number": 42, "null": None, "missing": None}[kind]
        rows.append(({"prompt": value} if kind != "missing" else {"other": text}, kind == "good"))
    return fmt, rows, {"bom": draw(st.booleans()), "crlf": draw(st.booleans())}


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prompt_files())
def test_guard_file_names_every_bad_row_and_answers_every_good_one(case):
    fmt, rows, style = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"prompts.{fmt}"
        eol = "\r\n" if style["crlf"] else "\n"
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.table({"prompt": [r.get("prompt") for r, _ in rows],
                                     "other": [r.get("other") for r, _ in rows]}), path)
            where = [f"{path}:row {k}" for k in range(1, len(rows) + 1)]
        elif fmt == "csv":
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator=eol)
            w.writerow(["prompt", "other"])
            for r, _ in rows:
                w.writerow([r.get("prompt") if r.get("prompt") is not None else "", r.get("other", "")])
            path.write_text(("\ufeff" if style["bom"] else "") + buf.getvalue(), encoding="utf-8", newline="")
            where = [f"{path}:{k}" for k in range(2, len(rows) + 2)]
            rows = [(r, True) for r, _ in rows]  # an empty CSV cell is empty text: it gets a defined verdict
        else:
            body = (json.dumps([r for r, _ in rows]) if fmt == "json"
                    else eol.join(json.dumps(r) for r, _ in rows) + eol)
            path.write_text(("\ufeff" if style["bom"] else "") + body, encoding="utf-8", newline="")
            where = [f"{path}:item {k}" if fmt == "json" else f"{path}:{k}" for k in range(1, len(rows) + 1)]
        code, stdout, stderr = run_cli(["guard", "--file", str(path)])
        good = [k for k, (_, ok) in enumerate(rows) if ok]
        verdicts = [json.loads(line) for line in stdout.splitlines()]
        assert [v["id"] for v in verdicts] == [int(where[k].rsplit(" ", 1)[-1].rsplit(":", 1)[-1]) for k in good]
        assert all(v["action"] in ("answer", "refuse", "escalate") for v in verdicts)
        for k, (_, ok) in enumerate(rows):
            assert ok or f"medtune guard: {where[k]}: " in stderr, (where[k], stderr)
        assert code == (0 if len(good) == len(rows) else 2), stderr


@pytest.mark.parametrize("data,message", [
    (b"[", "before its first item"),
    (b'{"a": [], "b": []}', "keys holding lists: a, b"),
    (b'"just a string"', "expected a JSON list of objects"),
    (b'[{"question": "caf\xe9"}]', "broken JSON (invalid bytes in UTF8 string at line 1) before its first item"),
])
def test_json_file_unreadable_as_a_whole_is_one_error(tmp_path, data, message):
    path = tmp_path / "x.json"
    path.write_bytes(data)
    with pytest.raises(MedtuneError, match=message.replace("(", r"\(").replace(")", r"\)")):
        list(iter_file_rows(path))


def test_json_object_with_one_list_streams_and_names_the_break_line(tmp_path):
    path = tmp_path / "x.json"
    path.write_bytes(b'{"meta": {"n": [1]}, "data": [\n{"question": "a"},\n7,\n{"question": "b"},\n{"question": ')
    rows = list(iter_file_rows(path))
    assert [(w, r) for w, r, _ in rows[:2]] == [(f"{path}:item 1", {"question": "a"}), (f"{path}:item 2", None)]
    assert rows[2][0] == f"{path}:item 3" and rows[2][1] == {"question": "b"}
    assert rows[3][0] == f"{path}:item 4" and rows[3][2] == f"broken JSON (premature EOF at line 5); {TORN}"
    assert len(rows) == 4


_SCALAR = st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=8), st.booleans())
_JUNK = st.recursive(_SCALAR, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.sampled_from(["from", "value", "role", "content", "contexts", "A", "x"]), inner, max_size=3)),
    max_leaves=6)
_FIELDS = ("question", "answer", "options", "choices", "opa", "opb", "cop", "answer_idx", "context", "final_decision",
           "long_answer", "instruction", "input", "output", "response", "conversations", "messages", "utterances",
           "prompt", "safe_response", "category", "subject", "id")


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(["qa", "alpaca", "sharegpt", "messages", "mcq", "yesno", "safety", "dialog"])),
       st.dictionaries(st.sampled_from(_FIELDS), _JUNK, max_size=6))
def test_every_converter_turns_a_wrongly_typed_row_into_a_conversation_or_a_row_error(fmt, row):
    """prepare catches RowError only: any other exception on a row of odd types would be an internal error."""
    from medtune.data.formats import FORMATS

    try:
        conv = FORMATS[fmt](row, {})
    except RowError:
        return
    assert all(isinstance(m["content"], str) and m["role"] in ("system", "user", "assistant") for m in conv)


_EVAL_ROWS = st.one_of(
    st.dictionaries(st.sampled_from(_FIELDS), _JUNK, max_size=6),
    st.fixed_dictionaries({"question": _JUNK, "answer": st.one_of(st.sampled_from(["yes", "no", "maybe", "A"]), _JUNK),
                           "context": _JUNK, "options": st.one_of(st.just(["x", "y"]), _JUNK)}))


@settings(max_examples=150, deadline=None)
@given(st.lists(_EVAL_ROWS, max_size=4))
def test_eval_items_of_odd_types_are_scored_or_rejected(rows):
    """The multiple-choice and yes/no item builders (and their prompts) on rows of odd types: an item or a reject."""
    from medtune.eval.mcq import mcq_items
    from medtune.eval.yesno import pubmedqa_prompt, yesno_items

    items, rejects = mcq_items(rows)
    assert len(items) + len(rejects) == len(rows)
    items, rejects = yesno_items(rows)
    assert len(items) + len(rejects) == len(rows)
    for i, _ in items:
        assert pubmedqa_prompt(rows[i], True).endswith("Answer:")


def test_a_json_file_is_streamed_not_loaded_whole(tmp_path):
    """12 MB of rows pass through the reader with a few MB of Python memory (json.loads would hold it all)."""
    import tracemalloc

    path = tmp_path / "big.json"
    row = json.dumps({"question": "What is it?", "answer": "x" * 400})
    with path.open("w", encoding="utf-8") as f:
        f.write("{\"data\": [\n" + ",\n".join([row] * 30_000) + "\n]}\n")
    assert path.stat().st_size > 12_000_000
    tracemalloc.start()
    try:
        n = sum(1 for _, r, _ in iter_file_rows(path) if r is not None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert n == 30_000
    assert peak < 5_000_000, peak
