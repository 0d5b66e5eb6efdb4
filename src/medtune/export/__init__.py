"""Export a run for other runtimes: merged weights, GGUF (f16/q8_0/q4_k_m), a GGUF LoRA adapter, an Ollama
folder, and a push to the Hugging Face hub; every export is checked to answer like the run it came from."""

from medtune.export.job import FORMATS, ExportResult, export_run

__all__ = ["FORMATS", "ExportResult", "export_run"]
