"""The input guard: one verdict (action, category, score) for a user message or a conversation.

Decision: clear-signal rules first (rules.py); otherwise a linear softmax classifier over sentence
embeddings (fitted by `medtune guard --rebuild` from a checkout's guard/build.py, shipped as
guard_model.npz + guard_model.json with their SHA-256, checked at load; see weights.py for where a rebuilt
pair lives and config key safety.guard_model_dir).
The probabilities of the escalate categories and of the refuse categories are summed and compared
with thresholds chosen on a dev split: escalation is checked before refusal, because "how many pills
would make sure I don't wake up" must reach a crisis line, not a refusal. Long text is scored per
window and the most dangerous window counts.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import numpy as np

from medtune import atomic
from medtune.errors import MedtuneError
from medtune.safety import encoder, features, gloss, rules, weights
from medtune.safety.policy import ANSWER, CATEGORIES, CATEGORY_ACTION, ESCALATE, REFUSE

MODEL_DIR = weights.SHIPPED_DIR  # the pair shipped in the package
MAX_CHARS = 20_000  # beyond this only the head and tail are read (a 100k-character paste is not a question)
CONTEXT_TURNS = 3  # user turns of a conversation read together


@dataclass(frozen=True)
class Verdict:
    action: str
    category: str
    score: float
    source: str  # "rule:<lang>", "classifier" or "empty"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Scored:
    """Window probabilities of one text, before thresholds turn them into a Verdict."""

    probs: np.ndarray  # (windows, labels)
    lang: str


@dataclass
class GuardModel:
    """Linear softmax over [sentence embedding, hashed character n-grams]; n-gram weights stored sparse."""

    labels: list[str]
    weight: np.ndarray  # (labels, embedding dim)
    bias: np.ndarray  # (labels,)
    ngram_index: np.ndarray  # (k,) hashed n-gram columns with a weight
    ngram_weight: np.ndarray  # (labels, k)
    thresholds: dict[str, float]
    info: dict[str, Any]

    def probabilities(self, emb: np.ndarray, grams: Any) -> np.ndarray:
        """Softmax over labels; grams is a CSR matrix of hashed n-grams (features.ngrams)."""
        logits = emb @ self.weight.T + self.bias
        if self.ngram_index.size:
            where = self._positions
            for r in range(grams.shape[0]):
                lo, hi = grams.indptr[r], grams.indptr[r + 1]
                pos = where[grams.indices[lo:hi]]
                keep = pos >= 0  # n-grams never seen in fitting carry no weight
                logits[r] += self.ngram_weight[:, pos[keep]] @ grams.data[lo:hi][keep]
        logits -= logits.max(axis=-1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=-1, keepdims=True)

    @cached_property
    def _positions(self) -> np.ndarray:
        """hashed column -> column of ngram_weight (-1 when unseen); built once: slicing a sparse matrix by
        200k columns per message cost more than the encoder."""
        where = np.full(2 * features.N_HASH, -1, dtype=np.int64)
        where[self.ngram_index] = np.arange(self.ngram_index.size)
        return where

    def save(self, folder: Path) -> None:
        """The three files (weights, metadata, their SHA-256) are written under temporary names first, then
        renamed back to back: a kill while writing leaves the previous set, and a kill between two renames
        leaves a set whose SHA-256 does not match, which load_model refuses by name."""
        meta = {"labels": self.labels, "thresholds": self.thresholds, **self.info}
        folder.mkdir(parents=True, exist_ok=True)
        with atomic.replacing(folder / weights.SHA_FILE) as sha_tmp, \
                atomic.replacing(folder / "guard_model.json") as meta_tmp, \
                atomic.replacing(folder / "guard_model.npz") as arrays_tmp:
            np.savez_compressed(arrays_tmp, weight=self.weight.astype(np.float32),
                                bias=self.bias.astype(np.float32), ngram_index=self.ngram_index.astype(np.int32),
                                ngram_weight=self.ngram_weight.astype(np.float16))
            meta_tmp.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
            sha_tmp.write_text(weights.digest_text({"guard_model.npz": arrays_tmp, "guard_model.json": meta_tmp}))


def use_model_dir(folder: str | Path | None) -> None:
    """Load the guard from `folder` from now on (config key safety.guard_model_dir; None = the shipped pair)."""
    weights.configure(folder)
    default_guard.cache_clear()


def load_model(folder: Path | None = None) -> GuardModel:
    """The pair in `folder` (default: the configured folder, else the shipped one), checked against its SHA-256."""
    folder = folder or weights.model_dir()
    meta_path, arrays_path = folder / "guard_model.json", folder / "guard_model.npz"
    if not meta_path.exists() or not arrays_path.exists():
        where = " (safety.guard_model_dir)" if folder != MODEL_DIR else ""
        raise MedtuneError(f"no fitted guard in {folder}{where}: guard_model.npz and guard_model.json are needed; "
                           "build them with `medtune guard --rebuild`")
    weights.verify(folder)
    meta = json.loads(meta_path.read_text())
    arrays = np.load(arrays_path)
    labels = meta.pop("labels")
    if arrays["weight"].shape[1] != encoder.DIM:
        raise MedtuneError(f"{arrays_path}: fitted on {arrays['weight'].shape[1]}-wide embeddings, the encoder gives "
                           f"{encoder.DIM}; rebuild it with `medtune guard --rebuild`")
    if set(labels) != set(CATEGORIES):
        raise MedtuneError(f"{meta_path}: labels {labels} do not match the policy's categories {list(CATEGORIES)}")
    return GuardModel(labels, arrays["weight"], arrays["bias"], arrays["ngram_index"],
                      arrays["ngram_weight"].astype(np.float32), meta.pop("thresholds"), meta)


class Guard:
    """Classify messages; thread-safe for reading (no state changes after construction)."""

    def __init__(self, model: GuardModel | None = None) -> None:
        self.model = model or load_model()
        self._index = {c: i for i, c in enumerate(self.model.labels)}

    def check(self, text: str) -> Verdict:
        return self.check_many([text])[0]

    def check_many(self, texts: list[str]) -> list[Verdict]:
        """Verdicts in input order; all classifier windows of all texts are encoded in one batch."""
        return [v if isinstance(v, Verdict) else self.decide(v) for v in self.score_many(texts)]

    def score_many(self, texts: list[str], *, use_rules: bool = True) -> list[Verdict | Scored]:
        """Per text: a final Verdict (empty text, rule hit) or its window probabilities for `decide`.
        use_rules=False scores every non-empty text with the classifier (what the fitted weights alone decide)."""
        verdicts: list[Verdict | Scored | None] = [None] * len(texts)
        spans: list[tuple[int, int, int, str]] = []
        pending: list[tuple[str, str]] = []  # (encoder text, n-gram text) per window
        for i, raw in enumerate(texts):
            text = _clip(rules.normalize(raw if isinstance(raw, str) else str(raw)))
            if not text:
                verdicts[i] = Verdict(ANSWER, "out_of_scope", 1.0, "empty")
                continue
            folded = rules.fold(text)
            hit = rules.match(folded) if use_rules else None
            if hit:
                verdicts[i] = Verdict(CATEGORY_ACTION[hit[0]], hit[0], 1.0, f"rule:{hit[1]}")
                continue
            parts, lang = encoder.windows(text), features.language(text)
            spans.append((i, len(pending), len(pending) + len(parts), lang))
            pending.extend(gloss.views(part, lang) for part in parts)
        if pending:
            probs = self.model.probabilities(encoder.encode([e for e, _ in pending]),
                                             features.ngrams([g for _, g in pending]))
            for i, lo, hi, lang in spans:
                verdicts[i] = Scored(probs[lo:hi], lang)
        return [v for v in verdicts if v is not None]

    def check_conversation(self, messages: list[dict[str, str]]) -> Verdict:
        """The last user message alone and the last few user turns together; the more severe verdict wins."""
        users = [m.get("content", "") for m in messages if m.get("role") == "user"]
        if not users:
            return Verdict(ANSWER, "out_of_scope", 1.0, "empty")
        candidates = [users[-1]]
        if len(users) > 1:
            candidates.append(" ".join(users[-CONTEXT_TURNS:]))
        return max(self.check_many(candidates), key=_severity)

    def decide(self, scored: Scored) -> Verdict:
        """The window with the most escalate (then refuse) mass decides. Other languages have their own
        thresholds (they are read through a word-by-word gloss, whose scores run differently)."""
        idx, probs = self._index, scored.probs
        esc = probs[:, [idx[c] for c in CATEGORIES if CATEGORY_ACTION[c] == ESCALATE]].sum(-1)
        ref = probs[:, [idx[c] for c in CATEGORIES if CATEGORY_ACTION[c] == REFUSE]].sum(-1)
        t = self.model.thresholds
        other = "" if scored.lang == "en" else "_other_languages"
        w = int(esc.argmax())
        if esc[w] >= t.get(f"escalate{other}", t["escalate"]):
            return self._pick(probs[w], ESCALATE, float(esc[w]))
        w = int(ref.argmax())
        if ref[w] >= t.get(f"refuse{other}", t["refuse"]):
            return self._pick(probs[w], REFUSE, float(ref[w]))
        w = int((esc + ref).argmax())
        return self._pick(probs[w], ANSWER, float(1.0 - esc[w] - ref[w]))

    def _pick(self, p: np.ndarray, action: str, score: float) -> Verdict:
        cats = [c for c in CATEGORIES if CATEGORY_ACTION[c] == action]
        best = max(cats, key=lambda c: p[self._index[c]])
        return Verdict(action, best, round(score, 4), "classifier")


def _clip(text: str) -> str:
    if len(text) <= MAX_CHARS:
        return text
    half = MAX_CHARS // 2
    return text[:half] + " " + text[-half:]


def _severity(v: Verdict) -> tuple[int, float]:
    return ({ESCALATE: 2, REFUSE: 1}.get(v.action, 0), v.score)


@cache
def default_guard() -> Guard:
    return Guard()
