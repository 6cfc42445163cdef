"""qfit's own live-endpoint result (`qfit profile --endpoint URL`, schema qfit.profile.endpoint/1; docs/json.md).
Fields read: model, engine, precision, device.gpu, protocol.input_len/output_len/mode, measured.decode (batch,
tokens_per_s_per_seq.mean, tpot_s) and measured.prefill, and each level's completed/failed counts.

One point per concurrency level (closed loop: the batch the server ran is the concurrency). Rate-mode runs have no
fixed batch and are refused. Prefill is kept only when the lowest level is concurrency 1: with more streams in flight
TTFT includes waiting behind the others. The spread is the level's TPOT coefficient of variation across requests
(one request's steps are not independent trials, but a run whose requests disagree is not one to fit on). Levels
where any request failed are left out: their figures describe a server that was not serving every request.
"""

from __future__ import annotations

from qfit.calibrate_import import Measurement, field, number, text
from qfit.errors import QfitError

SCHEMA = "qfit.profile.endpoint/1"


def detect(data) -> bool:
    return isinstance(data, dict) and data.get("schema") == SCHEMA


def _obj(path: str, where: str, value) -> dict:
    """A JSON object from the file (None reads as empty), or one line naming the field."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise QfitError(f"{path}: {where} is {value!r:.40}, not an object")
    return value


def _list(path: str, where: str, value) -> list:
    if not isinstance(value, list):
        raise QfitError(f"{path}: {where} is {value!r:.40}, not a list")
    return value


def parse(path: str, data: dict) -> list[Measurement]:
    proto = _obj(path, "protocol", field(path, data, "protocol"))
    if field(path, proto, "mode") != "concurrency":
        raise QfitError(f"{path}: a --rate run has no fixed batch; calibrate from a -b (concurrency) sweep")
    input_len = number(path, "protocol.input_len", field(path, proto, "input_len"), integer=True)
    output_len = number(path, "protocol.output_len", field(path, proto, "output_len"), integer=True)
    measured = _obj(path, "measured", field(path, data, "measured"))
    decode = _list(path, "measured.decode", field(path, measured, "decode"))
    levels = {lv.get("concurrency"): lv for lv in _list(path, "levels", field(path, data, "levels"))
              if isinstance(lv, dict)}
    pre = {r.get("input_len"): r for r in _list(path, "measured.prefill", measured.get("prefill") or [])
           if isinstance(r, dict)}
    clean = [r for r in decode if isinstance(r, dict) and _clean(levels.get(r.get("batch")))]
    if not clean:
        raise QfitError(f"{path}: no level completed every request: nothing to calibrate on")
    device = _obj(path, "device", data.get("device"))
    out = []
    for row in clean:
        batch = number(path, "measured.decode[].batch", row.get("batch"), integer=True)
        rate = number(path, f"decode at concurrency {batch}",
                      _obj(path, "tokens_per_s_per_seq", row.get("tokens_per_s_per_seq")).get("mean"))
        tpot = _obj(path, "levels[].tpot_s", levels[batch].get("tpot_s"))
        cv = tpot.get("cv") if isinstance(tpot.get("cv"), (int, float)) else None
        prefill = _obj(path, "measured.prefill[].tokens_per_s",
                       _obj(path, "measured.prefill[]", pre.get(input_len)).get("tokens_per_s")).get("mean") \
            if batch == 1 else None
        out.append(Measurement(
            tool=f"qfit profile --endpoint ({data.get('qfit', '?')})", label=f"concurrency {batch}",
            model=_opt(path, "model", data.get("model")), engine=_opt(path, "engine", data.get("engine")),
            device=_opt(path, "device.gpu", device.get("gpu")), precision=_opt(path, "precision", data.get("precision")),
            batch=batch, input_len=input_len, output_len=output_len, decode_tokens_per_s_per_seq=rate,
            prefill_tokens_per_s=number(path, "measured.prefill tokens/s", prefill) if prefill is not None else None,
            cv=cv))
    return out


def _clean(level) -> bool:
    return isinstance(level, dict) and level.get("failed") == 0 and (level.get("completed") or 0) > 0


def _opt(path: str, where: str, value):
    return None if value is None else text(path, where, value)
