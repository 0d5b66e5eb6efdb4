"""The guarded assistant: input guard -> engine -> output guard. The CLI chat, the API and the web UI
all talk to an `Assistant` and nothing else."""

from medtune.assistant.core import Assistant, InputTooLong, Reply, Turn
from medtune.assistant.engines import Engine, GenParams
from medtune.assistant.load import load_assistant

__all__ = ["Assistant", "Engine", "GenParams", "InputTooLong", "Reply", "Turn", "load_assistant"]
