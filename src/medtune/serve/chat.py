"""The terminal chat: a multi-turn conversation with the guarded Assistant, answers streamed as released.

Everything a reply is (the guard's verdict, the fixed escalation or refusal text, the output guard's
sentence-by-sentence release) comes from the Assistant; this module only keeps the history, prints and reads.
Escalations get a header of their own ("!! EMERGENCY", "!! CRISIS SUPPORT") so they cannot be mistaken for a
model answer; refusals are marked. Colour only when stdout is a terminal (and NO_COLOR is unset).

Run as: medtune chat --model default [--engine llama.cpp] [--temperature 0.3] [--max-tokens 512]
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TextIO

try:  # line editing and history for input(); absent on Windows
    import readline  # noqa: F401
except ImportError:  # pragma: no cover
    pass

from medtune.assistant import Assistant, GenParams, Reply
from medtune.errors import MedtuneError
from medtune.safety.policy import ANSWER, DISCLAIMER, ESCALATE

BANNER = (
    "medtune chat: a medical information assistant for education and research, NOT a medical device.\n"
    "It cannot examine you and small models are often confidently wrong. In an emergency call your local\n"
    "emergency number (911 in the US, 112 in the EU, 999 in the UK) instead of typing here.\n"
    f"{DISCLAIMER}\n"
    "Commands: /reset starts a new conversation, /exit quits (or Ctrl-D)."
)
PROMPT = "you> "
ANSWER_PREFIX = "assistant> "
HEADERS = {"emergency": "!! EMERGENCY", "self_harm": "!! CRISIS SUPPORT"}
EXIT_COMMANDS = ("/exit", "/quit")

_RED, _YELLOW, _DIM, _BOLD, _RESET = "\033[1;31m", "\033[33m", "\033[2m", "\033[1m", "\033[0m"


class Painter:
    """ANSI colour when writing to a terminal, plain text otherwise."""

    def __init__(self, out: TextIO) -> None:
        self.on = out.isatty() and not os.environ.get("NO_COLOR")

    def __call__(self, text: str, style: str) -> str:
        return f"{style}{text}{_RESET}" if self.on else text


def header(action: str, category: str) -> str | None:
    """The line printed above a guarded reply: escalations and refusals never look like an answer."""
    if action == ESCALATE:
        return f"{HEADERS.get(category, '!! URGENT')} - this is a fixed safety message, not model output"
    if action != ANSWER:
        return f"[declined: {category.replace('_', ' ')}] - a fixed safety message, not model output"
    return None


def footer(reply: Reply, stopped: bool = False) -> str | None:
    """A short note after an answer when something about it is worth knowing."""
    notes = []
    if reply.finish_reason == "length":
        notes.append(f"answer cut at {reply.completion_tokens} tokens (--max-tokens)")
    if stopped or reply.finish_reason == "cancelled":
        notes.append("stopped")
    if reply.trimmed_messages:
        notes.append(f"{reply.trimmed_messages} oldest messages left out to fit the model's context")
    changed = [c for c in reply.changes if c != "disclaimer"]
    if changed:
        notes.append("output guard: " + ", ".join(changed))
    return f"[{'; '.join(notes)}]" if notes else None


def run_chat(assistant: Assistant, params: GenParams, *, read: Callable[[str], str] = input,
             out: TextIO = sys.stdout) -> int:
    """Read messages until /exit, Ctrl-D or Ctrl-C at the prompt; print each reply as it is released.
    Ctrl-C during an answer stops that answer only. Returns the exit status (0)."""
    paint = Painter(out)

    def say(text: str = "", end: str = "\n") -> None:
        out.write(text + end)
        out.flush()

    say(paint(BANNER, _BOLD))
    say(paint(f"model: {assistant.model_id} on {assistant.engine.name}", _DIM))
    history: list[dict[str, str]] = []
    while True:
        try:
            line = read(PROMPT)
        except (EOFError, KeyboardInterrupt):
            say()
            return 0
        text = line.strip()
        if not text:
            continue
        if text.lower() in EXIT_COMMANDS:
            return 0
        if text.lower() == "/reset":
            history.clear()
            say(paint("[conversation cleared]", _DIM))
            continue
        if text.startswith("/"):
            say(paint(f"unknown command {text.split()[0]}: /reset or /exit", _DIM))
            continue
        reply = _answer(assistant, history + [{"role": "user", "content": line}], params, paint, say)
        if reply is not None:
            history += [{"role": "user", "content": line}, {"role": "assistant", "content": reply.text}]


def _answer(assistant: Assistant, messages: list[dict[str, str]], params: GenParams, paint: Painter,
            say: Callable[..., None]) -> Reply | None:
    """Stream one reply; None when the message could not be answered (the reason printed in one line)."""
    opened = stopped = False
    try:
        turn = assistant.start(messages, params)
        top = header(turn.verdict.action, turn.verdict.category)
        style = _RED if turn.verdict.action == ESCALATE else _YELLOW
        if top:
            say(paint(top, style))
        say(ANSWER_PREFIX, end="")
        opened = True
        try:
            for piece in turn:
                say(paint(piece, style) if top else piece, end="")
        except KeyboardInterrupt:
            stopped = True
            turn.close()
        say()
    except MedtuneError as e:  # e.g. too long for the context (found when the turn starts reading)
        if opened:
            say()
        say(paint(f"medtune: {e}", _YELLOW))
        return None
    reply = turn.reply
    if reply is not None and (note := footer(reply, stopped)):
        say(paint(note, _DIM))
    return reply
