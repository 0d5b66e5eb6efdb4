"""Talking to the guarded Assistant: the OpenAI-compatible REST API (app, gate, auth, limits, audit, metrics,
server), the terminal chat and the web UI. Submodules are imported where used, so `medtune chat` does not
load the web stack.

Run as: medtune serve --model default [--api-key KEY]
"""
