"""One guarded turn: input guard on the whole conversation -> fixed text, or the engine -> output guard.

The guard reads the conversation before any token is generated; an escalation or refusal is a fixed,
reviewed text in the user's language (safety/policy.py), never model output. Answers are released
sentence by sentence through the output guard (safety/output_guard.SentenceRelease), so a streamed
answer and a plain one are the same text and nothing the output guard would cut is ever sent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from medtune.assistant.engines import Engine, Generation, GenParams
from medtune.errors import MedtuneError
from medtune.safety.features import language
from medtune.safety.guard import Guard, Verdict, default_guard
from medtune.safety.output_guard import SentenceRelease
from medtune.safety.policy import ANSWER, Contacts, message

ROLES = ("system", "user", "assistant")


class InputTooLong(MedtuneError):
    """The newest user message alone does not fit the model's context with the answer budget."""


@dataclass
class Reply:
    """A finished turn: what was shown, why, and what it cost."""

    text: str
    action: str  # answer | escalate | refuse
    category: str
    score: float
    language: str
    finish_reason: str  # stop | length | cancelled | guard
    prompt_tokens: int = 0
    completion_tokens: int = 0
    changes: list[str] = field(default_factory=list)
    latency_s: float = 0.0
    first_text_s: float | None = None
    trimmed_messages: int = 0

    @property
    def guarded(self) -> bool:
        """True when the guard answered instead of the model (escalation or refusal)."""
        return self.action != ANSWER


class Turn:
    """One reply in progress. The verdict is known at once; iterate for the released text pieces; then
    `reply` holds the finished Reply. `close()` (or leaving the loop early) stops the engine."""

    def __init__(self, assistant: Assistant, messages: list[dict[str, str]], params: GenParams) -> None:
        self._t0 = time.monotonic()
        self._assistant, self._params = assistant, params
        self.verdict: Verdict = assistant.guard.check_conversation(messages)
        self.language = assistant.language_of(messages)
        self._cancel = threading.Event()
        self._gen = Generation()
        self.reply: Reply | None = None
        self._messages = messages
        self._pieces = self._run()

    def __iter__(self) -> Iterator[str]:
        return self._pieces

    def cancel(self) -> None:
        """Ask the engine to stop, from any thread (the thread reading the turn then ends it `cancelled`)."""
        self._cancel.set()

    def close(self) -> None:
        self._cancel.set()
        self._pieces.close()
        if self.reply is None:
            self._finish("", [], "cancelled", None)

    def text(self) -> str:
        """Consume the whole turn and return its text."""
        return "".join(self)

    def _run(self) -> Iterator[str]:
        a, v = self._assistant, self.verdict
        if v.action != ANSWER:
            text = message(v.category, a.contacts, self.language) or ""
            self._finish(text, [], "guard", 0.0)
            yield text
            return
        convo, dropped = a.fit_context(self._messages, self._params.max_tokens)
        users = "\n".join(m["content"] for m in self._messages if m["role"] == "user")
        release = SentenceRelease(v.category, a.contacts, self.language, user_text=users)  # does a crisis line fit?
        shown: list[str] = []
        first: float | None = None
        try:
            for piece in a.engine.stream(convo, self._params, self._gen, self._cancel):
                for out in release.feed(piece):
                    first = first if first is not None else time.monotonic() - self._t0
                    shown.append(out)
                    yield out
            for out in release.finish():
                first = first if first is not None else time.monotonic() - self._t0
                shown.append(out)
                yield out
        finally:
            if self.reply is None:
                reason = "cancelled" if self._cancel.is_set() else self._gen.finish_reason
                self._finish("".join(shown), release.changes, reason, first, dropped)

    def _finish(self, text: str, changes: list[str], reason: str, first: float | None, dropped: int = 0) -> None:
        v, g = self.verdict, self._gen
        self.reply = Reply(text=text, action=v.action, category=v.category, score=v.score, language=self.language,
                           finish_reason=reason, prompt_tokens=g.prompt_tokens, completion_tokens=g.completion_tokens,
                           changes=list(changes), latency_s=round(time.monotonic() - self._t0, 4),
                           first_text_s=None if first is None else round(first, 4), trimmed_messages=dropped)


class Assistant:
    """Input guard -> engine -> output guard, with the run's system prompt always first."""

    def __init__(self, engine: Engine, *, system_prompt: str, guard: Guard | None = None,
                 contacts: Contacts | None = None, model_id: str = "default",
                 defaults: GenParams | None = None) -> None:
        self.engine = engine
        self.system_prompt = system_prompt
        self.guard = guard or default_guard()
        self.contacts = contacts
        self.model_id = model_id
        self.defaults = defaults or GenParams()

    def start(self, messages: list[dict[str, str]], params: GenParams | None = None) -> Turn:
        """Check the conversation and begin a reply (nothing is generated until the turn is read)."""
        return Turn(self, validate_messages(messages), params or self.defaults)

    def reply(self, messages: list[dict[str, str]], params: GenParams | None = None) -> Reply:
        turn = self.start(messages, params)
        turn.text()
        assert turn.reply is not None
        return turn.reply

    def language_of(self, messages: list[dict[str, str]]) -> str:
        users = [m["content"] for m in messages if m["role"] == "user"]
        return language(users[-1]) if users else "en"

    def fit_context(self, messages: list[dict[str, str]], max_tokens: int) -> tuple[list[dict[str, str]], int]:
        """The run's system prompt + the newest turns that fit the context with `max_tokens` to spare.
        Client system messages are dropped: the run's own system prompt is the one it was trained with."""
        turns = [m for m in messages if m["role"] != "system"]
        budget = self.engine.context_length - max_tokens
        system = [{"role": "system", "content": self.system_prompt}]
        start = 0
        while True:
            convo = system + turns[start:]
            if self.engine.count_tokens(convo) <= budget:
                return convo, start
            # drop the oldest exchange, but never the newest user message
            nxt = next((i for i in range(start + 1, len(turns)) if turns[i]["role"] == "user"), None)
            if nxt is None:
                raise InputTooLong(f"the message is too long for this model: it does not fit the model's "
                                   f"{self.engine.context_length}-token context with max_tokens={max_tokens}; "
                                   "shorten it or ask for fewer tokens")
            start = nxt


def validate_messages(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """Plain {role, content} dicts with known roles, ending with a user turn; MedtuneError otherwise."""
    if not isinstance(messages, list) or not messages:
        raise MedtuneError("messages: expected a non-empty list of {role, content} objects")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise MedtuneError(f"messages[{i}]: expected {{'role': one of {', '.join(ROLES)}, 'content': text}}")
        out.append({"role": m["role"], "content": m["content"]})
    if out[-1]["role"] != "user":
        raise MedtuneError(f"messages[{len(out) - 1}]: the last message must come from the user")
    return out
