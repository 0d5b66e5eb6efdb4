"""One pure function per dataset format: a raw row becomes one conversation (a list of messages).

Every format goes to the same interchange type first; tokenization is a later, model-specific step.
A column map renames fields for datasets that spell them differently (ChatDoctor's input/output,
MedMCQA's opa..opd). A row that cannot be converted raises `RowError` with a reason the manifest records.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": str}
Conversation = list[Message]


class RowError(ValueError):
    """This row cannot become a conversation; the message says why (e.g. missing field 'answer')."""


# Field names each format looks for, in order of preference; a column map puts its own name first.
QA_QUESTION = ("question", "Question", "input", "query", "Patient", "patient", "instruction", "prompt")
QA_ANSWER = ("answer", "Answer", "output", "response", "Doctor", "doctor", "completion", "long_answer")
LETTERS = "ABCDEFGHIJ"


def _text(row: dict[str, Any], names: tuple[str, ...], field: str, *, required: bool = True) -> str:
    for name in names:
        value = row.get(name)
        if value is None:
            continue
        if not isinstance(value, (str, int, float)):
            raise RowError(f"field '{name}' is not text")
        text = str(value).strip()
        if text:
            return text
    if required:
        present = [n for n in names if n in row]
        raise RowError(f"missing field '{field}'" if not present else f"empty field '{present[0]}'")
    return ""


def _names(columns: dict[str, str], key: str, defaults: tuple[str, ...]) -> tuple[str, ...]:
    return (columns[key],) if key in columns else defaults


def qa(row: dict[str, Any], columns: dict[str, str]) -> Conversation:
    """Open question/answer rows (MedQuAD, WikiDoc, ChatDoctor, built-in)."""
    q = _text(row, _names(columns, "question", QA_QUESTION), "question")
    a = _text(row, _names(columns, "answer", QA_ANSWER), "answer")
    return [{"role": "user", "content": q}, {"role": "assistant", "content": a}]


def alpaca(row: dict[str, Any], columns: dict[str, str]) -> Conversation:
    """instruction (+ input) -> output (Medical Meadow, alpaca-style files)."""
    instruction = _text(row, _names(columns, "instruction", ("instruction",)), "instruction")
    extra = _text(row, _names(columns, "input", ("input",)), "input", required=False)
    out = _text(row, _names(columns, "output", ("output", "response")), "output")
    user = f"{instruction}\n\n{extra}" if extra else instruction
    return [{"role": "user", "content": user}, {"role": "assistant", "content": out}]


_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "chatgpt": "assistant", "system": "system"}


def _turns(items: Any, role_key: str, text_key: str, field: str) -> Conversation:
    if not isinstance(items, list) or not items:
        raise RowError(f"field '{field}' is not a non-empty list of turns")
    conv: Conversation = []
    for i, turn in enumerate(items):
        if not isinstance(turn, dict) or role_key not in turn or text_key not in turn:
            raise RowError(f"{field}[{i}] lacks '{role_key}'/'{text_key}'")
        role = _SHAREGPT_ROLES.get(str(turn[role_key]).lower())
        if role is None:
            raise RowError(f"{field}[{i}] has unknown role {turn[role_key]!r}")
        conv.append({"role": role, "content": str(turn[text_key] or "").strip()})
    return _check_turns(conv, field)


def _check_turns(conv: Conversation, field: str) -> Conversation:
    if not any(m["role"] == "assistant" and m["content"] for m in conv):
        raise RowError(f"field '{field}' has no assistant turn")
    if not any(m["role"] == "user" and m["content"] for m in conv):
        raise RowError(f"field '{field}' has no user turn")
    return conv


def sharegpt(row: dict[str, Any], columns: dict[str, str]) -> Conversation:
    """{"conversations": [{"from": "human", "value": ...}, {"from": "gpt", ...}]}"""
    key = columns.get("conversations", "conversations")
    return _turns(row.get(key), "from", "value", key)


def messages(row: dict[str, Any], columns: dict[str, str]) -> Conversation:
    """OpenAI chat format: {"messages": [{"role": "user", "content": ...}, ...]}"""
    key = columns.get("messages", "messages")
    return _turns(row.get(key), "role", "content", key)


def mcq_options(row: dict[str, Any], columns: dict[str, str]) -> dict[str, str]:
    """Options as {letter: text} from a dict, a list, or opa/opb/... columns."""
    key = columns.get("options", "options")
    raw = row.get(key, row.get("choices"))
    if raw is None and "opa" in row:
        raw = [row.get(k) for k in ("opa", "opb", "opc", "opd", "ope") if row.get(k) is not None]
    if isinstance(raw, dict):
        opts = {str(k).strip().upper(): str(v).strip() for k, v in raw.items()}
    elif isinstance(raw, list):
        opts = {LETTERS[i]: str(v).strip() for i, v in enumerate(raw[: len(LETTERS)])}
    else:
        raise RowError(f"missing field '{key}'")
    if len(opts) < 2 or any(not v for v in opts.values()):
        raise RowError(f"field '{key}' needs at least two non-empty options")
    return dict(sorted(opts.items()))


def mcq_answer(row: dict[str, Any], columns: dict[str, str], opts: dict[str, str]) -> str:
    """The answer key as a letter; accepts a letter, a 0-based index (MedMCQA 'cop'), or the option text."""
    key = columns.get("answer", "answer")
    value = row.get(key, row.get("answer_idx", row.get("cop")))
    if value is None or (isinstance(value, str) and not value.strip()):
        raise RowError(f"missing field '{key}' (the answer key)")
    if isinstance(value, int) and not isinstance(value, bool):
        letter = LETTERS[value] if 0 <= value < len(LETTERS) else ""
    else:
        text = str(value).strip()
        letter = text.upper() if text.upper() in opts else next((k for k, v in opts.items() if v == text), "")
    if letter not in opts:
        raise RowError(f"answer {value!r} is not one of the options {', '.join(opts)}")
    return letter


def mcq(row: dict[str, Any], columns: dict[str, str]) -> Conversation:
    """Multiple choice (MedQA, MedMCQA, MMLU) as a chat turn; evaluation scores it separately."""
    q = _text(row, _names(columns, "question", ("question",)), "question")
    opts = mcq_options(row, columns)
    letter = mcq_answer(row, columns, opts)
    body = q + "\n" + "\n".join(f"{k}. {v}" for k, v in opts.items())
    return [{"role": "user", "content": body + "\nAnswer with the letter of the best option."},
            {"role": "assistant", "content": f"The answer is {letter}. {opts[letter]}"}]


YESNO = ("yes", "no", "maybe")


def yesno(row: dict[str, Any], columns: dict[str, str]) -> Conversation:
    """PubMedQA-style: question + context -> yes/no/maybe with the long answer as explanation."""
    q = _text(row, _names(columns, "question", ("question", "QUESTION")), "question")
    ctx = row.get(columns.get("context", "context"))
    if isinstance(ctx, dict):  # hub PubMedQA: {"contexts": [...], "labels": [...]}
        ctx = ctx.get("contexts") or ""
    if isinstance(ctx, list):
        ctx = " ".join(map(str, ctx))
    decision = _text(row, _names(columns, "answer", ("answer", "final_decision")), "answer").lower()
    if decision not in YESNO:
        raise RowError(f"answer {decision!r} is not yes, no or maybe")
    long = _text(row, ("long_answer",), "long_answer", required=False)
    user = f"Context: {str(ctx).strip()}\n\nQuestion: {q}" if ctx else q
    reply = decision.capitalize() + "." + (f" {long}" if long else "")
    return [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]


def safety(row: dict[str, Any], columns: dict[str, str]) -> Conversation:
    """A harmful request with the safe response a model should give (MedSafetyBench)."""
    p = _text(row, _names(columns, "prompt", ("prompt", "question")), "prompt")
    r = _text(row, _names(columns, "safe_response", ("safe_response", "response")), "safe_response")
    return [{"role": "user", "content": p}, {"role": "assistant", "content": r}]


def dialog(row: dict[str, Any], columns: dict[str, str]) -> Conversation:
    """MedDialog-style: "utterances": ["patient: ...", "doctor: ...", ...]."""
    key = columns.get("utterances", "utterances")
    items = row.get(key)
    if not isinstance(items, list) or not items:
        raise RowError(f"field '{key}' is not a non-empty list of utterances")
    conv: Conversation = []
    for i, text in enumerate(items):
        speaker, _, said = str(text).partition(":")
        role = {"patient": "user", "doctor": "assistant"}.get(speaker.strip().lower())
        if role is None:
            raise RowError(f"{key}[{i}] does not start with 'patient:' or 'doctor:'")
        conv.append({"role": role, "content": said.strip()})
    return _check_turns(conv, key)


FORMATS: dict[str, Callable[[dict[str, Any], dict[str, str]], Conversation]] = {
    "qa": qa, "alpaca": alpaca, "sharegpt": sharegpt, "messages": messages,
    "mcq": mcq, "yesno": yesno, "safety": safety, "dialog": dialog,
}

EXPECTED_FIELDS = {
    "qa": "question + answer (or input + output)",
    "alpaca": "instruction (+ input) + output",
    "sharegpt": "conversations: [{from, value}, …]",
    "messages": "messages: [{role, content}, …]",
    "mcq": "question + options + answer",
    "yesno": "question + context + answer (yes/no/maybe)",
    "safety": "prompt + safe_response",
    "dialog": "utterances: ['patient: …', 'doctor: …']",
}


def detect_format(fields: set[str]) -> str | None:
    """Guess a format from a row's field names; None when nothing fits."""
    if "messages" in fields:
        return "messages"
    if "conversations" in fields:
        return "sharegpt"
    if "utterances" in fields:
        return "dialog"
    if "prompt" in fields and "safe_response" in fields:
        return "safety"
    if ("options" in fields or "choices" in fields or "opa" in fields) and (
        fields & {"answer", "answer_idx", "cop"}
    ):
        return "mcq"
    if "question" in fields and "context" in fields and fields & {"answer", "final_decision"}:
        return "yesno"
    if "instruction" in fields and "output" in fields:
        return "alpaca"
    if fields & set(QA_QUESTION) and fields & set(QA_ANSWER):
        return "qa"
    if fields & set(QA_QUESTION):
        return "qa"  # answer missing: rows are rejected one by one with 'missing field answer'
    return None


def expected_fields_text() -> str:
    return "; ".join(f"{k}: {v}" for k, v in EXPECTED_FIELDS.items())
