"""Per-row cleaning: unicode and whitespace normalisation, PHI scrub, and quality filters.

Pure functions over one conversation so HF `datasets.map` can run them in parallel worker processes.
A row that fails a filter gets a reject reason; its text is never stored anywhere.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from medtune.data.formats import Conversation
from medtune.data.phi import scrub

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\u200c\u200d\u2060\ufeff]")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_BLANK_LINES = re.compile(r"\n\s*\n(\s*\n)+")
_WORD = re.compile(r"\w+")
MIN_QUESTION_CHARS = 3


def normalize_text(text: str) -> str:
    """NFC, no control or zero-width characters, single spaces, at most one blank line in a row."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


def question_key(text: str) -> str:
    """A case/punctuation-insensitive key: the same question always maps to the same split."""
    return hashlib.sha1(" ".join(_WORD.findall(text.lower())).encode()).hexdigest()


def first_user(conv: Conversation) -> str:
    return next((m["content"] for m in conv if m["role"] == "user"), "")


def assistant_text(conv: Conversation) -> str:
    return "\n".join(m["content"] for m in conv if m["role"] == "assistant")


def clean_conversation(conv: Conversation, *, phi_scrub: bool, min_answer_chars: int,
                       max_answer_chars: int) -> tuple[Conversation, dict[str, int], str]:
    """Returns (cleaned conversation, PHI counts by kind, reject reason or '')."""
    phi: dict[str, int] = {}
    out: Conversation = []
    for m in conv:
        text = normalize_text(m["content"])
        if phi_scrub and m["role"] != "system":
            text, found = scrub(text)
            for kind, n in found.items():
                phi[kind] = phi.get(kind, 0) + n
        out.append({"role": m["role"], "content": text})
    question, answer = first_user(out), assistant_text(out)
    if len(question) < MIN_QUESTION_CHARS:
        return out, phi, "question too short"
    if len(answer) < min_answer_chars:
        return out, phi, f"answer shorter than {min_answer_chars} characters"
    if len(answer) > max_answer_chars:
        return out, phi, f"answer longer than {max_answer_chars} characters"
    return out, phi, ""
