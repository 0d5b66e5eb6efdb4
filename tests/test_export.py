"""Export: GGUF, GGUF LoRA, merged, Ollama and hub push of a tiny random Llama run, checked in llama.cpp."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ASSETS
from medtune.cli import main
from medtune.config import Config
from medtune.errors import MedtuneError
from medtune.export import export_run, gguf_model, gotemplate, ollama
from medtune.model import llamacpp
from medtune.model.load import load_for_inference, read_run

QUICK = {"parity_limit": 6, "max_new_tokens": 8}  # random logits have near-ties (margins ~0.005)
PROMPT = [{"role": "system", "content": "Be careful."}, {"role": "user", "content": "What is anemia?"}]


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny matmuls are dominated by thread hand-offs on a shared 2-core machine: one thread is ~7x faster."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_model_dir) -> Path:
    """A real run folder (train_run, 1 step, test split held out) whose LoRA B weights are then made large,
    so the adapter visibly changes answers."""
    from safetensors.torch import load_file, save_file

    from medtune.pipeline import train_run

    out = tmp_path_factory.mktemp("runs") / "tiny"
    cfg = Config(output=str(out), seed=7)
    cfg.model.name = str(tiny_model_dir)
    cfg.data.sources = [str(ASSETS / "qa_small.jsonl")]
    cfg.data.val_fraction, cfg.data.test_fraction = 0.0, 0.25
    cfg.data.system_prompt = "Be careful."
    cfg.lora.r, cfg.lora.alpha = 8, 16
    cfg.train.batch_size, cfg.train.max_length, cfg.train.max_steps = 4, 256, 1
    cfg.train.precision = "fp32"
    train_run(cfg, hold_out_test=True)
    path = out / "adapter_model.safetensors"
    weights = load_file(str(path))
    gen = torch.Generator().manual_seed(3)
    for k, v in weights.items():
        if ".lora_B." in k:
            weights[k] = torch.randn(v.shape, generator=gen) * 0.3
    save_file(weights, str(path))
    return out


def _logits_llamacpp(gguf, lora, ids):
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), lora_path=str(lora) if lora else None, n_ctx=256, logits_all=True,
                verbose=False)
    llm.eval(ids)
    return np.asarray(llm.scores[: len(ids)])


def _prompt_ids(run):
    _, tok, _ = load_for_inference(str(run))
    return tok.apply_chat_template(PROMPT, tokenize=True, add_generation_prompt=True, return_dict=False)


def _hf_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def test_gguf_f16_loads_in_llama_cpp_and_gives_transformers_greedy_tokens(tiny_run, tmp_path):
    res = export_run(tiny_run, "gguf", "f16", tmp_path / "g", **QUICK)
    assert res.passed and res.folder == tmp_path / "g"
    gguf = res.folder / "model-f16.gguf"
    info = json.loads((res.folder / "export.json").read_text())
    assert set(info["files"]) == {"model-f16.gguf", "README.md"}
    assert info["tensor_types"]["model-f16.gguf"] == gguf_model.tensor_types(gguf)
    assert set(info["tensor_types"]["model-f16.gguf"]) == {"F16", "F32"}
    prov = read_run(tiny_run)
    assert info["provenance"]["system_prompt"] == "Be careful."
    assert info["provenance"]["stop_tokens"] == prov.stop_tokens
    r = info["parity"]["results"][0]
    assert r["match_first_32"] >= 0.9 and r["required"] == 0.9 and r["prompts"] == 6
    # the permuted Q/K rows and every tensor name are right: llama.cpp's logits are transformers' logits
    model, tok, _ = load_for_inference(str(tiny_run))
    ids = _prompt_ids(tiny_run)
    ours = _logits_llamacpp(gguf, None, ids)
    ref = _hf_logits(model, ids)
    assert np.abs(ours - ref).max() < 2e-2 * np.abs(ref).max()
    # greedy tokens, one by one
    llm = llamacpp.load_llama(gguf, n_ctx=256)
    got = [t for _, t in zip(range(12), llm.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0))]
    want = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=12, min_new_tokens=12)[0, len(ids):]
    assert got == want.tolist()
    meta = llamacpp.gguf_metadata(llm)
    assert meta["tokenizer.chat_template"] == prov.chat_template
    assert meta["tokenizer.ggml.model"] == "gpt2" and meta["tokenizer.ggml.pre"] == "gpt-2"
    assert llamacpp.token_text(llm, llm.token_eos()) == "<|im_end|>"
    assert llm.tokenize(b"What is high blood pressure?", add_bos=False) == \
        tok("What is high blood pressure?", add_special_tokens=False)["input_ids"]


def test_q8_0_and_q4_k_m_report_the_types_they_hold(tiny_run, tmp_path):
    q8 = export_run(tiny_run, "gguf", "q8_0", tmp_path / "q8", check_parity=False)
    assert "Q8_0" in q8.info["tensor_types"]["model-q8_0.gguf"]
    q4 = export_run(tiny_run, "gguf", "q4_k_m", tmp_path / "q4", check_parity=False)
    types = q4.info["tensor_types"]["model-q4_k_m.gguf"]
    assert types == gguf_model.tensor_types(q4.folder / "model-q4_k_m.gguf")
    assert "Q4_K" not in types  # width 32 is not a multiple of 256: llama.cpp falls back, and we say so
    assert sorted(p.name for p in q4.folder.iterdir()) == ["README.md", "export.json", "model-q4_k_m.gguf"]
    llamacpp.load_llama(q4.folder / "model-q4_k_m.gguf", n_ctx=128)  # loads


def test_lora_gguf_changes_llama_cpp_output_as_the_merged_model_does(tiny_run, tmp_path):
    res = export_run(tiny_run, "gguf-lora", "f16", tmp_path / "l", **QUICK)
    assert res.passed
    info = json.loads((res.folder / "export.json").read_text())
    adapter, base = res.folder / "adapter-lora-f16.gguf", res.folder / "base-f16.gguf"
    assert info["base_gguf"] == str(base)
    from gguf import GGUFReader

    reader = GGUFReader(str(adapter))
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["adapter.type"].contents() == "lora"
    assert reader.fields["adapter.lora.alpha"].contents() == 16.0
    names = {t.name for t in reader.tensors}
    assert "blk.0.attn_q.weight.lora_a" in names and "blk.1.ffn_down.weight.lora_b" in names
    ids = _prompt_ids(tiny_run)
    plain = _logits_llamacpp(base, None, ids)
    tuned = _logits_llamacpp(base, adapter, ids)
    model, _, _ = load_for_inference(str(tiny_run))
    merged = _hf_logits(model.merge_and_unload(), ids)
    scale = np.abs(merged).max()
    assert np.abs(tuned - plain).max() > 0.2 * scale  # the adapter matters
    assert np.abs(tuned - merged).max() < 2e-2 * scale  # and does what merging does
    assert info["parity"]["results"][0]["match_first_32"] >= 0.9


def test_merged_loads_with_plain_transformers(tiny_run, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    res = export_run(tiny_run, "merged", None, tmp_path / "m", **QUICK)
    assert res.passed and res.info["parity"]["results"][0]["match_first_32"] == 1.0
    merged = AutoModelForCausalLM.from_pretrained(res.folder)
    tok = AutoTokenizer.from_pretrained(res.folder)
    run, _, _ = load_for_inference(str(tiny_run))
    ids = _prompt_ids(tiny_run)
    assert np.allclose(_hf_logits(merged, ids), _hf_logits(run, ids), atol=1e-4)
    assert tok.chat_template == read_run(tiny_run).chat_template
    gen = json.loads((res.folder / "generation_config.json").read_text())
    assert tok.convert_tokens_to_ids("<|im_end|>") in np.atleast_1d(gen["eos_token_id"]).tolist()
    assert "guard is not inside the weights" in (res.folder / "README.md").read_text()


def _modelfile_parts(text):
    template = re.search(r'^TEMPLATE """(.*?)"""$', text, re.S | re.M).group(1)
    stops = re.findall(r'^PARAMETER stop "(.*)"$', text, re.M)
    system = re.search(r'^SYSTEM """(.*?)"""$', text, re.S | re.M).group(1)
    return template, stops, system


def test_ollama_modelfile_renders_like_the_jinja_template_and_carries_stops(tiny_run, tmp_path):
    res = export_run(tiny_run, "ollama", "f16", tmp_path / "o", **QUICK)
    assert res.passed
    text = (res.folder / "Modelfile").read_text()
    assert text.count("FROM ./model-f16.gguf") == 1 and "ADAPTER" not in text
    template, stops, system = _modelfile_parts(text)
    prov = read_run(tiny_run)
    assert stops == prov.stop_tokens and system == prov.system_prompt
    assert "{%" not in template and "PARAMETER temperature 0.3" in text and "PARAMETER repeat_penalty 1.1" in text
    for conv in ollama.sample_conversations(system):
        jinja = llamacpp.render_chat(prov.chat_template, conv)
        assert gotemplate.render(template, gotemplate.ollama_values(conv)) == jinja
    readme = (res.folder / "README.md").read_text()
    assert "not inside the weights" in readme and f"medtune serve --model {tmp_path / 'o'}" in readme


TEMPLATES = {
    "chatml": ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
               "{{ '<|im_start|>system\nYou are SmolLM<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] "
               "+ '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
               "{{ '<|im_start|>assistant\n' }}{% endif %}", "<|im_start|>", "<|im_end|>"),  # SmolLM2's own BOS
    "llama3": ("{% for message in messages %}{% set content = '<|start_header_id|>' + message['role'] + "
               "'<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
               "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
               "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}",
               "<|begin_of_text|>", "<|eot_id|>"),
    "mistral": ("{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content'] %}"
                "{%- set loop_messages = messages[1:] %}{%- else %}{%- set loop_messages = messages %}{%- endif %}"
                "{{- bos_token }}{%- for message in loop_messages %}{%- if message['role'] == 'user' %}"
                "{%- if loop.last and system_message is defined %}"
                "{{- '[INST] ' + system_message + '\n\n' + message['content'] + '[/INST]' }}"
                "{%- else %}{{- '[INST] ' + message['content'] + '[/INST]' }}{%- endif %}"
                "{%- elif message['role'] == 'assistant' %}{{- ' ' + message['content']|trim + eos_token}}{%- endif %}"
                "{%- endfor %}", "<s>", "</s>"),
    "llama2": ("{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
               "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
               "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
               "{% if loop.index0 == 0 and system_message != false %}"
               "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
               "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
               "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
               "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}", "<s>", "</s>"),
    "zephyr": ("{% for message in messages %}\n{% if message['role'] == 'user' %}\n"
               "{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n"
               "{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n"
               "{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n"
               "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}",
               "<s>", "</s>"),
}


@pytest.mark.parametrize("family", sorted(TEMPLATES))
def test_jinja_templates_become_the_go_template_of_their_family(family):
    jinja, bos, eos = TEMPLATES[family]
    got, go = ollama.convert_template(jinja, "Be careful.", bos, eos)
    assert got == family
    conv = [*ollama.sample_conversations("Be careful.")[1], {"role": "assistant", "content": "Tiredness."},
            {"role": "user", "content": "Thanks"}]
    assert ollama.go_prompt(go, conv) == ollama.jinja_prompt(jinja, conv, bos, eos)


def test_an_unknown_chat_template_is_a_clear_error():
    with pytest.raises(MedtuneError, match="supported: ChatML.*Llama 3.*Mistral.*Llama 2.*Zephyr"):
        ollama.convert_template("{% for m in messages %}### {{ m['role'] }}: {{ m['content'] }}\n{% endfor %}",
                                "Be careful.", "", "")


def test_go_template_subset_follows_go_semantics():
    vals = gotemplate.ollama_values([{"role": "system", "content": "S"}, {"role": "user", "content": "a"},
                                     {"role": "user", "content": "b"}, {"role": "assistant", "content": "c"}])
    assert [m["Content"] for m in vals["Messages"]] == ["S", "a\n\nb", "c"]  # Ollama collates same-role turns
    tpl = ("x  {{- range $i, $m := .Messages }}\n{{ $i }}:{{ $m.Role }}{{ if eq $i 0 }}!{{ else if eq .Role \"user\" }}"
           "?{{ else }}.{{ end }}\n{{- end }}  {{- if and .System (not .Response) }} sys={{ $.System }}{{ end -}}   y")
    assert gotemplate.render(tpl, vals) == "x\n0:system!\n1:user?\n2:assistant. sys=Sy"
    assert gotemplate.render('{{ len (slice .Messages 1) }} {{ (index .Messages 2).Role }}', vals) == "2 assistant"
    with pytest.raises(MedtuneError, match="undefined variable"):
        gotemplate.render("{{ $nope }}", vals)


def test_push_dry_run_lists_files_and_offline_push_is_one_line(tiny_run, tmp_path, capsys, monkeypatch):
    out = tmp_path / "p"
    assert main(["export", "--run", str(tiny_run), "--format", "gguf", "--quant", "f16", "--out", str(out),
                 "--no-parity", "--push-to-hub", "me/tiny", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "would upload 3 files to me/tiny" in printed
    for name in ("model-f16.gguf", "README.md", "export.json"):
        assert f"  {name}  " in printed
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    from medtune.export import hub

    with pytest.raises(MedtuneError, match="HF_HUB_OFFLINE is set; nothing uploaded"):
        hub.push(out, "me/tiny")
    assert main(["export", "--run", str(tiny_run), "--format", "gguf", "--quant", "f16", "--out", str(out),
                 "--no-parity", "--force", "--push-to-hub", "me/tiny"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("medtune: error: --push-to-hub me/tiny")


def test_bad_inputs_are_clear_errors_and_leave_nothing_behind(tiny_run, tmp_path, capsys):
    no_adapter = tmp_path / "no-adapter"
    shutil.copytree(tiny_run, no_adapter)
    (no_adapter / "adapter_model.safetensors").unlink()
    with pytest.raises(MedtuneError, match="no LoRA adapter"):
        export_run(no_adapter, "gguf")
    assert main(["export", "--run", str(no_adapter), "--format", "gguf"]) == 2
    assert "no LoRA adapter" in capsys.readouterr().err
    with pytest.raises(MedtuneError, match="--quant q4_k_m does not apply to --format gguf-lora"):
        export_run(tiny_run, "gguf-lora", "q4_k_m")
    with pytest.raises(MedtuneError, match="--lora applies to --format ollama only"):
        export_run(tiny_run, "gguf", lora=True)
    with pytest.raises(MedtuneError, match="--quant q8_0 does not apply"):
        export_run(tiny_run, "ollama", "q8_0", lora=True)
    for flags, says in ((["--dry-run"], "--dry-run applies only with --push-to-hub"),
                        (["--push-to-hub", "noslash"], "expected a repo id OWNER/NAME"),
                        (["--parity-prompts", "0"], "--parity-prompts must be at least 1")):
        assert main(["export", "--run", str(tiny_run), "--format", "gguf", *flags]) == 2
        assert says in capsys.readouterr().err
    out = tmp_path / "taken"
    out.mkdir()
    (out / "x").write_text("mine")
    with pytest.raises(MedtuneError, match="already exists and is not empty; pass --force"):
        export_run(tiny_run, "gguf", "f16", out, check_parity=False)
    assert (out / "x").read_text() == "mine"


def test_unsupported_architecture_names_the_supported_ones(tiny_run, tiny_model_dir, tmp_path):
    import yaml

    other = tmp_path / "qwen-base"
    shutil.copytree(tiny_model_dir, other)
    cfg = json.loads((other / "config.json").read_text())
    cfg.update(architectures=["Qwen2ForCausalLM"], model_type="qwen2")
    (other / "config.json").write_text(json.dumps(cfg))
    run = tmp_path / "qwen-run"
    shutil.copytree(tiny_run, run)
    conf = yaml.safe_load((run / "config.yaml").read_text())
    conf["model"]["name"] = str(other)
    (run / "config.yaml").write_text(yaml.safe_dump(conf))
    with pytest.raises(MedtuneError, match="does not support the architecture Qwen2ForCausalLM; supported: "
                                           "LlamaForCausalLM"):
        export_run(run, "gguf", "f16", tmp_path / "never")
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("failure", [KeyboardInterrupt(), OSError(28, "No space left on device")])
def test_an_interrupted_or_full_disk_export_writes_nothing_under_the_final_name(tiny_run, tmp_path, monkeypatch,
                                                                               failure):
    real = gguf_model.write_model

    def half_then_fail(path, *a, **kw):
        real(path, *a, **kw)
        raise failure

    monkeypatch.setattr(gguf_model, "write_model", half_then_fail)
    out = tmp_path / "final"
    if isinstance(failure, OSError):
        with pytest.raises(MedtuneError, match="No space left on device.*nothing was written under that name"):
            export_run(tiny_run, "gguf", "f16", out, check_parity=False)
    else:
        with pytest.raises(KeyboardInterrupt):
            export_run(tiny_run, "gguf", "f16", out, check_parity=False)
    assert list(tmp_path.iterdir()) == []


def test_the_serving_contract_finds_the_exported_gguf(tiny_run, tmp_path):
    from medtune.assistant.load import resolve_target

    res = export_run(tiny_run, "gguf-lora", "f16", tmp_path / "s", check_parity=False)
    target = resolve_target(str(res.folder))
    assert target.gguf == res.folder / "base-f16.gguf" and target.gguf_lora == res.folder / "adapter-lora-f16.gguf"
    assert target.system_prompt == "Be careful." and target.chat_template == read_run(tiny_run).chat_template


def test_serving_never_picks_an_unfinished_or_failed_export(tiny_run, tmp_path):
    from medtune.assistant.load import _cached_gguf

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    res = export_run(run, "gguf", "f16", check_parity=False)
    assert res.folder == run / "export" / "gguf-f16" and _cached_gguf(run)[0] == res.folder / "model-f16.gguf"
    info = json.loads((res.folder / "export.json").read_text())
    info["parity"] = {"results": [{"export": "gguf-f16", "passed": False}]}
    (res.folder / "export.json").write_text(json.dumps(info))
    assert _cached_gguf(run) is None
    info["parity"] = {"skipped": True}
    (res.folder / "export.json").write_text(json.dumps(info))
    res.folder.rename(run / "export" / "gguf-f16.parity-failed")
    assert _cached_gguf(run) is None


@pytest.mark.slow
def test_a_real_embedded_run_exports_to_q8_0_and_passes_parity(tmp_path):
    run = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "medtune.cli", "train", "--data", str(ASSETS / "qa_small.jsonl"),
                    "--max-steps", "2", "--batch-size", "4", "--max-length", "256", "--output", str(run)],
                   check=True, capture_output=True, timeout=300)
    res = export_run(run, "gguf", "q8_0", parity_limit=4, max_new_tokens=64)
    assert res.passed and res.folder == run / "export" / "gguf-q8_0"
    info = res.info
    assert "de-quantized Q4_1 weights" in info["starts_from"]
    assert "Q8_0" in info["tensor_types"]["model-q8_0.gguf"]
    r = info["parity"]["results"][0]
    assert r["prompts"] == 4 and r["passed"]
    assert set(r["missed_stops"]) == set(r["missed_stops_after_divergence"])  # stops wherever it answers as the run
    assert r["perplexity"] == pytest.approx(info["parity"]["run_perplexity"], rel=0.1)


def test_parity_stop_rule_separates_lost_stops_from_other_paths(tiny_tokenizer):
    from medtune.export.parity import Answers, Item, compare

    items = [Item([{"role": "user", "content": "q"}], "", f"p{i}") for i in range(3)]
    run = Answers(["blood pressure", "see a doctor", "anemia"], [True, True, False])
    lost = Answers(["blood pressure", "see a doctor", "anemia"], [False, True, False])  # same answer, no stop
    other_path = Answers(["blood pressure", "iron and folate", "anemia"], [True, False, False])
    never = Answers(["x", "y", "anemia"], [False, False, False])
    went_on = Answers(["blood pressure", "see a doctor and then keep going", "anemia"], [True, False, False])
    later = Answers(["blood pressure", "see a dentist about it and so on", "anemia"], [True, False, False])
    for answers, gated, ok in ((lost, False, False), (other_path, False, True), (other_path, True, False),
                               (never, False, False), (went_on, False, False), (later, False, True)):
        r = compare("e", run, answers, tiny_tokenizer, items, gate_match=gated)
        assert r["passed"] is ok, (answers, gated)
    r = compare("e", run, other_path, tiny_tokenizer, items, gate_match=False)
    assert r["missed_stops"] == ["p1"] == r["missed_stops_after_divergence"] and r["diverged"][0]["prompt"] == "p1"


def test_evaluation_answers_agree_on_llama_cpp_and_transformers(tiny_run, tmp_path):
    """`medtune run` writes its greedy answers on llama.cpp (the run's GGUF LoRA export) when it can: the
    answers must be the ones the PEFT model in memory writes, with the adapter off and on."""
    from medtune.model.answerer import LlamaCppAnswerer, TransformersAnswerer
    from medtune.pipeline import TrainedRun, make_answerer

    model, tok, _ = load_for_inference(str(tiny_run))
    prov = read_run(tiny_run)
    cfg = Config(output=str(tiny_run))
    cfg.model.name, cfg.data.system_prompt, cfg.eval.repetition_penalty = prov.base.name, "Be careful.", 1.0
    tr = TrainedRun(tiny_run, model, tok, {}, {}, "tiny", "none")
    assert isinstance(make_answerer(cfg, tr), TransformersAnswerer)  # auto: the tiny base is not a GGUF
    cfg.eval.engine = "llama.cpp"
    cpp = make_answerer(cfg, tr)
    assert isinstance(cpp, LlamaCppAnswerer) and (tiny_run / "export" / "gguf-lora-f16" / "export.json").is_file()
    hf = make_answerer(Config(output=str(tiny_run), eval=cfg.eval.__class__(engine="transformers",
                                                                             repetition_penalty=1.0)), tr)
    hf.system_prompt = "Be careful."
    convs = [[{"role": "user", "content": q}] for q in ("What is anemia?", "How is high blood pressure treated?")]
    try:
        got = {base: cpp.answers(convs, 6, base=base) for base in (True, False)}
    finally:
        cpp.close()
    want = {base: hf.answers(convs, 6, base=base) for base in (True, False)}
    assert got[True][0] != got[False][0]  # the adapter is applied on llama.cpp
    def norm(text: str) -> str:  # a random model's partial UTF-8 bytes decode differently in the two libraries
        return text.replace("\ufffd", "").strip()[:6]

    for base in (True, False):
        for a, b in zip(got[base][0], want[base][0], strict=True):
            assert norm(a) == norm(b)  # random logits have near-ties: the first tokens must agree
