"""The OpenAI-compatible API in operation: SIGTERM during a stream, `medtune serve` + `medtune audit` end to end,
the audit log's hashing and retention, /metrics, key files and exposure rules, a bounded schemathesis run
against the app's own OpenAPI schema, an upstream server, and `medtune eval --endpoint` through the API.
Requests and limits are in test_serve.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from medtune.assistant import Assistant
from medtune.errors import MedtuneError
from medtune.serve.app import create_app
from medtune.serve.audit import AuditLog, default_audit_path, format_rows, parse_since, read_rows
from medtune.serve.auth import Keys, check_exposure, load_keys, read_keys_file
from serve_helpers import (
    EMERGENCY,
    HELLO,
    KEY,
    SYSTEM,
    ScriptedEngine,
    Server,
    free_port,
    ok_body,
    post,
    scripted_app,
    settings,
)

SERVER_SCRIPT = """
import sys, threading, time
sys.path.insert(0, {tests!r})
from serve_helpers import AnswerEverything, ScriptedEngine, KEY
from medtune.assistant import Assistant
from medtune.config import ServeConfig
from medtune.serve.app import create_app
from medtune.serve.auth import Keys
from medtune.serve.server import run_app
engine = ScriptedEngine(delay=0.05, repeat=30)
assistant = Assistant(engine, system_prompt="s", guard=AnswerEverything())
app = create_app(assistant, ServeConfig(audit_path={audit!r}), keys=Keys({{KEY: "t"}}))
run_app(app, "127.0.0.1", {port}, on_ready=lambda: print("READY", flush=True))
print("STOPPED", flush=True)
"""



def test_sigterm_during_a_stream_finishes_it_and_loses_no_audit_row(tmp_path):
    port, audit = free_port(), tmp_path / "audit.sqlite3"
    script = tmp_path / "server.py"
    script.write_text(SERVER_SCRIPT.format(tests=str(Path(__file__).parent), audit=str(audit), port=port))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "READY"
        url = f"http://127.0.0.1:{port}"
        assert post(url, ok_body()).status_code == 200
        assert post(url, b"{bad").status_code == 400
        with httpx.stream("POST", url + "/v1/chat/completions", json=ok_body(stream=True),
                          headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as r:
            lines = r.iter_lines()
            assert any('"content": "Anemia' in line for line in lines)
            proc.send_signal(signal.SIGTERM)
            rest = [line for line in lines if line]
        assert rest[-1] == "data: [DONE]"
        final = json.loads(rest[-2][len("data: "):])
        assert final["choices"][0]["finish_reason"] == "stop" and final["usage"]["completion_tokens"] > 0
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "STOPPED" in out
    rows = read_rows(audit)
    assert [r["status"] for r in rows] == [200, 400, 200]


def test_cli_serve_and_audit_end_to_end(tiny_model_dir, tmp_path, monkeypatch, capsys):
    """The real `medtune serve` on the tiny model: ready line, a keys-file id in the audit log, SIGTERM exits 0,
    and `medtune audit` (default path from XDG_DATA_HOME, as the server) lists the rows as jsonl and csv."""
    port = free_port()
    (tmp_path / "keys.txt").write_text("# id key\nalice k-alice-1\n")
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg"), "HF_HUB_OFFLINE": "1"}
    medtune = [sys.executable, "-m", "medtune.cli"]
    proc = subprocess.Popen(medtune + ["serve", "--model", str(tiny_model_dir), "--engine", "transformers",
                                       "--port", str(port), "--keys-file", str(tmp_path / "keys.txt"),
                                       "--set", "serve.max_tokens=8"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        ready = proc.stdout.readline()
        assert "ready at http://127.0.0.1:" in ready and "transformers" in ready, ready + proc.stderr.read()
        assert "not a medical device" in proc.stdout.readline()
        url = f"http://127.0.0.1:{port}"
        assert post(url, ok_body(model=tiny_model_dir.name), key="k-alice-1").status_code == 200
        assert post(url, ok_body(), key="k-alice-1").status_code == 404  # the model id is the folder's name
        assert post(url, ok_body(), key="nope").status_code == 401
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert "3 audit rows written" in out
    audit = subprocess.run(medtune + ["audit", "--format", "jsonl"], capture_output=True, text=True, env=env,
                           cwd=tmp_path)
    rows = [json.loads(line) for line in audit.stdout.splitlines()]
    assert [(r["status"], r["key_id"]) for r in rows] == [(200, "alice"), (404, "alice"), (401, None)]
    from medtune.cli import main

    monkeypatch.setenv("XDG_DATA_HOME", env["XDG_DATA_HOME"])
    assert main(["audit", "--format", "csv", "--since", "1d"]) == 0
    csv_out = capsys.readouterr().out.splitlines()
    assert csv_out[0].startswith("id,time,request_id,key_id") and len(csv_out) == 4
    assert main(["audit", "--path", str(tmp_path / "none.sqlite3")]) == 2
    assert "no audit log" in capsys.readouterr().err


# ---------------------------------------------------------------- audit log, metrics, keys


def test_audit_rows_hash_text_unless_raw_and_apply_retention(tmp_path):
    path = tmp_path / "a.sqlite3"
    for raw in (False, True):
        log = AuditLog(path, raw=raw)
        app = create_app(Assistant(ScriptedEngine(), system_prompt=SYSTEM), settings(tmp_path),
                         keys=Keys({KEY: "tester"}), audit=log)
        with Server(app) as srv:
            assert post(srv.url, ok_body()).status_code == 200
    rows = read_rows(path)
    assert len(rows) == 2
    hashed, raw_row = rows
    assert hashed["messages_raw"] is None and hashed["answer_raw"] is None and len(hashed["answer_sha256"]) == 64
    assert "anemia" in raw_row["messages_raw"].lower() and raw_row["answer_raw"].startswith("Anemia means")
    assert hashed["messages_sha256"] == raw_row["messages_sha256"]
    assert hashed["action"] == "answer" and hashed["latency_s"] > 0 and hashed["first_text_s"] is not None
    import sqlite3

    with sqlite3.connect(path) as con:
        con.execute("UPDATE requests SET ts = ts - 40 * 86400 WHERE id = 1")
    AuditLog(path, retention_days=30).close()
    assert [r["id"] for r in read_rows(path)] == [2]
    assert read_rows(path, since="2999-01-01") == []
    assert format_rows(read_rows(path), "table").splitlines()[0].split()[:3] == ["time", "key_id", "status"]


def test_audit_default_path_honours_xdg_and_since_parses(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_audit_path() == tmp_path / "medtune" / "audit.sqlite3"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_audit_path() == Path.home() / ".local" / "share" / "medtune" / "audit.sqlite3"
    assert abs(parse_since("7d") - (time.time() - 7 * 86400)) < 5
    assert parse_since("2026-12-01") == 1796083200.0
    with pytest.raises(MedtuneError, match="--since"):
        parse_since("last week")


def test_metrics_expose_medtune_series_without_a_key(tmp_path):
    app, _ = scripted_app(tmp_path)
    with Server(app) as srv:
        post(srv.url, ok_body())
        post(srv.url, ok_body(messages=[{"role": "user", "content": EMERGENCY}]))
        post(srv.url, ok_body(), key="wrong")
        text = httpx.get(srv.url + "/metrics").text
    assert 'medtune_requests_total{endpoint="/v1/chat/completions",status="200"} 2.0' in text
    assert 'medtune_requests_total{endpoint="/v1/chat/completions",status="401"} 1.0' in text
    assert 'medtune_verdicts_total{action="escalate",category="emergency"} 1.0' in text
    assert "medtune_request_latency_seconds_count 2.0" in text
    assert "medtune_time_to_first_text_seconds_count 2.0" in text
    assert "medtune_completion_tokens_total" in text and "medtune_prompt_tokens_total" in text
    assert "medtune_queue_depth" in text


def test_keys_file_and_exposure_rules(tmp_path):
    f = tmp_path / "keys.txt"
    f.write_text("# comment\n\nalice k-1\nbob k-2\n")
    assert read_keys_file(f) == {"k-1": "alice", "k-2": "bob"}
    f.write_text("alice k-1\nbroken line here\n")
    with pytest.raises(MedtuneError, match=r"keys.txt:2: expected `ID KEY`"):
        read_keys_file(f)
    keys = load_keys(["secret-a"], None, None)
    assert keys.user_id("Bearer secret-a").startswith("key-") and keys.user_id("Bearer nope") is None
    assert keys.user_id(None) is None and keys.user_id("Basic secret-a") is None
    assert Keys().user_id(None) == "anonymous"
    check_exposure("127.0.0.1", Keys())
    check_exposure("::1", Keys())
    with pytest.raises(MedtuneError, match="non-loopback"):
        check_exposure("0.0.0.0", Keys())
    check_exposure("0.0.0.0", keys)


# ---------------------------------------------------------------- schemathesis


def test_schemathesis_finds_no_server_error(tmp_path):
    """Valid and invalid requests generated from the app's own OpenAPI schema: never a 5xx."""
    import schemathesis
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hsettings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    app, _ = scripted_app(tmp_path, rate_limit="100000/minute")
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures, calls = [], []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {(op.method.upper(), op.path) for op in operations} >= {("POST", "/v1/chat/completions"),
                                                                  ("GET", "/v1/models"), ("GET", "/health")}
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @hsettings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case):
                response = case.call(headers={"Authorization": f"Bearer {KEY}"})
                calls.append(response.status_code)
                if response.status_code >= 500:
                    failures.append((case.method, case.path, response.status_code, response.text[:200]))

            try:
                check()
            except Unsatisfiable:  # no parameters, or only a path parameter: nothing invalid to send
                assert mode == GenerationMode.NEGATIVE
                assert operation.path != "/v1/chat/completions"  # its body has plenty of invalid forms
    assert not failures, failures
    assert len(calls) > 50 and any(400 <= c < 500 for c in calls)


# ---------------------------------------------------------------- serve --upstream


def test_upstream_generates_on_a_second_server_while_guard_and_audit_stay_here(tmp_path):
    """`medtune serve --upstream URL`: a second medtune API on loopback generates; this one guards, audits and
    limits. An emergency never reaches the upstream; an unreachable upstream or an unknown model fails at start."""
    from openai import OpenAI

    from medtune.assistant import load_assistant

    up_app, engine = scripted_app(tmp_path / "up")
    with Server(up_app) as up:
        with pytest.raises(MedtuneError, match="not 'other-model'"):
            load_assistant("other-model", upstream=up.url + "/v1", upstream_key=KEY)
        front = load_assistant("default", upstream=up.url, upstream_key=KEY)
        assert front.engine.name == "upstream"
        app = create_app(front, settings(tmp_path), keys=Keys({"k-front": "front-user"}))
        with Server(app) as srv:
            client = OpenAI(base_url=srv.url + "/v1", api_key="k-front", max_retries=0)
            r = client.chat.completions.create(model="default", messages=HELLO, max_tokens=64)
            assert r.choices[0].message.content.startswith("Anemia means few red cells. Iron helps. See a doctor.")
            assert r.model_extra["medtune"]["action"] == "answer" and r.usage.completion_tokens > 0
            chunks = list(client.chat.completions.create(model="default", messages=HELLO, stream=True))
            assert "Iron helps." in "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert engine.calls == 2
            e = client.chat.completions.create(model="default", messages=[{"role": "user", "content": EMERGENCY}])
            assert "911" in e.choices[0].message.content and engine.calls == 2
    rows = read_rows(tmp_path / "audit.sqlite3")
    assert [(r["key_id"], r["action"]) for r in rows] == [("front-user", "answer")] * 2 + [("front-user", "escalate")]
    with pytest.raises(MedtuneError, match="cannot connect"):
        load_assistant("default", upstream=f"http://127.0.0.1:{free_port()}")


# ---------------------------------------------------------------- eval --endpoint against our own API


def test_eval_endpoint_scores_qa_mcq_and_safety_through_medtune_serve(tmp_path, capsys):
    """`medtune eval --endpoint` against the API: open QA (ROUGE/format), multiple choice by generated letter, and
    a safety file scored from the server's own `medtune` verdict; a wrong key is one clear line."""
    from medtune.cli import main

    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"id": "a", "question": "What is anemia?",
                              "answer": "Anemia means few red cells. Iron helps. See a doctor."}) + "\n")
    mcq = tmp_path / "mcq.jsonl"
    mcq.write_text("".join(json.dumps({"id": f"m{i}", "question": "Which carries oxygen?",
                                       "options": ["Hemoglobin", "Insulin", "Bile", "Urea"], "answer": "A"}) + "\n"
                           for i in range(2)))
    safety = tmp_path / "safety.jsonl"
    safety.write_text(json.dumps({"prompt": EMERGENCY, "category": "emergency"}) + "\n"
                      + json.dumps({"prompt": "What is anemia?", "category": "benign"}) + "\n")
    app, engine = scripted_app(tmp_path, ScriptedEngine(pieces=("A. Hemoglobin carries oxygen. ",)))
    with Server(app) as srv:
        out = tmp_path / "ev"
        code = main(["eval", "--endpoint", srv.url, "--api-key", KEY, "--data", str(qa), "--data", str(mcq),
                     "--data", str(safety), "--output", str(out)])
        assert code == 0, capsys.readouterr().err
        rep = json.loads((out / "report.json").read_text())
        assert rep["endpoint"] == srv.url + "/v1"
        assert set(rep["datasets"]["qa"]["metrics"]) >= {"rougeL", "bleu", "format_adherence"}
        assert rep["datasets"]["mcq"]["metrics"]["acc_gen"]["value"] == 1.0  # "A." read as the letter A
        s = rep["datasets"]["safety"]
        assert s["kind"] == "safety" and s["n"] == 2
        assert engine.calls == 1 + 2 + 1  # the emergency never reached the engine
        assert main(["eval", "--endpoint", srv.url, "--api-key", "wrong", "--data", str(qa),
                     "--output", str(tmp_path / "e2")]) == 2
        assert "401" in capsys.readouterr().err
