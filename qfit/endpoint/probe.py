"""The first contact with a server: is it there, does it speak OpenAI's completions API, which extra fields does it
take, and how many characters make a prompt of the asked token length. Anything wrong here is a one-line QfitError;
the sweep has not started, so there is nothing partial to keep."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from qfit.endpoint import prompts
from qfit.endpoint.client import EXTRAS, Record, Timeouts, completion_body, get_json, stream_completion
from qfit.endpoint.http import HttpError
from qfit.errors import QfitError


@dataclass(frozen=True)
class Server:
    base: str                       # URL without the trailing /v1
    served_model: str | None
    models_listed: list[str]
    extras: frozenset               # of EXTRAS, the ones the server accepted
    prompt_chars: int
    prompt_tokens_probe: int | None  # usage.prompt_tokens of the final calibration prompt (None: not reported)
    usage_in_stream: bool

    def completions_url(self) -> str:
        return self.base + "/v1/completions"


def base_url(url: str) -> str:
    base = url.rstrip("/")
    for suffix in ("/v1/completions", "/v1"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return base


async def _models(base: str, timeouts: Timeouts, headers: dict) -> list[str]:
    try:
        status, doc, err = await get_json(base + "/v1/models", timeouts, headers)
    except HttpError as exc:
        raise QfitError(f"cannot reach {base}: {exc}") from None
    if status == 404:
        return []
    if status != 200 or not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise QfitError(f"{base} is not an OpenAI-compatible server: GET /v1/models answered "
                        + (err if status != 200 else "JSON without a data list"))
    ids = [m.get("id") for m in doc["data"] if isinstance(m, dict) and isinstance(m.get("id"), str)]
    return ids


async def _served_tokens(base: str, model: str | None, prompt: str, timeouts: Timeouts, headers: dict) -> int | None:
    """usage.prompt_tokens of a one-token, unstreamed completion (None when the server reports no usage)."""
    try:
        status, doc, err = await get_json(base + "/v1/completions", timeouts, headers,
                                          completion_body(model, prompt, 1, stream=False, extras=frozenset()))
    except HttpError as exc:
        raise QfitError(f"{base}: POST /v1/completions failed: {exc}") from None
    if status != 200:
        raise QfitError(f"{base}: POST /v1/completions answered {err}")
    if not isinstance(doc, dict) or not isinstance(doc.get("choices"), list):
        raise QfitError(f"{base} is not an OpenAI-compatible server: POST /v1/completions answered {err[:120]}")
    usage = doc.get("usage") or {}
    served = usage.get("prompt_tokens")
    return int(served) if isinstance(served, int) and served > 0 else None


async def _calibrate(base: str, model: str | None, text: str, input_len: int, timeouts: Timeouts,
                     headers: dict) -> tuple[int, int | None]:
    chars = round(input_len * prompts.CHARS_PER_TOKEN)
    served = None
    for _ in range(prompts.ROUNDS):
        served = await _served_tokens(base, model, prompts.prompt_at(text, 0, chars), timeouts, headers)
        if served is None or prompts.close_enough(input_len, served):
            break
        chars = prompts.rescale(chars, input_len, served)
    return chars, served


async def _stream_probe(base: str, model: str | None, timeouts: Timeouts, headers: dict, text: str):
    """A two-token stream with every extra; a 4xx drops the extras (OpenAI's own API refuses unknown fields)."""
    url = base + "/v1/completions"
    for extras in (frozenset(EXTRAS), frozenset()):
        rec = await stream_completion(url, completion_body(model, prompts.prompt_at(text, 1, 40), 2, stream=True,
                                                           extras=extras), timeouts, headers, Record())
        if rec.ok or rec.error_kind != "http-4xx":
            break
    if not rec.ok:
        raise QfitError(f"{base}: a streamed completion failed ({rec.error_kind}): {rec.error}")
    return extras, rec


def probe(url: str, served_model: str | None, text: str, input_len: int, timeouts: Timeouts,
          headers: dict) -> Server:
    async def go() -> Server:
        base = base_url(url)
        ids = await _models(base, timeouts, headers)
        if served_model is None and not ids:
            raise QfitError(f"{base} lists no model at /v1/models: name the served model with --served-model")
        if served_model is not None and ids and served_model not in ids:
            raise QfitError(f"{base} serves {', '.join(ids[:5])}, not {served_model}")
        model = served_model or ids[0]
        extras, rec = await _stream_probe(base, model, timeouts, headers, text)
        chars, served = await _calibrate(base, model, text, input_len, timeouts, headers)
        return Server(base, model, ids, extras, chars, served, rec.usage_completion_tokens is not None)
    return asyncio.run(go())
