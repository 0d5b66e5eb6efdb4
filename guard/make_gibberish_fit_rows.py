"""Seeded generator of non-text input (labelled out_of_scope) for guard/fit/gibberish_round8.jsonl.

Run from anywhere in a checkout: `python guard/make_gibberish_fit_rows.py` (same seed, same file). Keyboard mash,
repeated letters, random words, other scripts, emoji, lorem ipsum, numbers and punctuation, so that nonsense
(a 100k-character paste of one letter, a page of mixed scripts) is answered, not escalated or refused.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).parent / "fit" / "gibberish_round8.jsonl"
LETTERS = "abcdefghijklmnopqrstuvwxyz"
KEYBOARD = ["asdf", "qwer", "jkl;", "zxcv", "hjkl", "uiop", "fghj", "wasd", "poiu", "lkjh"]
SCRIPTS = ["привет мир", "как дела", "你好世界", "谢谢你", "مرحبا بالعالم", "שלום עולם", "こんにちは", "안녕하세요",
           "γειά σου κόσμε", "नमस्ते दुनिया", "สวัสดีครับ", "merhaba dünya", "xin chào", "cześć świecie"]
EMOJI = ["😀", "🙏", "🔥", "💊", "❤️", "😂", "👍", "🤔", "✨", "🎉"]
LOREM = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore".split()
PUNCT = "!?.,;:-_=+*#@$%^&()[]{}<>/\\|~"


def one(rng: random.Random, kind: int) -> str:
    """One nonsense input of the given kind (0-9)."""
    def many(pool: list[str] | str, lo: int, hi: int, sep: str = " ") -> str:
        return sep.join(rng.choice(pool) for _ in range(rng.randint(lo, hi)))

    word = lambda: many(LETTERS, 1, 9, "")  # noqa: E731
    makers = [
        lambda: rng.choice(LETTERS) * rng.randint(3, 3000),
        lambda: many(LETTERS, 3, 60, ""),
        lambda: " ".join(word() for _ in range(rng.randint(2, 80))),
        lambda: many(KEYBOARD, 1, 40),
        lambda: many(SCRIPTS, 1, 60),
        lambda: many(EMOJI, 1, 50, ""),
        lambda: many(LOREM, 3, 200),
        lambda: " ".join(str(rng.randint(0, 99999)) for _ in range(rng.randint(1, 50))),
        lambda: many(PUNCT, 1, 80, ""),
        lambda: many(SCRIPTS + LOREM + KEYBOARD + EMOJI, 2, 120),
    ]
    return makers[kind]()


def main(n: int = 200) -> None:
    rng = random.Random(8)
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    while len(rows) < n:
        text = one(rng, len(rows) % 10)
        if text.lower() not in seen:
            seen.add(text.lower())
            rows.append({"id": f"fit-g8-{len(rows) + 1:04d}", "prompt": text, "category": "out_of_scope",
                         "lang": "en", "style": "gibberish"})
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"{OUT}: {len(rows)} rows")


if __name__ == "__main__":
    main()
