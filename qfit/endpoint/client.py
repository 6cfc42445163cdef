"""The OpenAI completions protocol over qfit.endpoint.http: the first probe and one streamed, timed request.

A streamed request records when each token-bearing chunk arrived (time.perf_counter, relative to the request's start),
the server's usage if it sent one, and, on any failure, what kind it was and the first line of why; it never raises.
A chunk bears a token when it has a choice whose text is non-empty or which has no finish_reason yet (llama.cpp and
vLLM close with an empty-text chunk carrying finish_reason, which is not a token).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

from qfit.endpoint.http import HttpError, request

# Fields beyond OpenAI's that make servers decode exactly max_tokens (vLLM, SGLang, llama.cpp take min_tokens;
# vLLM and SGLang take ignore_eos) and send token counts in the stream (stream_options, OpenAI and vLLM/SGLang).
EXTRAS = ("ignore_eos", "min_tokens", "stream_options")


@dataclass(frozen=True)
class Timeouts:
    connect_s: float = 10.0
    first_token_s: float = 120.0   # request sent -> first token (includes queueing behind other streams)
    stall_s: float = 30.0          # longest gap between two pieces of the stream
    total_s: float = 600.0         # the whole request, whatever happens

    def to_dict(self) -> dict:
        return {"connect_s": self.connect_s, "first_token_s": self.first_token_s, "stall_s": self.stall_s,
                "total_s": self.total_s}


@dataclass
class Record:
    """One request: start (s since the level began), token arrival times (s since the request's start)."""

    start_s: float = 0.0
    end_s: float | None = None
    token_times: list[float] = field(default_factory=list)
    usage_prompt_tokens: int | None = None
    usage_completion_tokens: int | None = None
    finish_reason: str | None = None
    error_kind: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_kind is None


class ProtocolError(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def completion_body(model: str | None, prompt: str, max_tokens: int, *, stream: bool, extras: frozenset) -> dict:
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0, "stream": stream}
    if model:
        body["model"] = model
    if "ignore_eos" in extras:
        body["ignore_eos"] = True
    if "min_tokens" in extras:
        body["min_tokens"] = max_tokens
    if stream and "stream_options" in extras:
        body["stream_options"] = {"include_usage": True}
    return body


def _short(text: str, n: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n] + "..."


def error_message(status: int, reason: str, body: bytes) -> str:
    """`HTTP 500 Internal Server Error: <the server's message>` from an OpenAI error object or the raw body."""
    text = body.decode("utf-8", "replace")
    try:
        doc = json.loads(text)
        err = doc.get("error", doc) if isinstance(doc, dict) else doc
        text = str(err.get("message", err) if isinstance(err, dict) else err)
    except json.JSONDecodeError:
        pass
    return f"HTTP {status} {reason}".rstrip() + (f": {_short(text)}" if text.strip() else "")


async def get_json(url: str, timeouts: Timeouts, headers: dict, body: dict | None = None) -> tuple[int, object, str]:
    """(status, parsed JSON or None, error text) of a GET (body None) or POST; transport failures raise HttpError."""
    resp = await request("GET" if body is None else "POST", url, None if body is None else json.dumps(body).encode(),
                         headers=headers, connect_timeout=timeouts.connect_s, read_timeout=timeouts.first_token_s)
    try:
        raw = await asyncio.wait_for(resp.body(), timeouts.total_s)
    except asyncio.TimeoutError:
        raise HttpError("timeout", f"no complete answer within {timeouts.total_s:g} s") from None
    finally:
        resp.close()
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        doc = None
    return resp.status, doc, error_message(resp.status, resp.reason, raw)


def parse_event(line: str) -> dict | None | str:
    """One SSE line: the JSON object of a `data:` line, "[DONE]", or None for comments, blanks and other fields."""
    if not line.startswith("data:"):
        return None
    payload = line[5:].strip()
    if payload == "[DONE]":
        return payload
    try:
        doc = json.loads(payload)
    except json.JSONDecodeError:
        raise ProtocolError("not-openai", f"a stream line is not JSON: {_short(payload, 80)!r}") from None
    if not isinstance(doc, dict):
        raise ProtocolError("not-openai", f"a stream event is not an object: {_short(payload, 80)!r}")
    if "error" in doc:
        err = doc["error"]
        raise ProtocolError("server-error", f"error in the stream: {_short(str(err.get('message', err) if isinstance(err, dict) else err))}")
    if "choices" not in doc and "usage" not in doc:
        raise ProtocolError("not-openai", f"a stream event has no choices: {_short(payload, 80)!r}")
    return doc


def take_event(rec: Record, doc: dict, now: float) -> None:
    """Fold one parsed event into the record (pure apart from the record)."""
    usage = doc.get("usage") or {}
    if usage.get("prompt_tokens") is not None:
        rec.usage_prompt_tokens = int(usage["prompt_tokens"])
    if usage.get("completion_tokens") is not None:
        rec.usage_completion_tokens = int(usage["completion_tokens"])
    for choice in doc.get("choices") or []:
        finish = choice.get("finish_reason")
        if choice.get("text") or finish is None:
            rec.token_times.append(now)
        if finish:
            rec.finish_reason = finish


async def stream_completion(url: str, body: dict, timeouts: Timeouts, headers: dict, rec: Record) -> Record:
    """Run one streamed completion into `rec`; every failure is recorded, none raised, none waits past a timeout."""
    t0 = time.perf_counter()
    try:
        await asyncio.wait_for(_stream(url, body, timeouts, headers, rec, t0), timeouts.total_s)
    except asyncio.TimeoutError:
        rec.error_kind, rec.error = "timeout-total", f"request not finished within {timeouts.total_s:g} s"
    except HttpError as exc:
        rec.error_kind = {"timeout": "stall" if rec.token_times else "timeout-first-token"}.get(exc.kind, exc.kind)
        rec.error = str(exc) + (f" after {len(rec.token_times)} tokens" if rec.token_times else "")
    except ProtocolError as exc:
        rec.error_kind, rec.error = exc.kind, str(exc)
    rec.end_s = rec.start_s + time.perf_counter() - t0
    return rec


async def _stream(url: str, body: dict, timeouts: Timeouts, headers: dict, rec: Record, t0: float) -> None:
    resp = await request("POST", url, json.dumps(body).encode(), headers=headers, connect_timeout=timeouts.connect_s,
                         read_timeout=timeouts.first_token_s)
    try:
        if resp.status != 200:
            resp.read_timeout = timeouts.stall_s
            raise ProtocolError("http-5xx" if resp.status >= 500 else "http-4xx",
                                error_message(resp.status, resp.reason, await resp.body(64 << 10)))
        done = False
        async for line in resp.lines():
            event = parse_event(line)
            if event == "[DONE]":
                done = True
            elif event is not None:
                take_event(rec, event, time.perf_counter() - t0)
            if rec.token_times:
                resp.read_timeout = timeouts.stall_s
        if not done and rec.finish_reason is None:
            ctype = resp.headers.get("content-type", "none")
            raise ProtocolError("disconnect" if rec.token_times else "not-openai",
                                "the stream ended without a finish_reason or [DONE]"
                                + (f" after {len(rec.token_times)} tokens" if rec.token_times else
                                   f" (Content-Type {ctype}, not an event stream)" if "event-stream" not in ctype
                                   else ""))
    finally:
        resp.close()
