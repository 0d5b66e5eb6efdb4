"""The OpenAI-compatible API, requests and limits: the official openai client against a real uvicorn server,
keys, bad bodies, rate limits, the queue, timeouts, the kill switch and disconnects. Operations (SIGTERM, the
audit log and `medtune audit`, /metrics, key files, schemathesis, an upstream server, eval through the API) are
in test_serve_ops.py; the shared engine and server in serve_helpers.py.

Most tests run on the tiny random model (conftest) or on `ScriptedEngine`, an engine whose timing the test
controls; none needs the real model."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from medtune.assistant import Assistant
from medtune.assistant.engines import TransformersEngine
from medtune.serve.app import create_app
from medtune.serve.audit import read_rows
from medtune.serve.auth import Keys
from serve_helpers import (
    ADMIN,
    EMERGENCY,
    HELLO,
    KEY,
    SYSTEM,
    ScriptedEngine,
    Server,
    ok_body,
    post,
    scripted_app,
    settings,
    wait_for,
)


@pytest.fixture(scope="module")
def tiny_assistant(tiny_model_dir):
    from medtune.model.load import load_for_inference

    model, tok, _ = load_for_inference(str(tiny_model_dir))
    return Assistant(TransformersEngine(model, tok), system_prompt=SYSTEM)


# ---------------------------------------------------------------- the official client


def test_openai_client_plain_answer_on_the_tiny_model(tiny_assistant, tmp_path):
    from openai import OpenAI

    app = create_app(tiny_assistant, settings(tmp_path), keys=Keys({KEY: "tester"}))
    with Server(app) as srv:
        client = OpenAI(base_url=srv.url + "/v1", api_key=KEY, max_retries=0)
        assert [m.id for m in client.models.list().data] == ["default"]
        r = client.chat.completions.create(model="default", messages=HELLO, max_tokens=24, seed=1, temperature=0)
        assert r.object == "chat.completion" and r.choices[0].message.role == "assistant"
        assert r.choices[0].message.content.strip()
        assert r.choices[0].finish_reason in ("stop", "length")
        assert r.usage.prompt_tokens > 0 and 0 < r.usage.completion_tokens <= 24
        assert r.model_extra["medtune"]["action"] == "answer"
    rows = read_rows(tmp_path / "audit.sqlite3")
    assert len(rows) == 1 and rows[0]["status"] == 200 and rows[0]["key_id"] == "tester"
    assert rows[0]["completion_tokens"] == r.usage.completion_tokens


def test_openai_client_stream_and_emergency(tmp_path):
    from openai import OpenAI

    app, engine = scripted_app(tmp_path)
    with Server(app) as srv:
        client = OpenAI(base_url=srv.url + "/v1", api_key=KEY, max_retries=0)
        chunks = list(client.chat.completions.create(model="default", messages=HELLO, stream=True, max_tokens=64))
        texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
        assert len(texts) > 1, texts
        assert "".join(texts).startswith("Anemia means few red cells. Iron helps. See a doctor.")
        assert chunks[0].model_extra["medtune"]["action"] == "answer"
        assert chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].usage.completion_tokens > 0
        assert {c.id for c in chunks} == {chunks[0].id} and all(c.object == "chat.completion.chunk" for c in chunks)
        assert engine.calls == 1

        e = client.chat.completions.create(model="default", messages=[{"role": "user", "content": EMERGENCY}])
        text = e.choices[0].message.content
        assert all(n in text for n in ("911", "112", "999")), text
        assert e.model_extra["medtune"]["action"] == "escalate"
        assert e.model_extra["medtune"]["category"] == "emergency"
        assert engine.calls == 1, "an emergency must not reach the engine"
        streamed = list(client.chat.completions.create(model="default", stream=True,
                                                       messages=[{"role": "user", "content": EMERGENCY}]))
        assert "911" in "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
        assert engine.calls == 1


def test_openai_client_errors_wrong_key_and_unknown_model(tmp_path):
    import openai

    app, _ = scripted_app(tmp_path)
    with Server(app) as srv:
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=srv.url + "/v1", api_key="wrong", max_retries=0).chat.completions.create(
                model="default", messages=HELLO)
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key=KEY, max_retries=0)
        with pytest.raises(openai.NotFoundError) as err:
            client.chat.completions.create(model="gpt-4o", messages=HELLO)
        assert err.value.body["code"] == "model_not_found" and "gpt-4o" in err.value.body["message"]
        missing = httpx.get(srv.url + "/v1/models")
        assert missing.status_code == 401 and missing.json()["error"]["type"] == "authentication_error"
        assert httpx.get(srv.url + "/v1/models/other", headers={"Authorization": f"Bearer {KEY}"}).status_code == 404
        assert httpx.get(srv.url + "/health").json()["status"] == "ok"  # no key needed


@pytest.mark.slow
def test_embedded_model_on_llama_cpp_streams_the_same_text_as_plain(tmp_path):
    """The real embedded model through the API: at temperature 0 the streamed answer (in several chunks) is the
    plain answer, and both carry token counts."""
    from openai import OpenAI

    from medtune.assistant import load_assistant
    from medtune.model import llamacpp

    if not llamacpp.available():
        pytest.skip("llama-cpp-python is not installed")
    assistant = load_assistant("default", "llama.cpp", n_ctx=2048)
    app = create_app(assistant, settings(tmp_path), keys=Keys({KEY: "tester"}))
    question = [{"role": "user", "content": "What does a cholesterol test measure?"}]
    with Server(app) as srv:
        client = OpenAI(base_url=srv.url + "/v1", api_key=KEY, max_retries=0)
        plain = client.chat.completions.create(model="default", messages=question, max_tokens=64, temperature=0)
        chunks = list(client.chat.completions.create(model="default", messages=question, max_tokens=64,
                                                     temperature=0, stream=True))
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(texts) > 1
    assert "".join(texts) == plain.choices[0].message.content
    assert "cholesterol" in plain.choices[0].message.content.lower()
    assert plain.usage.completion_tokens == chunks[-1].usage.completion_tokens > 0


# ---------------------------------------------------------------- bad input

BIG = "x" * 1_000_000
BAD_BODIES = {
    "malformed json": b"{not json",
    "json array": b"[]",
    "truncated": b'{"model": "default", "messages": [{"role": "user", "content": "hi"}',
    "no messages": {"model": "default"},
    "no model": {"messages": HELLO},
    "empty messages": {"model": "default", "messages": []},
    "messages not a list": {"model": "default", "messages": "hello"},
    "wrong role": {"model": "default", "messages": [{"role": "robot", "content": "hi"}]},
    "tool role": {"model": "default", "messages": [{"role": "tool", "content": "hi"}]},
    "empty content": {"model": "default", "messages": [{"role": "user", "content": ""}]},
    "blank content": {"model": "default", "messages": [{"role": "user", "content": "  \n "}]},
    "null content": {"model": "default", "messages": [{"role": "user", "content": None}]},
    "image part": {"model": "default", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
    "last from assistant": {"model": "default", "messages": [{"role": "user", "content": "hi"},
                                                             {"role": "assistant", "content": "hello"}]},
    "1 MB message": {"model": "default", "messages": [{"role": "user", "content": BIG}]},
    "2 MB body": {"model": "default", "messages": [{"role": "user", "content": BIG * 2}]},
    "too many characters": {"model": "default", "messages": [{"role": "user", "content": "y" * 40_000}]},
    "too many messages": {"model": "default", "messages": [{"role": "user", "content": "hi"}] * 65},
    "negative max_tokens": {**ok_body(), "max_tokens": -5},
    "zero max_tokens": {**ok_body(), "max_tokens": 0},
    "huge max_tokens": {**ok_body(), "max_tokens": 10**12},
    "huge max_completion_tokens": {**ok_body(), "max_completion_tokens": 100_000},
    "max_tokens text": {**ok_body(), "max_tokens": "many"},
    "temperature negative": {**ok_body(), "temperature": -1},
    "top_p zero": {**ok_body(), "top_p": 0},
    "n=2": {**ok_body(), "n": 2},
    "model not a string": {**ok_body(), "model": 7},
}


def test_every_bad_input_gets_a_4xx_json_error_and_the_server_keeps_serving(tmp_path):
    app, engine = scripted_app(tmp_path)
    with Server(app) as srv:
        for name, body in BAD_BODIES.items():
            r = post(srv.url, body)
            assert 400 <= r.status_code < 500, (name, r.status_code, r.text[:200])
            err = r.json()["error"]
            assert err["message"] and err["type"], name
        assert post(srv.url, {**BAD_BODIES["1 MB message"]}).status_code == 413
        assert post(srv.url, {**BAD_BODIES["2 MB body"]}).status_code == 413
        assert post(srv.url, BAD_BODIES["malformed json"]).json()["error"]["code"] == "invalid_json"
        assert "messages[0].role" in post(srv.url, BAD_BODIES["wrong role"]).json()["error"]["message"]
        assert engine.calls == 0
        good = post(srv.url, ok_body(unknown_field={"a": 1}, stop=["\n"], user="u1"))  # unknown fields ignored
        assert good.status_code == 200 and good.json()["choices"][0]["message"]["content"]
        assert engine.calls == 1
    rows = read_rows(tmp_path / "audit.sqlite3")
    assert len(rows) == len(BAD_BODIES) + 5
    assert all(400 <= r["status"] < 500 and r["error"] for r in rows[:-1]) and rows[-1]["status"] == 200


def test_input_longer_than_the_context_is_a_400(tmp_path):
    engine = ScriptedEngine()
    engine.context_length = 64
    app, _ = scripted_app(tmp_path, engine)
    with Server(app) as srv:
        r = post(srv.url, ok_body(messages=[{"role": "user", "content": "word " * 200}], max_tokens=16))
        assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
        assert post(srv.url, ok_body()).status_code == 200


# ---------------------------------------------------------------- limits, queue, kill switch


def test_rate_limit_answers_429_with_retry_after(tmp_path):
    app, _ = scripted_app(tmp_path, keys=Keys({KEY: "a", "k-other-key": "b"}), rate_limit="3/minute")
    with Server(app) as srv:
        assert [post(srv.url, ok_body()).status_code for _ in range(3)] == [200, 200, 200]
        r = post(srv.url, ok_body())
        assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
        assert 1 <= int(r.headers["Retry-After"]) <= 60
        assert post(srv.url, ok_body(), key="k-other-key").status_code == 200  # per key


def test_queue_full_answers_503_at_once_and_the_held_request_finishes(tmp_path):
    gate = threading.Event()
    app, engine = scripted_app(tmp_path, ScriptedEngine(gate=gate), queue_size=0)
    with Server(app) as srv:
        held: dict[str, httpx.Response] = {}
        t = threading.Thread(target=lambda: held.setdefault("r", post(srv.url, ok_body())))
        t.start()
        assert engine.started.wait(10)
        t0 = time.monotonic()
        busy = post(srv.url, ok_body())
        assert busy.status_code == 503 and busy.json()["error"]["code"] == "queue_full"
        assert time.monotonic() - t0 < 5, "a full queue must answer at once"
        assert "medtune_queue_depth 1.0" in httpx.get(srv.url + "/metrics").text
        escalated = post(srv.url, ok_body(messages=[{"role": "user", "content": EMERGENCY}]))
        assert escalated.status_code == 200, "an emergency does not wait for the engine"
        gate.set()
        t.join(30)
        assert held["r"].status_code == 200
        assert post(srv.url, ok_body()).status_code == 200


def test_request_timeout_stops_the_engine_and_answers_503(tmp_path):
    gate = threading.Event()
    gate.set()
    app, engine = scripted_app(tmp_path, ScriptedEngine(gate=gate))
    cfg = app.state.medtune.cfg
    with Server(app) as srv:
        assert post(srv.url, ok_body()).status_code == 200  # warm (guard loaded) before the timeout is short
        gate.clear()  # now the engine waits until cancelled
        cfg.request_timeout = 1.0
        r = post(srv.url, ok_body())
        assert r.status_code == 503 and r.json()["error"]["code"] == "timeout"
        assert engine.cancelled.wait(5)
        gate.set()
        cfg.request_timeout = 120.0
        again = post(srv.url, ok_body())
        assert again.status_code == 200, again.text
    rows = read_rows(tmp_path / "audit.sqlite3")
    assert [(x["status"], x["finish_reason"]) for x in rows] == [(200, "stop"), (503, "timeout"), (200, "stop")]


def test_kill_switch_admin_call_and_kill_file(tmp_path):
    kill_file = tmp_path / "medtune.off"
    app, _ = scripted_app(tmp_path, kill_file=str(kill_file))
    with Server(app) as srv:
        admin = {"Authorization": f"Bearer {ADMIN}"}
        assert httpx.post(srv.url + "/admin/kill").status_code == 401
        assert httpx.post(srv.url + "/admin/kill", headers={"Authorization": f"Bearer {KEY}"}).status_code == 401
        assert httpx.post(srv.url + "/admin/kill", headers=admin).json() == {"killed": True}
        r = post(srv.url, ok_body())
        assert r.status_code == 503 and r.json()["error"]["code"] == "killed"
        assert httpx.get(srv.url + "/health").status_code == 503
        assert httpx.post(srv.url + "/admin/resume", headers=admin).json() == {"killed": False}
        assert post(srv.url, ok_body()).status_code == 200
        kill_file.write_text("")
        assert post(srv.url, ok_body()).status_code == 503
        assert "medtune_killed 1.0" in httpx.get(srv.url + "/metrics").text
        kill_file.unlink()
        assert post(srv.url, ok_body()).status_code == 200


def test_kill_switch_stops_a_stream_in_flight(tmp_path):
    app, engine = scripted_app(tmp_path, ScriptedEngine(delay=0.05, repeat=400))
    with Server(app) as srv, httpx.stream("POST", srv.url + "/v1/chat/completions", json=ok_body(stream=True),
                                          headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as r:
        lines = r.iter_lines()
        assert any(line.startswith("data: {") and '"content": "Anemia' in line for line in lines)
        httpx.post(srv.url + "/admin/kill", headers={"Authorization": f"Bearer {ADMIN}"})
        rest = list(lines)
        assert rest[-2:] == ["data: [DONE]", ""] or rest[-1] == "data: [DONE]"
        assert engine.cancelled.wait(5)


# ---------------------------------------------------------------- disconnects and shutdown


def test_client_disconnecting_mid_stream_cancels_the_engine(tmp_path):
    app, engine = scripted_app(tmp_path, ScriptedEngine(delay=0.05, repeat=400))
    with Server(app) as srv:
        with httpx.stream("POST", srv.url + "/v1/chat/completions", json=ok_body(stream=True),
                          headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as r:
            for line in r.iter_lines():
                if '"content": "Anemia' in line:
                    break  # leave after the first text: the connection closes
        assert engine.cancelled.wait(10), "the engine kept generating for a client that left"
        assert httpx.get(srv.url + "/health").status_code == 200
        engine.repeat = 1
        assert post(srv.url, ok_body()).status_code == 200
        assert wait_for(lambda: app.state.medtune.audit.written == 2)
    rows = read_rows(tmp_path / "audit.sqlite3")
    assert len(rows) == 2 and rows[0]["finish_reason"] == "cancelled" and rows[0]["stream"] == 1
    assert rows[0]["completion_tokens"] < 400


def test_client_leaving_a_plain_request_cancels_the_engine(tmp_path):
    app, engine = scripted_app(tmp_path, ScriptedEngine(delay=0.05, repeat=400))
    with Server(app) as srv:
        with pytest.raises(httpx.ReadTimeout):  # the client gives up and closes the connection
            httpx.post(srv.url + "/v1/chat/completions", json=ok_body(max_tokens=2048),
                       headers={"Authorization": f"Bearer {KEY}"}, timeout=1.0)
        assert engine.cancelled.wait(10), "the engine kept generating a plain answer nobody waits for"
        engine.repeat = 1
        assert post(srv.url, ok_body()).status_code == 200


def test_kill_switch_turns_away_requests_waiting_for_the_engine(tmp_path):
    gate = threading.Event()
    app, engine = scripted_app(tmp_path, ScriptedEngine(gate=gate))
    with Server(app) as srv:
        results: dict[str, int] = {}
        first = threading.Thread(target=lambda: results.update(a=post(srv.url, ok_body()).status_code))
        first.start()
        assert engine.started.wait(10)
        second = threading.Thread(target=lambda: results.update(b=post(srv.url, ok_body()).status_code))
        second.start()
        assert wait_for(lambda: app.state.medtune.queue.depth == 2)
        assert httpx.post(srv.url + "/admin/kill", headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 200
        gate.set()
        first.join(30)
        second.join(30)
        assert results == {"a": 503, "b": 503} and engine.calls == 1, (results, engine.calls)


