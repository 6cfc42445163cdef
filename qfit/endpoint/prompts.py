"""Prompts of a requested token length cut from qfit's offline texts (qfit.data.texts), one distinct prompt per request.

The server's tokenizer is not known here, so the length is found by asking: a prompt of `CHARS_PER_TOKEN` x n
characters is sent with max_tokens=1, the server's usage.prompt_tokens read back, the character count rescaled, up to
`ROUNDS` times until within `TOLERANCE`. Each request then takes the same character count from a different offset of
the text (so a prefix cache does not serve one request from another's prompt); its served length is read from the
stream's usage where the server reports it.
"""

from __future__ import annotations

CHARS_PER_TOKEN = 4.0   # the usual English BPE figure; only the starting guess of the search below
ROUNDS = 4
TOLERANCE = 0.02        # within 2 % (or one token) of the asked length is close enough


def prompt_at(text: str, index: int, chars: int) -> str:
    """Pure: `chars` characters of `text` from an offset that differs per index, starting at a word; the text is
    repeated when shorter than asked."""
    chars = max(1, chars)
    if len(text) < chars + 1:
        text = (text + "\n\n") * (chars // max(1, len(text)) + 2)
    span = len(text) - chars
    offset = (index * 7919 * 13) % span    # a prime stride: distinct offsets for the first span/gcd requests
    space = text.find(" ", offset, offset + 40)
    if 0 <= space < span:
        offset = space + 1
    return text[offset:offset + chars]


def rescale(chars: int, asked: int, served: int) -> int:
    """Pure: the character count that should give `asked` tokens if `chars` gave `served`."""
    return max(1, round(chars * asked / max(1, served)))


def close_enough(asked: int, served: int) -> bool:
    return abs(served - asked) <= max(1, TOLERANCE * asked)
