"""Data-parallel training through the real CLI: `medtune train --nproc 2` (two gloo processes on this CPU)
against one process with twice the grad_accum, on the tiny random Llama; plus the refusals of bad --nproc.

Tolerance: per-step losses agree within 1e-4 relative and adapter weights within 1e-4 (absolute, against
LoRA weights of order 1e-2): the two set-ups sum the same token losses, only in another order.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import ASSETS, write_jsonl
from medtune.errors import MedtuneError
from medtune.train import distributed

COMMON = ["--data", str(ASSETS / "qa_small.jsonl"), "--val-fraction", "0", "--batch-size", "2", "--epochs", "2",
          "--max-length", "256", "--lora-r", "8", "--lr", "5e-3", "--seed", "7", "--set", "train.precision=fp32",
          "--set", "train.warmup_ratio=0", "--set", "data.test_fraction=0", "--set", "data.system_prompt=Be careful."]


def _medtune(*args, timeout=600):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-m", "medtune.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


def _losses(run):
    return [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def two_runs(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    two = _medtune("train", "--model", tiny_model_dir, *COMMON, "--set", "train.grad_accum=1", "--nproc", "2",
                   "--output", root / "two")
    one = _medtune("train", "--model", tiny_model_dir, *COMMON, "--set", "train.grad_accum=2", "--output", root / "one")
    return root, two, one


def test_two_processes_optimise_what_one_process_with_twice_the_accumulation_does(two_runs):
    root, two, one = two_runs
    assert two.returncode == 0, two.stderr[-2000:]
    assert one.returncode == 0, one.stderr[-2000:]
    a, b = _losses(root / "two"), _losses(root / "one")
    assert len(a) == len(b) == 6  # 12 rows / (2 rows x 2 micro-batches) = 3 steps per epoch, 2 epochs
    for x, y in zip(a, b):
        assert x == pytest.approx(y, rel=1e-4)
    assert a[-1] < a[0]
    wa = load_file(root / "two" / "adapter_model.safetensors")
    wb = load_file(root / "one" / "adapter_model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-3, atol=1e-4)


def test_rank0_alone_writes_artifacts_and_records_the_processes(two_runs):
    root, two, one = two_runs
    run = root / "two"
    info = json.loads((run / "run.json").read_text())["training"]
    assert info["processes"] == 2 and info["effective_batch"] == 2 * 1 * 2
    assert info["threads"] == max(1, distributed.cores() // 2)
    assert json.loads((root / "one" / "run.json").read_text())["training"]["processes"] == 1
    assert sorted(p.name for p in run.rglob("adapter_model.safetensors")) == ["adapter_model.safetensors"]
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 7))  # one writer: no step twice
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-6"]
    assert two.stdout.count("trained 6 steps") == 1  # one report, from the launching process
    assert "Traceback" not in two.stderr
    assert not (run / ".medtune.lock").read_text().strip()  # released


def test_resume_with_another_process_count_is_refused(two_runs, tiny_model_dir):
    root, _, _ = two_runs
    res = _medtune("train", "--output", root / "two", "--resume")  # one process, checkpoint written by two
    assert res.returncode == 2
    assert "--nproc 2" in res.stderr and "Traceback" not in res.stderr
    res = _medtune("train", "--output", root / "one", "--resume", "--nproc", "2")  # and the other way round
    assert res.returncode == 2
    assert res.stderr.count("resume with --nproc 1") == 1  # refused by the launcher, before any worker starts


def test_nproc_beyond_the_cores_is_refused_before_any_work(tiny_model_dir, tmp_path):
    res = _medtune("train", "--model", tiny_model_dir, *COMMON, "--nproc", distributed.cores() + 1,
                   "--output", tmp_path / "run")
    assert res.returncode == 2
    assert "--nproc" in res.stderr and "--oversubscribe" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "run").exists()


def test_nproc_beyond_the_training_rows_is_refused(tiny_model_dir, tmp_path, qa_rows):
    data = write_jsonl(tmp_path / "one_row.jsonl", qa_rows[:1])
    args = [a if a != str(ASSETS / "qa_small.jsonl") else data for a in COMMON]
    res = _medtune("train", "--model", tiny_model_dir, *args, "--nproc", "2", "--output", tmp_path / "run")
    assert res.returncode == 2
    assert "--nproc 2" in res.stderr and "1 rows" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_check_nproc_and_shard(monkeypatch):
    monkeypatch.setattr(distributed, "cores", lambda: 2)
    distributed.check_nproc(2)
    distributed.check_nproc(4, oversubscribe=True)
    with pytest.raises(MedtuneError, match="--nproc 3"):
        distributed.check_nproc(3)
    with pytest.raises(MedtuneError, match="--nproc 0"):
        distributed.check_nproc(0)
    with pytest.raises(MedtuneError, match="batches"):
        distributed.check_rows(3, 4, 2)
    batches = [[0], [1], [2], [3], [4]]
    shards = [distributed.shard(batches, r, 2) for r in range(2)]
    assert shards == [[[0], [2], [4]], [[1], [3], [0]]]  # padded by wrapping: equal step counts
    assert distributed.shard(batches, 0, 1) == batches
    assert distributed.threads_per_process(2) == 1 and distributed.threads_per_process(1) == 2


# --- accelerate configs (DDP, DeepSpeed ZeRO-2/3, FSDP): validated here, run only on GPUs ----------------------

ACCELERATE = Path(__file__).parents[1] / "configs" / "accelerate"
PAIRED = {  # accelerate config -> the medtune config it is documented with
    "ddp.yaml": "llama31-8b-qlora.yaml",
    "deepspeed-zero2.yaml": "tinyllama-lora.yaml",
    "deepspeed-zero3.yaml": "tinyllama-lora.yaml",
    "fsdp.yaml": "tinyllama-lora.yaml",
}


def _cuda(monkeypatch, *, bf16=True, bnb=True):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: (object() if bnb else None) if name == "bitsandbytes" else real(name, *a))


def _launch_env(path):
    """The environment `accelerate launch --config_file PATH` gives its workers (accelerate's own code)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    args = launch_command_parser().parse_args(["--config_file", str(path), "-m", "medtune.cli", "train"])
    args, defaults, mp_from_config = _validate_launch_command(args)
    if args.use_deepspeed:  # as accelerate's launch_command does before its deepspeed launcher
        fields = list(defaults.deepspeed_config) + (["mixed_precision"] if mp_from_config else [])
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        return prepare_deepspeed_cmd_env(args)[1]
    return prepare_multi_gpu_env(args)


def test_every_shipped_accelerate_config_is_paired_and_loads():
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

    assert sorted(p.name for p in ACCELERATE.glob("*.yaml")) == sorted(PAIRED)
    for name in PAIRED:
        cfg = load_config_from_file(str(ACCELERATE / name))
        assert isinstance(cfg, ClusterConfig) and cfg.num_machines == 1 and not cfg.use_cpu


@pytest.mark.parametrize("name", sorted(PAIRED))
def test_accelerate_config_resolves_and_matches_its_medtune_config(name, monkeypatch):
    from accelerate.utils import DeepSpeedPlugin, FullyShardedDataParallelPlugin

    from medtune.config import load_config
    from medtune.train.settings import resolve_settings

    env = _launch_env(ACCELERATE / name)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    _cuda(monkeypatch)
    medtune_cfg = load_config(ACCELERATE.parent / PAIRED[name])
    settings = resolve_settings(medtune_cfg)
    assert env["ACCELERATE_MIXED_PRECISION"] == settings.precision == "bf16"
    if name.startswith("deepspeed"):
        plugin = DeepSpeedPlugin()  # built from the launch environment, as the Accelerator builds it
        assert plugin.zero_stage == int(name[-6])
        assert plugin.deepspeed_config["gradient_accumulation_steps"] == medtune_cfg.train.grad_accum
        assert plugin.deepspeed_config["gradient_clipping"] == medtune_cfg.train.max_grad_norm
        if plugin.zero_stage == 3:
            assert plugin.deepspeed_config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"]
    elif name == "fsdp.yaml":
        import accelerate.utils.dataclasses as acc_dc

        monkeypatch.setattr(acc_dc, "get_torch_accelerator_backend", lambda: ("cuda", None))  # no GPU here
        plugin = FullyShardedDataParallelPlugin()
        assert plugin.sharding_strategy.name == "FULL_SHARD" and plugin.use_orig_params
        assert str(plugin.state_dict_type).endswith("FULL_STATE_DICT")  # rank 0 receives the whole adapter
    else:
        assert "ACCELERATE_USE_DEEPSPEED" not in env and "ACCELERATE_USE_FSDP" not in env
        assert settings.quantize == "4bit"  # the multi-GPU QLoRA path: one 4-bit copy per GPU


def test_deepspeed_grad_accum_mismatch_is_refused():
    from types import SimpleNamespace

    from medtune.train.recipe import _check_engine

    ds = SimpleNamespace(deepspeed_config={"gradient_accumulation_steps": 4, "train_micro_batch_size_per_gpu": "auto"})
    with pytest.raises(MedtuneError, match="gradient_accumulation_steps=4 but train.grad_accum is 8"):
        _check_engine(SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=ds)), 8, 2)
    assert _check_engine(SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=ds)), 4, 2) is ds
    assert ds.deepspeed_config["train_micro_batch_size_per_gpu"] == 2
    assert _check_engine(SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=None)), 4, 2) is None


# --- QLoRA on CUDA, with CUDA mocked present / absent ----------------------------------------------------------

def _qlora_cfg():
    from medtune.config import Config

    cfg = Config()
    cfg.model.quantize = "4bit"
    return cfg


def test_qlora_on_a_cpu_machine_keeps_its_message(monkeypatch):
    from medtune.train.settings import resolve_settings

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(MedtuneError, match=r"model.quantize=4bit \(QLoRA\) needs a CUDA GPU; use model.quantize=none"):
        resolve_settings(_qlora_cfg())


def test_qlora_without_the_extra_names_it(monkeypatch):
    from medtune.train.settings import resolve_settings

    _cuda(monkeypatch, bnb=False)
    with pytest.raises(MedtuneError, match=r"pip install 'medtune\[qlora\]'"):
        resolve_settings(_qlora_cfg())


@pytest.mark.parametrize("bf16", [True, False])
def test_qlora_on_cuda_resolves_nf4_paged_adamw_checkpointing(monkeypatch, bf16):
    from medtune.train.settings import resolve_settings

    _cuda(monkeypatch, bf16=bf16)
    s = resolve_settings(_qlora_cfg())
    compute = "bfloat16" if bf16 else "float16"  # a GPU without bf16 (T4, V100) computes in fp16
    assert s.device == "cuda" and s.precision == ("bf16" if bf16 else "fp16")
    assert s.quantization == {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True,
                              "bnb_4bit_compute_dtype": compute}
    assert s.optimizer == "paged_adamw_8bit" and s.gradient_checkpointing and s.load_dtype == compute


def test_every_shipped_qlora_config_resolves_to_qlora_on_cuda(monkeypatch):
    from medtune.config import load_config
    from medtune.train.settings import resolve_settings

    _cuda(monkeypatch)
    shipped = sorted(ACCELERATE.parent.glob("*qlora.yaml"))
    assert shipped
    for path in shipped:
        s = resolve_settings(load_config(path))
        assert s.quantization["bnb_4bit_quant_type"] == "nf4" and s.optimizer == "paged_adamw_8bit", path


def test_cpu_lora_settings_are_unchanged(monkeypatch):
    from medtune.config import Config
    from medtune.hardware import cpu_supports_bf16
    from medtune.train.settings import resolve_settings

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    s = resolve_settings(Config())
    assert s.device == "cpu" and s.quantization is None and s.optimizer == "adamw"
    assert s.precision == ("bf16" if cpu_supports_bf16() else "fp32")


def test_paged_adamw_comes_from_bitsandbytes_imported_lazily(monkeypatch):
    from types import ModuleType, SimpleNamespace

    from medtune.train import settings as settings_mod

    made = {}

    class PagedAdamW8bit:
        def __init__(self, params, lr, weight_decay):
            made.update(params=params, lr=lr, weight_decay=weight_decay)

    fake = ModuleType("bitsandbytes")
    fake.optim = SimpleNamespace(PagedAdamW8bit=PagedAdamW8bit)
    monkeypatch.setitem(sys.modules, "bitsandbytes", fake)
    _cuda(monkeypatch)
    s = settings_mod.resolve_settings(_qlora_cfg())
    p = [torch.nn.Parameter(torch.zeros(2))]
    assert isinstance(settings_mod.make_optimizer(s, p, 2e-4, 0.0), PagedAdamW8bit)
    assert made == {"params": p, "lr": 2e-4, "weight_decay": 0.0}
    assert "bitsandbytes" not in settings_mod.__dict__  # not a module-level import
