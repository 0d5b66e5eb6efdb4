"""Greedy answers of a base model and its tuned version, from one object whatever the engine.

An evaluation asks two things of a model: "answer these conversations greedily, adapter on or off" and
"did you end your turn?". `TransformersAnswerer` does it with the PEFT model in memory (one model, the
adapter switched off for the base); `LlamaCppAnswerer` with llama.cpp on the base GGUF, alone or with
the run's GGUF LoRA adapter (~6x faster on a 2-core CPU, and the very files `medtune chat`/`serve` run).
Both render the same prompts (the run's template and system prompt) and stop on the run's stop tokens,
so the base-vs-tuned comparison and the safety answers read the same whichever engine wrote them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from medtune.model import llamacpp
from medtune.model.generate import greedy_generate


class Answerer(Protocol):
    engine: str

    def answers(self, conversations: list[list[dict[str, str]]], max_new_tokens: int, *, base: bool,
                desc: str = "generating") -> tuple[list[str], list[bool]]:
        """(answers, stopped): stopped is True when the model ended its turn within max_new_tokens."""
        ...

    def close(self) -> None:
        ...


class TransformersAnswerer:
    engine = "transformers"

    def __init__(self, model: Any, tok: Any, system_prompt: str, *, repetition_penalty: float = 1.0,
                 batch_size: int = 8, stop_tokens: list[str] | None = None) -> None:
        self.model, self.tok, self.system_prompt = model, tok, system_prompt
        self.repetition_penalty, self.batch_size, self.stop_tokens = repetition_penalty, batch_size, stop_tokens

    def answers(self, conversations: list[list[dict[str, str]]], max_new_tokens: int, *, base: bool,
                desc: str = "generating") -> tuple[list[str], list[bool]]:
        return greedy_generate(self.model, self.tok, conversations, self.system_prompt, max_new_tokens, base=base,
                               batch_size=self.batch_size, repetition_penalty=self.repetition_penalty, desc=desc,
                               stop_tokens=self.stop_tokens)

    def close(self) -> None:
        pass


class LlamaCppAnswerer:
    engine = "llama.cpp"

    def __init__(self, base_gguf: str | Path, lora_gguf: str | Path | None, chat_template: str, system_prompt: str,
                 stop_tokens: list[str], *, repetition_penalty: float = 1.0, n_ctx: int = 2048) -> None:
        self.base_gguf, self.lora_gguf, self.n_ctx = base_gguf, lora_gguf, n_ctx
        self.template, self.system_prompt, self.stop_tokens = chat_template, system_prompt, stop_tokens
        self.repetition_penalty = repetition_penalty
        self._llms: dict[bool, Any] = {}

    def _llm(self, base: bool) -> Any:
        if base not in self._llms:
            lora = None if base else self.lora_gguf
            self._llms[base] = llamacpp.load_llama(self.base_gguf, lora=lora, n_ctx=self.n_ctx)
        return self._llms[base]

    def answers(self, conversations: list[list[dict[str, str]]], max_new_tokens: int, *, base: bool,
                desc: str = "generating") -> tuple[list[str], list[bool]]:
        return llamacpp.greedy_answers(self._llm(base), self.template, conversations, self.system_prompt,
                                       max_new_tokens, stop_tokens=self.stop_tokens,
                                       repetition_penalty=self.repetition_penalty, desc=desc)

    def close(self) -> None:
        for llm in self._llms.values():
            llm.close()
        self._llms.clear()
