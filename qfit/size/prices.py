"""Prices: the dated figures in the accelerator profiles, overridable by a user's `--prices` file (YAML or CSV).

File format (see profiles/prices.example.yaml): one row per accelerator with `name` (any spelling `qfit gpus`
understands), `usd_per_hour` (rental, per GPU) and optionally `list_usd` (purchase, per GPU), `source`, `date`.
A row may leave one of the two prices empty. Every bad row is a one-line error naming the row.
"""

from __future__ import annotations

import csv
import datetime as _dt
from dataclasses import dataclass
from pathlib import Path

from qfit.errors import QfitError
from qfit.hardware import Accelerator, Price, get_accelerator

FIELDS = ("name", "usd_per_hour", "list_usd", "source", "date")


@dataclass(frozen=True)
class PriceBook:
    """Per accelerator key: (rent per GPU-hour, list price per GPU) overrides; missing keys use the profile."""

    rent: dict[str, Price]
    purchase: dict[str, Price]
    path: str | None = None

    def rent_for(self, acc: Accelerator) -> Price | None:
        return self.rent.get(acc.key, acc.rent)

    def list_for(self, acc: Accelerator) -> Price | None:
        return self.purchase.get(acc.key, acc.list_price)


EMPTY = PriceBook({}, {})


def _number(value, what: str, where: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        x = float(str(value).strip().lstrip("$").replace(",", ""))
    except ValueError:
        raise QfitError(f"{where}: {what} {value!r} is not a number") from None
    if not x > 0 or x != x or x == float("inf"):
        raise QfitError(f"{where}: {what} must be a positive number, got {value!r}")
    return x


def _rows_from_yaml(text: str, path: Path) -> list[dict]:
    import yaml  # local: only when a YAML price file is given

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise QfitError(f"{path}{line}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if isinstance(data, dict) and "prices" in data:
        data = data["prices"]
    if isinstance(data, dict):  # mapping form: {H100: {usd_per_hour: 2.5, list_usd: 25000}} or {H100: 2.5}
        data = [{"name": k, **(v if isinstance(v, dict) else {"usd_per_hour": v})} for k, v in data.items()]
    if not isinstance(data, list):
        raise QfitError(f"{path}: expected a list of rows (name, usd_per_hour, list_usd) under 'prices'")
    return data


def _rows_from_csv(text: str, path: Path) -> list[dict]:
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    reader = csv.DictReader(lines, skipinitialspace=True)
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if "name" not in header or not ({"usd_per_hour", "list_usd"} & set(header)):
        raise QfitError(f"{path}: CSV header must be name,usd_per_hour[,list_usd,source,date], got {','.join(header)}")
    rows = []
    for raw in reader:
        rows.append({(k or "").strip().lower(): v for k, v in raw.items()})
    return rows


def _date(value, where: str) -> str | None:
    """An ISO date (2026-11-29) or a month (2026-11); prices without a checkable date are refused."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    text = str(value).strip()
    for fmt in ("%Y-%m-%d", "%Y-%m"):
        try:
            _dt.datetime.strptime(text, fmt)
            return text
        except ValueError:
            continue
    raise QfitError(f"{where}: date {text!r:.40} is not YYYY-MM-DD or YYYY-MM")


def parse_price_rows(rows: list, path: Path, default_date: str) -> PriceBook:
    rent: dict[str, Price] = {}
    purchase: dict[str, Price] = {}
    seen: dict[str, int] = {}
    for i, row in enumerate(rows, start=1):
        where = f"{path} row {i}"
        if not isinstance(row, dict):
            raise QfitError(f"{where}: expected name, usd_per_hour, list_usd; got {row!r}")
        unknown = sorted(set(row) - set(FIELDS) - {None})
        if unknown:
            raise QfitError(f"{where}: unknown column(s) {', '.join(map(str, unknown))} (known: {', '.join(FIELDS)})")
        name = str(row.get("name") or "").strip()
        if not name:
            raise QfitError(f"{where}: missing accelerator name")
        try:
            acc = get_accelerator(name)
        except QfitError as exc:
            raise QfitError(f"{where}: {exc}") from None
        if acc.key in seen:
            raise QfitError(f"{where}: {acc.short_name} already priced in row {seen[acc.key]}")
        seen[acc.key] = i
        hour = _number(row.get("usd_per_hour"), "usd_per_hour", where)
        buy = _number(row.get("list_usd"), "list_usd", where)
        if hour is None and buy is None:
            raise QfitError(f"{where}: {name} has neither usd_per_hour nor list_usd")
        source = str(row.get("source") or f"--prices {path.name}").strip()
        if len(source) > 500 or len(name) > 200:
            raise QfitError(f"{where}: a field is longer than a price row needs (name <= 200, source <= 500 characters)")
        date = _date(row.get("date"), where) or default_date
        if hour is not None:
            rent[acc.key] = Price(hour, source, date)
        if buy is not None:
            purchase[acc.key] = Price(buy, source, date)
    return PriceBook(rent, purchase, str(path))


def load_prices(path: str | Path) -> PriceBook:
    """Read a YAML (.yaml/.yml) or CSV price file; undated rows get the file's modification date."""
    p = Path(path)
    if p.is_dir():
        raise QfitError(f"price file {p} is a folder")
    try:
        if p.stat().st_size > 10 * 2**20:
            raise QfitError(f"price file {p} is larger than 10 MB: not a price list")
        text = p.read_text(encoding="utf-8")
        mtime = p.stat().st_mtime
    except OSError as exc:
        raise QfitError(f"cannot read price file {p}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise QfitError(f"price file {p} is not UTF-8 text") from None
    default_date = _dt.date.fromtimestamp(mtime).isoformat() + " (file date)"
    rows = _rows_from_yaml(text, p) if p.suffix.lower() in {".yaml", ".yml"} else _rows_from_csv(text, p)
    if not rows:
        raise QfitError(f"{p}: no price rows")
    return parse_price_rows(rows, p, default_date)
