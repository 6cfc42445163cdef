"""Reading a JSON file a user handed us (config.json, result files, index files): one function, every failure one line.

A folder where a file was expected, bytes that are not UTF-8, NaN/Infinity (not JSON, though Python's parser takes
them), nesting deep enough to exhaust the recursion limit, or a file too large to be metadata all become QfitError
naming the file; callers then check the shape (object, list) they need.
"""

from __future__ import annotations

import json
from pathlib import Path

from qfit.errors import QfitError

MAX_BYTES = 64 * 2**20     # config and result files are kilobytes; a bigger "JSON" is not metadata


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def read_json(path: Path | str, what: str = "file", max_bytes: int = MAX_BYTES, prefix: str | None = None):
    """Parsed JSON; `prefix` starts every parse error (default "cannot read {what} {path}")."""
    path = Path(path)
    if not path.is_file():
        raise QfitError(f"{what} {path} is not a file" if path.exists() else f"{what} {path} does not exist")
    prefix = prefix or f"cannot read {what} {path}"
    try:
        if path.stat().st_size > max_bytes:
            raise QfitError(f"{prefix}: {path.stat().st_size:,} bytes is too large to be JSON metadata")
        return json.loads(path.read_bytes().decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise QfitError(f"{prefix}: not UTF-8 text") from None
    except RecursionError:
        raise QfitError(f"{prefix}: nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise QfitError(f"{prefix}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except ValueError as exc:      # NaN / Infinity
        raise QfitError(f"{prefix}: not valid JSON ({exc})") from None
    except OSError as exc:
        raise QfitError(f"{prefix}: {exc.strerror or exc}") from None


def read_json_object(path: Path | str, what: str = "file", prefix: str | None = None) -> dict:
    data = read_json(path, what, prefix=prefix)
    if not isinstance(data, dict):
        raise QfitError(f"{prefix or f'cannot read {what} {path}'}: top level is not a JSON object")
    return data
