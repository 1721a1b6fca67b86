"""Byte units, defined once."""

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


def human_size(n: float | None) -> str:
    """``n`` bytes as people read them (``18.2 MiB``); ``?`` when unknown."""
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
