"""Offline text sources (calibration and held-out evaluation); see texts.py."""

from qfit.data.texts import DEFAULT_SOURCE, TextSource, load_text

__all__ = ["DEFAULT_SOURCE", "TextSource", "load_text"]
