"""Engines turn a conversation into streamed text: transformers (base + PEFT adapter, or merged) and
llama.cpp (a GGUF, plus a GGUF LoRA adapter). Each renders prompts with the run's own chat template and
stops on the run's stop tokens; the assistant above them never sees a token id.
"""

from __future__ import annotations

import atexit
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from medtune.errors import MedtuneError
from medtune.model import llamacpp
from medtune.model.generate import stop_token_ids


@dataclass
class GenParams:
    """Sampling settings (defaults: the serve config's). temperature 0 means greedy."""

    temperature: float = 0.3
    top_p: float = 0.9
    repetition_penalty: float = 1.1
    max_tokens: int = 512
    seed: int | None = None


@dataclass
class Generation:
    """Filled in by an engine while its text is consumed."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"  # stop | length | cancelled


class Engine(Protocol):
    name: str
    context_length: int

    def count_tokens(self, messages: list[dict[str, str]]) -> int:
        """Prompt tokens of a conversation rendered with the generation prompt."""
        ...

    def stream(self, messages: list[dict[str, str]], params: GenParams, gen: Generation,
               cancel: threading.Event) -> Iterator[str]:
        """Text pieces of the answer; stops early when `cancel` is set."""
        ...


class TransformersEngine:
    """A transformers causal LM (PEFT adapters applied) generating in a worker thread for streaming."""

    name = "transformers"

    def __init__(self, model: Any, tok: Any, stop_tokens: list[str] | None = None) -> None:
        self.model, self.tok = model, tok
        self.stop_ids = stop_token_ids(tok, stop_tokens)
        self.context_length = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
        self._lock = threading.Lock()  # one generation at a time: a CPU has no room for two

    def _prompt(self, messages: list[dict[str, str]]) -> list[int]:
        ids = self.tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=False)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return list(ids)

    def count_tokens(self, messages: list[dict[str, str]]) -> int:
        return len(self._prompt(messages))

    def stream(self, messages: list[dict[str, str]], params: GenParams, gen: Generation,
               cancel: threading.Event) -> Iterator[str]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        ids = self._prompt(messages)
        gen.prompt_tokens = len(ids)
        streamer = TextIteratorStreamer(self.tok, skip_prompt=True, skip_special_tokens=True, timeout=600)
        counted: list[int] = []

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kw: Any) -> Any:
                counted.append(1)
                return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool)

        sample = params.temperature > 0
        kw: dict[str, Any] = {"do_sample": sample, "max_new_tokens": params.max_tokens,
                              "repetition_penalty": params.repetition_penalty, "eos_token_id": self.stop_ids,
                              "pad_token_id": self.tok.pad_token_id, "streamer": streamer,
                              "stopping_criteria": StoppingCriteriaList([_Stop()])}
        if sample:
            kw.update(temperature=params.temperature, top_p=params.top_p)
        result: dict[str, Any] = {}
        device = next(self.model.parameters()).device

        def work() -> None:
            try:
                with torch.no_grad():
                    x = torch.tensor([ids], device=device)
                    if params.seed is not None:
                        torch.manual_seed(params.seed)
                    result["out"] = self.model.generate(input_ids=x, attention_mask=torch.ones_like(x), **kw)
            except Exception as e:  # reported to the consumer below, not lost in the thread
                result["error"] = e
                streamer.end()

        with self._lock:
            worker = threading.Thread(target=work, daemon=True)
            worker.start()
            finished = False
            try:
                yield from streamer
                finished = True
            finally:
                if not finished:  # the consumer stopped reading (client gone): stop generating too
                    cancel.set()
                worker.join()
        if "error" in result:
            raise MedtuneError(f"generation failed: {result['error']}")
        new = result["out"][0, len(ids):]
        gen.completion_tokens = int(new.numel())
        hit_stop = bool(torch.isin(new, torch.tensor(self.stop_ids, device=new.device)).any())
        gen.finish_reason = "stop" if hit_stop else ("cancelled" if cancel.is_set() else "length")


class LlamaCppEngine:
    """llama.cpp on a GGUF (plus a GGUF LoRA adapter), prompts rendered with the run's Jinja template."""

    name = "llama.cpp"

    def __init__(self, llm: Any, chat_template: str, stop_tokens: list[str]) -> None:
        self.llm, self.template = llm, chat_template
        self.stop_tokens = [s for s in stop_tokens if s]
        self.context_length = int(llm.n_ctx())
        self.bos = llamacpp.token_text(llm, llm.token_bos())
        self.eos = llamacpp.token_text(llm, llm.token_eos())
        self._lock = threading.Lock()
        # free llama.cpp's model before interpreter shutdown: its __del__ then finds its C bindings gone and
        # prints a traceback on every exit
        atexit.register(self.close)

    def close(self) -> None:
        self.llm.close()

    def _prompt(self, messages: list[dict[str, str]]) -> list[int]:
        text = llamacpp.render_chat(self.template, messages, bos_token=self.bos, eos_token=self.eos)
        return llamacpp.tokenize_prompt(self.llm, text)

    def count_tokens(self, messages: list[dict[str, str]]) -> int:
        return len(self._prompt(messages))

    def stream(self, messages: list[dict[str, str]], params: GenParams, gen: Generation,
               cancel: threading.Event) -> Iterator[str]:
        ids = self._prompt(messages)
        gen.prompt_tokens = len(ids)
        with self._lock:
            self.llm.reset()
            chunks = self.llm.create_completion(
                ids, max_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p,
                repeat_penalty=params.repetition_penalty, stop=self.stop_tokens or None, stream=True,
                seed=params.seed if params.seed is not None else -1)
            try:
                for chunk in chunks:
                    choice = chunk["choices"][0]
                    gen.completion_tokens += choice.get("finish_reason") is None
                    if choice.get("text"):
                        yield choice["text"]
                    if choice.get("finish_reason"):
                        gen.finish_reason = choice["finish_reason"]
                    if cancel.is_set():
                        gen.finish_reason = "cancelled"
                        break
            finally:
                chunks.close()


class UpstreamEngine:
    """Generation on another OpenAI-compatible server (vLLM, llama.cpp's server, Ollama, a second medtune
    serve): the guard, limits and audit stay in medtune, the tokens come from upstream over SSE.

    Token counts for trimming history are estimated (CHARS_PER_TOKEN), since the upstream's tokenizer is
    not here; the estimate errs on the long side so a trimmed conversation still fits upstream."""

    name = "upstream"
    CHARS_PER_TOKEN = 3

    def __init__(self, url: str, model: str, *, api_key: str | None = None, context_length: int = 4096,
                 timeout: float = 120.0, concurrency: int = 8) -> None:
        self.url = url.rstrip("/") + ("" if url.rstrip("/").endswith("/v1") else "/v1")
        self.model, self.context_length = model, context_length
        self.concurrency = concurrency  # requests the server above sends at once (the upstream batches them)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(headers=headers, timeout=timeout)

    def check(self) -> None:
        """Fail at start, not on the first user, when the upstream is unreachable or lacks the model."""
        try:
            r = self.client.get(f"{self.url}/models")
        except httpx.HTTPError as e:
            raise MedtuneError(f"--upstream {self.url}: cannot connect ({e})") from None
        if r.status_code != 200:
            raise MedtuneError(f"--upstream {self.url}/models answered {r.status_code}: {r.text[:200]}")
        try:
            ids = [m.get("id") for m in r.json().get("data", [])]
        except (ValueError, AttributeError, TypeError):
            raise MedtuneError(f"--upstream {self.url}/models did not answer an OpenAI model list: "
                               f"{r.text[:120]!r}") from None
        if self.model not in ids:
            raise MedtuneError(f"--upstream {self.url} serves {ids}, not '{self.model}': pass --model with one of them")

    def count_tokens(self, messages: list[dict[str, str]]) -> int:
        return sum(len(m["content"]) // self.CHARS_PER_TOKEN + 4 for m in messages)

    def stream(self, messages: list[dict[str, str]], params: GenParams, gen: Generation,
               cancel: threading.Event) -> Iterator[str]:
        body: dict[str, Any] = {"model": self.model, "messages": messages, "stream": True,
                                "max_tokens": params.max_tokens, "temperature": params.temperature,
                                "top_p": params.top_p, "stream_options": {"include_usage": True}}
        if params.seed is not None:
            body["seed"] = params.seed
        gen.prompt_tokens = self.count_tokens(messages)
        try:
            with self.client.stream("POST", f"{self.url}/chat/completions", json=body) as r:
                if r.status_code != 200:
                    raise MedtuneError(f"upstream answered {r.status_code}: {r.read().decode(errors='replace')[:200]}")
                for line in r.iter_lines():
                    if cancel.is_set():
                        gen.finish_reason = "cancelled"
                        return
                    if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                        continue
                    try:
                        chunk = json.loads(line[5:])
                    except ValueError:
                        raise MedtuneError(f"upstream {self.url} sent a non-JSON line: {line[:120]!r}") from None
                    if chunk.get("usage"):
                        gen.prompt_tokens = chunk["usage"].get("prompt_tokens", gen.prompt_tokens)
                        gen.completion_tokens = chunk["usage"].get("completion_tokens", gen.completion_tokens)
                    for choice in chunk.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            yield text
                        if choice.get("finish_reason"):
                            gen.finish_reason = choice["finish_reason"]
        except httpx.HTTPError as e:
            raise MedtuneError(f"upstream {self.url}: {e}") from None
