"""Numbers and times the way the Docker CLI prints them (docker/go-units).

``human_size`` is HumanSizeWithPrecision(size, 3): decimal units, three
significant digits, Go's ``%g`` formatting (``1.84kB``, ``69.9MB``, ``119MB``).
``human_duration`` is HumanDuration (``About an hour``, ``5 months``).
"""

from __future__ import annotations

import math
import time
import unicodedata

_DECIMAL = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


def _go_g(value: float, precision: int) -> str:
    """Go's ``%.*g``: like C's, but the exponent has at least two digits (same as Python)."""
    return f"{value:.{precision}g}"


def _scaled(size: float, base: float, units: tuple[str, ...]) -> tuple[float, str]:
    i = 0
    while size >= base and i < len(units) - 1:
        size /= base
        i += 1
    return size, units[i]


def human_size(size: float, precision: int = 3) -> str:
    value, unit = _scaled(float(size), 1000.0, _DECIMAL)
    return _go_g(value, precision) + unit


def bytes_size(size: float) -> str:
    """Binary units, 4 significant digits (``23.47GiB``): ``docker info``'s Total Memory."""
    value, unit = _scaled(float(size), 1024.0, _BINARY)
    return _go_g(value, 4) + unit


def human_duration(seconds_elapsed: float) -> str:
    seconds = int(seconds_elapsed)
    if seconds < 1:
        return "Less than a second"
    if seconds == 1:
        return "1 second"
    if seconds < 60:
        return f"{seconds} seconds"
    minutes = int(seconds_elapsed / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(math.floor(seconds_elapsed / 3600 + 0.5))
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds_elapsed / 3600) // 24 // 365} years"


def created_since(created: int, now: float | None = None) -> str:
    """``5 months ago``, or ``N/A`` for an image with no creation time."""
    if not created:
        return "N/A"
    now = time.time() if now is None else now
    return human_duration(now - created) + " ago"


def truncate_id(image_id: str) -> str:
    """``sha256:fce289e99eb9...`` -> ``fce289e99eb9`` (the CLI's TruncateID)."""
    if ":" in image_id:
        image_id = image_id.split(":", 1)[1]
    return image_id[:12]


def _char_width(ch: str) -> int:
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def ellipsis(text: str, width: int) -> str:
    """The CLI's Ellipsis: fit ``text`` in ``width`` display columns (East
    Asian wide characters count two), ending with ``…`` when cut."""
    if width <= 0:
        return ""
    if width == 1:
        return text[:1]
    if sum(_char_width(c) for c in text) <= width:
        return text
    used = 0
    for i, ch in enumerate(text):
        if used + _char_width(ch) > width - 1:
            return text[:i] + "…"
        used += _char_width(ch)
    return text
