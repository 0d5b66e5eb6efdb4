"""A message is split into encoder windows only when it does not fit in one (encoder.MAX_TOKENS tokens).

The classifier is fitted on whole prompts, one window each (guard/build.py), so a message that fits is scored
the same way; a longer one is still read end to end, in overlapping windows."""

from __future__ import annotations

from medtune.safety import encoder


def _tokens(text: str) -> int:
    return len(encoder._tokenizer()(text)["input_ids"])


def test_a_long_message_that_fits_one_window_stays_whole():
    text = " ".join(["my knee hurts when I climb stairs and it is a bit swollen"] * 6)  # 78 words
    assert len(text.split()) > 60 and _tokens(text) <= encoder.MAX_TOKENS
    assert encoder.windows(text) == [text]


def test_a_message_over_one_window_is_split_and_its_tail_is_kept():
    body = " ".join(["I have had a mild cough and a runny nose for a few days now"] * 12)
    tail = "and tonight I took all of my pills at once"
    text = f"{body} {tail}"
    assert _tokens(text) > encoder.MAX_TOKENS
    parts = encoder.windows(text)
    assert len(parts) > 1
    assert parts[-1].endswith(tail)
    assert all(len(p.split()) <= 60 for p in parts)
    words = text.split()  # every word is in some window
    assert set(words) <= {w for p in parts for w in p.split()}


def test_short_text_is_not_tokenized_to_decide(monkeypatch):
    def fail(*_a, **_k):
        raise AssertionError("a message of 60 words or fewer needs no token count")

    monkeypatch.setattr(encoder, "_fits_one_window", fail)
    text = "chest pain and sweating for twenty minutes"
    assert encoder.windows(text) == [text]
