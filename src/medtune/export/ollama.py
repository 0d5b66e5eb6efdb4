"""Ollama Modelfile: the run's Jinja chat template as a Go TEMPLATE, its stop tokens, system prompt, sampling.

Ollama does not read Jinja. Rather than translating Jinja syntax (fragile), the export knows the Go
templates of the common chat formats and keeps the one that renders exactly as the run's Jinja template
on test conversations (checked with `gotemplate.render`, the subset Ollama uses). A template none of them
reproduces is an error that names the supported formats, never a silently wrong prompt.
"""

from __future__ import annotations

from pathlib import Path

from medtune.errors import MedtuneError
from medtune.export import gotemplate
from medtune.model.llamacpp import render_chat

SAMPLING = {"temperature": 0.3, "top_p": 0.9, "repeat_penalty": 1.1}

# Go templates as Ollama ships them for these formats; {bos}/{eos} are filled with the tokenizer's strings.
FAMILIES: dict[str, str] = {
    "chatml": (
        "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
    ),
    "llama3": (
        "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>"
        "{{- end }}<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
    "llama3.1": (
        "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
        "{{ if eq .Role \"system\" }}Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n{{ end }}"
        "{{ .Content }}<|eot_id|>{{- end }}<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
    "mistral": (
        "{{- range $i, $_ := .Messages }}{{- $last := eq (len (slice $.Messages $i)) 1 }}"
        "{{- if eq .Role \"user\" }}[INST] {{ if and $.System $last }}{{ $.System }}\n\n{{ end }}{{ .Content }}[/INST]"
        "{{- else if eq .Role \"assistant\" }} {{ .Content }}{eos}{{- end }}{{- end }}"
    ),
    "llama2": (
        "{{- range $i, $_ := .Messages }}{{- if eq .Role \"user\" }}{{ if gt $i 1 }}{bos}{{ end }}[INST] "
        "{{ if and $.System (le $i 1) }}<<SYS>>\n{{ $.System }}\n<</SYS>>\n\n{{ end }}{{ .Content }} [/INST]"
        "{{- else if eq .Role \"assistant\" }} {{ .Content }} {eos}{{- end }}{{- end }}"
    ),
    "zephyr": (
        "{{- range .Messages }}<|{{ .Role }}|>\n{{ .Content }}{eos}\n{{ end }}<|assistant|>\n"
    ),
}
SUPPORTED = "ChatML (SmolLM2, Qwen), Llama 3 / 3.1, Mistral [INST], Llama 2 [INST] <<SYS>>, Zephyr (TinyLlama)"


def sample_conversations(system_prompt: str) -> list[list[dict[str, str]]]:
    """Conversations both templates must render identically (one turn, and a follow-up)."""
    first = [{"role": "system", "content": system_prompt}, {"role": "user", "content": "What is anemia?"}]
    return [first, [*first, {"role": "assistant", "content": "Anemia means too few healthy red blood cells."},
                    {"role": "user", "content": "What are its symptoms?"}]]


def jinja_prompt(chat_template: str, messages: list[dict[str, str]], bos: str, eos: str) -> str:
    """The Jinja rendering without a leading BOS the template adds through `bos_token` (Ollama's tokenizer adds
    that one itself). A template that writes the same text itself keeps it: SmolLM2's BOS is `<|im_start|>`,
    which its ChatML template writes before every turn."""
    text = render_chat(chat_template, messages, add_generation_prompt=True, bos_token=bos, eos_token=eos)
    adds_bos = "bos_token" in chat_template
    return text[len(bos):] if adds_bos and bos and text.startswith(bos) else text


def go_prompt(go_template: str, messages: list[dict[str, str]]) -> str:
    return gotemplate.render(go_template, gotemplate.ollama_values(messages))


def convert_template(chat_template: str, system_prompt: str, bos: str, eos: str) -> tuple[str, str]:
    """(family, Go template) that renders like the Jinja `chat_template`; MedtuneError when none does."""
    convs = sample_conversations(system_prompt)
    wanted = [jinja_prompt(chat_template, c, bos, eos) for c in convs]
    for family, go in FAMILIES.items():
        go = go.replace("{bos}", bos).replace("{eos}", eos)
        try:
            if all(go_prompt(go, c) == w for c, w in zip(convs, wanted)):
                return family, go
        except MedtuneError:
            continue
    raise MedtuneError(f"the run's chat template is not one medtune can write as an Ollama TEMPLATE "
                       f"(supported: {SUPPORTED}); the rendered prompt starts {wanted[0][:80]!r}")


def _quoted(value: str, what: str) -> str:
    if '"""' in value:
        raise MedtuneError(f"the {what} contains \"\"\", which a Modelfile cannot quote")
    return f'"""{value}"""'


def modelfile(gguf_name: str, adapter_name: str | None, go_template: str, system_prompt: str,
              stop_tokens: list[str], source: str) -> str:
    """The Modelfile text: FROM, ADAPTER, TEMPLATE, SYSTEM, PARAMETER stop/sampling."""
    lines = [f"# written by `medtune export` from {source}", f"FROM ./{gguf_name}"]
    if adapter_name:
        lines.append(f"ADAPTER ./{adapter_name}")
    lines += [f"TEMPLATE {_quoted(go_template, 'chat template')}", f"SYSTEM {_quoted(system_prompt, 'system prompt')}"]
    lines += [f'PARAMETER stop "{s}"' for s in stop_tokens]
    lines += [f"PARAMETER {k} {v}" for k, v in SAMPLING.items()]
    return "\n".join(lines) + "\n"


def readme(name: str, fmt: str, family: str, export_dir: Path) -> str:
    """The export folder's README: how to run it, and that the guard is not inside the weights."""
    if fmt == "ollama":
        how = (f"The chat template is the run's own ({family} format), converted to Ollama's Go template and checked "
               f"to render the same prompt; stop tokens, system prompt and sampling defaults (temperature "
               f"{SAMPLING['temperature']}, top_p {SAMPLING['top_p']}, repeat_penalty {SAMPLING['repeat_penalty']}) "
               f"are in the Modelfile.\n\n    ollama create {name} -f Modelfile\n    ollama run {name}\n")
    else:
        how = ("The GGUF carries the run's chat template, end-of-turn token and system prompt (`medtune.*` keys); "
               "`export.json` lists the files with their SHA-256, the tensor types and the parity check.\n\n"
               "    llama-cli -m <the .gguf> [--lora <the adapter .gguf>] -cnv\n")
    return f"""# {name} ({fmt})

Written by `medtune export --format {fmt}`. {how}
**The safety guard is not inside the weights.** Run this way, the model answers everything it is asked,
including emergencies and dose questions, with no escalation or refusal. To serve it behind medtune's input
and output guard:

    medtune serve --model {export_dir}

This model is for education and research. It is not a medical device: do not use it to diagnose, treat, or
choose doses for anyone.
"""
