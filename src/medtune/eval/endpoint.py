"""`medtune eval --endpoint URL`: the evaluation suite against any OpenAI-compatible chat server.

The same files and figures as a local evaluation where a server allows them: open QA by the ROUGE,
BLEU and format adherence of greedy answers (no perplexity: servers do not return the reference's
log-likelihood), multiple choice by generation (the `acc_gen` protocol: a short greedy answer read by
the letter extractor), and safety prompts by the action the server took. medtune's own server says
what its guard did in the `medtune` field of each completion; for any other server (llama.cpp, vLLM,
Ollama) the written rubric reads the answer. Requests are sent one at a time with temperature 0.

Run as: medtune eval --endpoint http://127.0.0.1:8000/v1 --api-key KEY --data FILE ... --output DIR
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from medtune.data.formats import RowError, mcq_options, qa
from medtune.errors import MedtuneError
from medtune.eval import mcq_variants
from medtune.eval.mcq import mcq_items
from medtune.eval.safety import policy_rows, sample, scored_entry
from medtune.eval.suite import GEN_BUDGET, GEN_TOKENS, overlap_figures, read_eval_file, write_report
from medtune.progress import progress
from medtune.safety import redteam
from medtune.safety.policy import ESCALATE, REFUSE
from medtune.safety.rubric import judge
from medtune.stats import bootstrap_ci

TIMEOUT_S = 300.0


@dataclass
class Answer:
    text: str
    stopped: bool
    action: str | None  # what the server's own guard did, when it says (medtune serve)


class Endpoint:
    """A thin client of POST {url}/chat/completions (httpx; one request at a time)."""

    def __init__(self, url: str, api_key: str | None = None, model: str | None = None) -> None:
        self.url = url.rstrip("/")
        if not self.url.endswith("/v1"):
            self.url += "/v1"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(headers=headers, timeout=TIMEOUT_S)
        self.model = model or self._first_model()

    def _first_model(self) -> str:
        try:
            r = self.client.get(f"{self.url}/models")
        except httpx.HTTPError as e:
            raise MedtuneError(f"--endpoint {self.url}: cannot connect ({e}); is the server running?") from None
        if r.status_code == 401:
            raise MedtuneError(f"--endpoint {self.url}: 401 unauthorized; pass --api-key")
        if r.status_code != 200:
            raise MedtuneError(f"--endpoint {self.url}/models answered {r.status_code}: {r.text[:200]}")
        data = r.json().get("data") or []
        if not data:
            raise MedtuneError(f"--endpoint {self.url}/models lists no model")
        return str(data[0]["id"])

    def ask(self, content: str, max_tokens: int) -> Answer:
        body = {"model": self.model, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens,
                "temperature": 0}
        try:
            r = self.client.post(f"{self.url}/chat/completions", json=body)
        except httpx.HTTPError as e:
            raise MedtuneError(f"--endpoint {self.url}: request failed ({e})") from None
        if r.status_code != 200:
            raise MedtuneError(f"--endpoint answered {r.status_code}: {r.text[:200]}")
        out = r.json()
        choice = out["choices"][0]
        action = (out.get("medtune") or {}).get("action")
        return Answer(choice["message"].get("content") or "", choice.get("finish_reason") == "stop", action)


def _fig(values: list[float]) -> dict[str, Any]:
    v, lo, hi = bootstrap_ci(values)
    return {"value": v, "ci95": [lo, hi]}


def _qa(ep: Endpoint, rows: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, str]]]:
    items, rejects = [], []
    for i, row in enumerate(rows[:GEN_BUDGET]):
        try:
            items.append(qa(row, {}))
        except RowError as e:
            rejects.append({"id": str(row.get("id", i + 1)), "reason": str(e)})
    answers = [ep.ask(c[0]["content"], GEN_TOKENS)
               for c in progress(items, desc="endpoint answers", unit="question", leave=False)]
    figs, _ = overlap_figures([c[1]["content"] for c in items], [a.text for a in answers], [a.stopped for a in answers])
    return figs, rejects


def _mcq(ep: Endpoint, rows: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, str]]]:
    items, rejects = mcq_items(rows)
    correct, unparsed = [], 0
    for idx, prompt, _, gold in progress(items, desc="endpoint multiple choice", unit="question", leave=False):
        ans = ep.ask(f"{prompt.rsplit('Answer:', 1)[0]}{mcq_variants.INSTRUCTION}", mcq_variants.GEN_TOKENS)
        opts = {k: str(v) for k, v in mcq_options(rows[idx], {}).items()}
        got = mcq_variants.extract_letter(ans.text, opts)
        unparsed += got is None
        correct.append(float(got is not None and list(opts).index(got) == gold))
    rate = unparsed / max(len(items), 1)
    return {"acc_gen": _fig(correct), "unparsed_rate": {"value": rate, "ci95": [rate, rate]}}, rejects


def safety_actions(ep: Endpoint, rows: list[dict[str, Any]], max_tokens: int = 64) -> list[str]:
    """The server's own guard action when it reports one, else the rubric's reading of the answer."""
    acts = []
    for r in progress(rows, desc="endpoint safety", unit="prompt", leave=False):
        ans = ep.ask(r["prompt"], max_tokens)
        acts.append(ans.action if ans.action in (ESCALATE, REFUSE) else judge(ans.text))
    return acts


def evaluate_endpoint(url: str, api_key: str | None, data: list[str], *, limit: int | None, output: Path,
                      suite: str | None = None, model: str | None = None, split: str = "gate") -> dict[str, Any]:
    """Score every file (and a red-team split with suite="safety") through the endpoint."""
    ep = Endpoint(url, api_key, model)
    report: dict[str, Any] = {"model": f"{ep.model} @ {ep.url}", "base": None, "endpoint": ep.url, "datasets": {}}
    if suite == "safety":
        rows = sample(policy_rows(redteam.load_split(split)), limit or 60)
        report["suite"], report["split"] = "safety", split
        report["datasets"]["redteam-endpoint"] = scored_entry(rows, safety_actions(ep, rows))
    for path in data:
        kind, rows, rejects = read_eval_file(Path(path), limit)
        name = Path(path).stem
        if kind == "safety":
            prows = policy_rows(rows)
            report["datasets"][name] = {**scored_entry(prows, safety_actions(ep, prows)), "rejects": rejects}
            continue
        if kind == "qa":
            metrics, more = _qa(ep, rows)
        elif kind == "mcq":
            metrics, more = _mcq(ep, rows)
        else:
            raise MedtuneError(f"{path}: {kind} files need log-likelihoods; --endpoint scores qa, mcq and safety files")
        report["datasets"][name] = {"kind": kind, "n": len(rows), "metrics": metrics, "rejects": rejects + more}
    write_report(report, output)
    return report
