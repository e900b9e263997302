"""The pages' colours meet WCAG 2 contrast (4.5:1 for text) for every text colour on its background."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

CSS = Path(__file__).resolve().parents[2] / "planner" / "web" / "static" / "app.css"
#: Text colour on background colour, as the stylesheet pairs them.
PAIRS = [
    (text, background)
    for background in ("--bg", "--panel")
    for text in ("--ink", "--muted", "--link", "--ok", "--bad", "--warn")
] + [("#ffffff", "--accent"), ("--bad", "#ffffff")]


def colours() -> dict[str, str]:
    root = re.search(r":root\s*{([^}]*)}", CSS.read_text()).group(1)
    return dict(re.findall(r"(--[\w-]+):\s*(#[0-9a-fA-F]{6})", root))


def luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.parametrize(("text", "background"), PAIRS)
def test_text_contrast_is_at_least_four_and_a_half_to_one(text: str, background: str) -> None:
    palette = colours()
    fg, bg = palette.get(text, text), palette.get(background, background)
    assert contrast(fg, bg) >= 4.5, f"{text} {fg} on {background} {bg}: {contrast(fg, bg):.2f}:1"
