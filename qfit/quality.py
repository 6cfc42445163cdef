"""Expected accuracy cost per weight format, from the reviewed table profiles/quality.yaml (typical, model-dependent)."""

from __future__ import annotations

from dataclasses import dataclass, field

from qfit.errors import QfitError
from qfit.paths import profiles_dir


@dataclass(frozen=True)
class Quality:
    precision: str
    summary: str
    ppl_delta_pct: float | None
    recovery_pct: float | None
    source: str
    grade: str
    references: tuple[tuple[str, str], ...] = ()     # (key the source names, the publication it stands for)

    def to_dict(self) -> dict:
        return {"precision": self.precision, "summary": self.summary, "ppl_delta_pct": self.ppl_delta_pct,
                "recovery_pct": self.recovery_pct, "source": self.source, "grade": self.grade,
                "references": dict(self.references), "caveat": "typical, model-dependent"}

    @property
    def label(self) -> str:
        recalled = " (recalled, unverified)" if self.grade == "D" else ""
        return f"{self.summary}{recalled}"


@dataclass(frozen=True)
class QualityTable:
    """profiles/quality.yaml: expected accuracy cost per precision name."""

    rows: dict
    references: dict = field(default_factory=dict)   # source key -> publication

    def of(self, precision: str) -> Quality:
        row = self.rows.get(precision)
        if not row:
            return Quality(precision, "no reviewed figure", None, None, "profiles/quality.yaml has no entry", "none")
        source = str(row["source"])
        refs = tuple((k, v) for k, v in self.references.items() if k in source)
        return Quality(precision, str(row["summary"]), row.get("ppl_delta_pct"), row.get("recovery_pct"), source,
                       str(row.get("grade", "D")), refs)


def load_quality() -> QualityTable:
    """Read profiles/quality.yaml (at the edge: the size search takes the table, not the file)."""
    import yaml  # local: only `qfit size` reads this file

    path = profiles_dir() / "quality.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise QfitError(f"cannot read {path}: {exc}") from None
    return QualityTable(data.get("formats") or {}, data.get("references") or {})
