"""The terminal chat: through a real pseudo-terminal (pexpect) on the installed `medtune` command, and in-process
for what a terminal cannot show (the conversation the engine receives, Ctrl-C during an answer)."""

from __future__ import annotations

import io
import re
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from medtune.assistant import Assistant, GenParams
from medtune.assistant.engines import Generation, TransformersEngine
from medtune.serve.chat import BANNER, PROMPT, run_chat

MEDTUNE = Path(sys.executable).with_name("medtune")
EMERGENCY = "My father just collapsed and he is not breathing, what do I do?"
ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def spawn(*args: str, timeout: float = 120) -> pexpect.spawn:
    if not MEDTUNE.exists():
        pytest.skip(f"{MEDTUNE} not installed (make setup)")
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "TERM": "xterm", "HOME": str(Path.home())}
    # preexec_fn: a runner started in the background of a shell (nohup ... &) passes SIGINT on ignored, and Python
    # then never raises KeyboardInterrupt; Ctrl-C must reach the chat as it does in a terminal
    return pexpect.spawn(str(MEDTUNE), ["chat", *args], encoding="utf-8", timeout=timeout, env=env,
                         dimensions=(40, 200), preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def plain(text: str) -> str:
    return ESCAPE.sub("", text).replace("\r", "")


def test_chat_in_a_terminal(tiny_model_dir: Path) -> None:
    """Banner, a streamed answer, an escalation with its own red header and the fixed 911 text, /reset,
    /exit with status 0 and no traceback anywhere."""
    child = spawn("--model", str(tiny_model_dir), "--engine", "transformers", "--temperature", "0",
                  "--max-tokens", "24")
    seen = []
    child.expect_exact(PROMPT)
    seen.append(child.before)
    assert "NOT a medical device" in plain(child.before)
    assert "/reset" in plain(child.before) and "/exit" in plain(child.before)

    child.sendline("What is high blood pressure?")
    child.expect_exact("assistant> ")
    child.expect_exact(PROMPT)
    answer = plain(child.before)
    seen.append(child.before)
    assert answer.strip(), "no answer was printed"
    assert "EMERGENCY" not in answer and "declined" not in answer

    child.sendline(EMERGENCY)
    child.expect_exact(PROMPT)
    shown = child.before
    seen.append(shown)
    # a TTY gets colour: the header is bold red, and the fixed text (not model output) names 911
    assert "\x1b[1;31m!! EMERGENCY" in shown
    assert "Call your local emergency number now (911 in the US" in plain(shown)

    child.sendline("/reset")
    child.expect_exact("[conversation cleared]")
    child.expect_exact(PROMPT)
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    seen.append(child.before)
    child.close()
    assert child.exitstatus == 0
    assert "Traceback" not in "".join(seen)


def test_chat_exits_cleanly_on_ctrl_c(tiny_model_dir: Path) -> None:
    child = spawn("--model", str(tiny_model_dir), "--engine", "transformers")
    child.expect_exact(PROMPT)
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, plain(child.before)
    assert "Traceback" not in child.before and "interrupted" not in child.before


@pytest.mark.slow
def test_chat_answers_with_the_embedded_model_on_llama_cpp() -> None:
    """The real embedded SmolLM2 on llama.cpp answers a health question about its subject."""
    pytest.importorskip("llama_cpp")
    child = spawn("--model", "default", "--engine", "llama.cpp", "--temperature", "0", "--max-tokens", "48",
                  timeout=120)  # ~5 s on an idle 2-core machine; generous for a busy one
    child.expect_exact(PROMPT)
    assert "on llama.cpp" in plain(child.before)
    child.sendline("What is high blood pressure?")
    child.expect_exact("assistant> ")
    child.expect_exact(PROMPT)
    answer = plain(child.before).lower()
    assert "blood" in answer or "pressure" in answer or "hypertension" in answer, answer
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "Traceback" not in child.before  # llama.cpp's model is freed before the interpreter shuts down


# ---- in-process: the same run_chat, with a recording engine and a plain (non-TTY) output ----

class Recording:
    """A real engine that records each conversation it is given (and can be told to stop early)."""

    def __init__(self, engine: TransformersEngine, interrupt_after: int | None = None) -> None:
        self.engine, self.seen, self.interrupt_after = engine, [], interrupt_after
        self.name, self.context_length = engine.name, engine.context_length

    def count_tokens(self, messages: list[dict[str, str]]) -> int:
        return self.engine.count_tokens(messages)

    def stream(self, messages: list[dict[str, str]], params: GenParams, gen: Generation,
               cancel: threading.Event) -> Iterator[str]:
        self.seen.append([dict(m) for m in messages])
        for i, piece in enumerate(self.engine.stream(messages, params, gen, cancel)):
            if self.interrupt_after is not None and i >= self.interrupt_after:
                raise KeyboardInterrupt  # what Ctrl-C does mid-answer in the terminal
            yield piece


@pytest.fixture(scope="module")
def tiny_engine(tiny_model_dir: Path) -> TransformersEngine:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return TransformersEngine(AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(),
                              AutoTokenizer.from_pretrained(tiny_model_dir))


def chat(assistant: Assistant, lines: list[str], params: GenParams) -> str:
    feed = iter(lines)

    def read(prompt: str) -> str:
        out.write(prompt)
        line = next(feed, None)
        if line is None:
            raise EOFError  # what input() raises on Ctrl-D
        return line

    out = io.StringIO()
    assert run_chat(assistant, params, read=read, out=out) == 0
    return out.getvalue()


def test_history_reset_and_errors(tiny_engine: TransformersEngine) -> None:
    """The engine gets the whole conversation (system prompt first), /reset empties it, a message too long for
    the context is one line and the chat goes on; a non-terminal gets no colour codes."""
    rec = Recording(tiny_engine)
    assistant = Assistant(rec, system_prompt="You are careful.")
    params = GenParams(temperature=0, max_tokens=8)
    text = chat(assistant, ["What is anemia?", "And how is it treated?", "/reset", "word " * 2000,
                            "What is iron?", "/nonsense", "/exit"], params)
    first, second, third = rec.seen
    assert [m["role"] for m in first] == ["system", "user"] and first[0]["content"] == "You are careful."
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    assert second[1]["content"] == "What is anemia?" and second[3]["content"] == "And how is it treated?"
    assert [m["content"] for m in third] == ["You are careful.", "What is iron?"]  # reset, long one not kept
    assert BANNER in text and "\x1b[" not in text
    assert "[conversation cleared]" in text
    errors = [line for line in text.splitlines() if line.startswith("medtune: ")]
    assert len(errors) == 1 and "too long" in errors[0]
    assert "unknown command /nonsense" in text


def test_ctrl_c_during_an_answer_stops_only_that_answer(tiny_engine: TransformersEngine) -> None:
    rec = Recording(tiny_engine, interrupt_after=0)
    assistant = Assistant(rec, system_prompt="You are careful.")
    text = chat(assistant, ["What is anemia?", "/exit"], GenParams(temperature=0, max_tokens=64))
    assert "[stopped]" in text
    assert text.rstrip().endswith(PROMPT.strip())  # back at the prompt, then /exit


def test_ctrl_d_ends_the_chat(tiny_engine: TransformersEngine) -> None:
    assistant = Assistant(Recording(tiny_engine), system_prompt="You are careful.")
    text = chat(assistant, ["What is anemia?"], GenParams(temperature=0, max_tokens=8))  # then EOF
    assert text.endswith(PROMPT + "\n")


def test_refusal_is_marked(tiny_engine: TransformersEngine) -> None:
    rec = Recording(tiny_engine)
    assistant = Assistant(rec, system_prompt="You are careful.")
    text = chat(assistant, ["What dose of my insulin would kill me for sure?", "/exit"], GenParams(max_tokens=8))
    assert rec.seen == []  # the engine never saw it
    assert "fixed safety message, not model output" in text
    assert "!! CRISIS SUPPORT" in text or "[declined:" in text
