"""The OpenAI chat-completions wire format: the request model (unknown fields ignored, as OpenAI's own
clients send many), the response objects and chunks, and OpenAI's error shape
`{"error": {"message", "type", "param", "code"}}` used by every non-2xx answer of the API."""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from medtune.assistant import Reply
from medtune.safety.guard import Verdict

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "invalid_request_error", 422: "invalid_request_error",
               429: "rate_limit_error", 503: "service_unavailable", 500: "server_error"}


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str
    content: str | list[ContentPart] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatRequest(BaseModel):
    """What /v1/chat/completions reads; other OpenAI fields are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    seed: int | None = None
    n: int | None = Field(None, ge=1, le=1)
    stream_options: StreamOptions | None = None


def error_body(status: int, message: str, *, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": ERROR_TYPES.get(status, "invalid_request_error"),
                      "param": param, "code": code}}


def error_response(status: int, message: str, *, code: str | None = None, param: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, code=code, param=param), status_code=status, headers=headers)


def new_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def verdict_field(verdict: Verdict, reply: Reply | None = None) -> dict[str, Any]:
    """The guard's decision, in the extra `medtune` field of completions and chunks."""
    return {"action": verdict.action, "category": verdict.category, "score": round(float(verdict.score), 4),
            "changes": list(reply.changes) if reply else []}


def finish_reason(reply: Reply) -> str:
    """OpenAI's finish reasons: a guard reply and a cancelled one both ended on purpose (`stop`)."""
    return "length" if reply.finish_reason in ("length", "timeout") else "stop"


def usage(reply: Reply) -> dict[str, int]:
    return {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens}


def completion(ident: str, model: str, reply: Reply, verdict: Verdict) -> dict[str, Any]:
    return {"id": ident, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text},
                         "finish_reason": finish_reason(reply), "logprobs": None}],
            "usage": usage(reply), "medtune": verdict_field(verdict, reply)}


def chunk(ident: str, model: str, delta: dict[str, Any], *, finish: str | None = None,
          **extra: Any) -> dict[str, Any]:
    return {"id": ident, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}
