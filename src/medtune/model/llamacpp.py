"""llama.cpp through llama-cpp-python: load a GGUF (plus a GGUF LoRA adapter) and render prompts.

Prompts are rendered here with the run's own Jinja chat template and tokenized with special tokens
on, instead of trusting whatever template llama-cpp-python would guess from the GGUF: the template
and stop tokens used in training are then, by construction, the ones used at inference.
"""

from __future__ import annotations

import importlib.util
import json
import os
from functools import cache
from pathlib import Path
from typing import Any

from medtune.data.tokenize import with_system
from medtune.errors import MedtuneError
from medtune.progress import progress


def available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def load_llama(gguf: str | Path, *, lora: str | Path | None = None, n_ctx: int = 2048,
               n_threads: int | None = None, seed: int = 0) -> Any:
    """A llama.cpp model (quiet), with a GGUF LoRA adapter applied when given."""
    if not available():
        raise MedtuneError("the llama.cpp engine needs llama-cpp-python: pip install llama-cpp-python")
    from llama_cpp import Llama

    path = Path(gguf)
    if not path.is_file():
        raise MedtuneError(f"GGUF file not found: {path}")
    if lora is not None and not Path(lora).is_file():
        raise MedtuneError(f"GGUF LoRA adapter not found: {lora}")
    threads = n_threads or max(1, os.cpu_count() or 1)
    try:
        return Llama(model_path=str(path), lora_path=str(lora) if lora else None, n_ctx=n_ctx, n_threads=threads,
                     n_threads_batch=threads, seed=seed, verbose=False)
    except (ValueError, RuntimeError) as e:
        raise MedtuneError(f"llama.cpp could not load {path}" + (f" with adapter {lora}" if lora else "")
                           + f": {e}") from None


def gguf_metadata(llm: Any) -> dict[str, str]:
    return dict(getattr(llm, "metadata", {}) or {})


def token_text(llm: Any, token_id: int) -> str:
    """The text of one token (special tokens included), e.g. the EOS string a template needs."""
    if token_id is None or token_id < 0:
        return ""
    return llm.detokenize([token_id], special=True).decode("utf-8", errors="replace")


@cache
def _jinja_env() -> Any:
    """A sandboxed Jinja environment like the one transformers renders chat templates with."""
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = lambda x, indent=None, ensure_ascii=False: json.dumps(x, indent=indent,
                                                                                  ensure_ascii=ensure_ascii)
    env.globals["raise_exception"] = raise_exception
    return env


def render_chat(template: str, messages: list[dict[str, str]], *, add_generation_prompt: bool = True,
                bos_token: str = "", eos_token: str = "") -> str:
    """The prompt text a chat template makes of a conversation (as transformers' apply_chat_template)."""
    from jinja2.exceptions import TemplateError

    try:
        return _jinja_env().from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                                         bos_token=bos_token, eos_token=eos_token)
    except TemplateError as e:
        raise MedtuneError(f"the chat template could not render this conversation: {e}") from None


def tokenize_prompt(llm: Any, text: str) -> list[int]:
    """Prompt tokens: special tokens parsed, no extra BOS (a template that wants one renders it)."""
    return llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)


def greedy_answers(llm: Any, template: str, conversations: list[list[dict[str, str]]], system_prompt: str,
                   max_new_tokens: int, *, stop_tokens: list[str], repetition_penalty: float = 1.0,
                   desc: str = "generating") -> tuple[list[str], list[bool]]:
    """(answers, stopped) by greedy decoding on llama.cpp, one conversation at a time.

    The evaluation's counterpart of `model.generate.greedy_generate`: same prompts (the run's template and
    system prompt), same budget, `stopped` True when the model ended its turn (a stop token or EOS) rather
    than running out of tokens. llama.cpp is ~6x faster than transformers on a 2-core CPU, which is what
    keeps base-vs-tuned answers inside the demo's time."""
    bos, eos = token_text(llm, llm.token_bos()), token_text(llm, llm.token_eos())
    stops = [s for s in stop_tokens if s] or [eos]
    answers: list[str] = []
    stopped: list[bool] = []
    for conv in progress(conversations, desc=desc, unit="answer", leave=False):
        text = render_chat(template, with_system(conv, system_prompt), bos_token=bos, eos_token=eos)
        ids = tokenize_prompt(llm, text)
        llm.reset()
        out = llm.create_completion(ids, max_tokens=max_new_tokens, temperature=0.0, top_k=1,
                                    repeat_penalty=repetition_penalty, stop=stops)
        choice = out["choices"][0]
        answers.append(choice["text"].strip())
        stopped.append(choice.get("finish_reason") == "stop")
    return answers, stopped
