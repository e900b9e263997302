"""Page rendering: one layout (header, navigation, skip link) around each page's template.

Templates are `string.Template` files in `templates/`; every value put into them is escaped here
or built from escaped parts, so data from orders and labs never becomes markup.
"""

from __future__ import annotations

import html
import json
from functools import cache
from pathlib import Path
from string import Template
from typing import Any

from protocol.model import Design
from protocol.okh import materials

TEMPLATES = Path(__file__).with_name("templates")
STATIC = Path(__file__).with_name("static")
NAV = (("/", "Map"), ("/order", "Order"), ("/network", "Network"))


@cache
def _template(name: str) -> Template:
    return Template((TEMPLATES / f"{name}.html").read_text(encoding="utf-8"))


def render(name: str, title: str, current: str, scripts: tuple[str, ...] = (), **values: str) -> str:
    """The whole page: layout + the named template filled with `values` (already safe HTML)."""
    here = ' aria-current="page"'
    nav = "".join(
        f'<li><a href="{href}"{here if href == current else ""}>{label}</a></li>' for href, label in NAV
    )
    tags = "".join(f'<script src="/static/{html.escape(s)}" defer></script>' for s in scripts)
    body = _template(name).substitute(values)
    return _template("layout").substitute(title=html.escape(title), nav=nav, scripts=tags, body=body)


def data_attr(value: Any) -> str:
    """A JSON value as the content of an HTML attribute (escaped)."""
    return html.escape(json.dumps(value, separators=(",", ":")), quote=True)


def design_options(designs: dict[str, Design]) -> tuple[str, str]:
    """The design picker's <option>s and, per design, what it needs (licence, processes, materials)."""
    units = {name: m.unit for name, m in materials().items()}
    options, details = [], []
    for design in sorted(designs.values(), key=lambda d: d.name):
        options.append(f'<option value="{html.escape(design.id)}">{html.escape(design.name)}</option>')
        needs = ", ".join(
            f"{html.escape(m)} {amount:g} {html.escape(units.get(m, ''))}".rstrip()
            for m, amount in sorted(design.materials_per_unit().items())
        )
        processes = ", ".join(sorted(design.processes()))
        details.append(
            f'<div class="design-detail" data-design="{html.escape(design.id)}" hidden>'
            f"<dl><dt>Licence</dt><dd>{html.escape(design.licence)}</dd>"
            f"<dt>Source</dt><dd>{html.escape(design.source)}</dd>"
            f"<dt>Machines needed</dt><dd>{html.escape(processes)}</dd>"
            f"<dt>Materials per unit</dt><dd>{needs or 'none listed'}</dd>"
            f"<dt>Machine time per unit</dt><dd>{design.minutes_per_unit():g} minutes</dd></dl></div>"
        )
    return "".join(options), "".join(details)
