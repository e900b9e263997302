"""The HTML report: self-contained (no network), and its map really draws in a headless browser."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from scenarios.report import TOPOJSON_NAME, write_report
from scenarios.run import run_scenario
from scenarios.spec import load_scenario
from scenarios.trade import TRADE_KEYS, TRADE_SCALES, trade_off
from tests.browser import CHROMIUM, FLAGS, find_chromium


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("report")
    from tests.scenarios.conftest import write_scenario

    loaded = load_scenario(write_scenario(folder))
    result = run_scenario(loaded)
    result.trade = trade_off(loaded)
    path = folder / "tiny.html"
    write_report(result, path)
    return path


def test_report_is_self_contained(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    assert text.count("Plotly.newPlot") == 4  # map, timeline, load, km against days
    assert f'"{TOPOJSON_NAME}"' in text and '"countries"' in text
    assert not re.search(r"<script[^>]+src=", text), "no external script"
    assert not re.search(r"<link[^>]+href=\"https?:", text), "no external stylesheet"
    assert "cdn.plot.ly/plotly" not in text.split("<script>")[0]
    for policy in ("cosmolocal", "central-factory", "nearest-greedy", "board"):
        assert policy in text
    assert "lower bound" in text and "Defra" in text
    assert "Kilometres against days" in text and "time \\u00d716" in text  # plotly escapes the ×


def test_the_trade_off_replays_every_weighting(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from tests.scenarios.conftest import write_scenario

    loaded = load_scenario(write_scenario(tmp_path))
    with ThreadPoolExecutor(max_workers=2) as executor:  # any Executor will do: the seam is the point
        rows = trade_off(loaded, (0.01, 16.0), executor)
    assert [r["time_weight_scale"] for r in rows] == [0.01, 16.0]
    assert all(set(TRADE_KEYS) <= set(r) for r in rows)
    assert rows[0]["km_per_unit"] <= rows[1]["km_per_unit"] + 1e-9
    assert len(TRADE_SCALES) >= 5


def _chromium_available() -> Path | None:
    if CHROMIUM.exists():
        return CHROMIUM
    if shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], capture_output=True, timeout=600)
    found = find_chromium()  # looked for again: it was just installed
    return found if found.exists() else None


def test_report_map_draws_offline_in_a_real_browser(report: Path, tmp_path: Path) -> None:
    chromium = _chromium_available()
    if chromium is None:
        pytest.skip("chromium is not installed and could not be installed with apt-get (make browser)")
    playwright = pytest.importorskip("playwright.sync_api")
    requests: list[str] = []
    with playwright.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            tempfile.mkdtemp(prefix="chromium-"), executable_path=str(chromium), args=FLAGS, headless=True
        )
        try:
            page = context.new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.goto(report.as_uri())
            page.wait_for_selector("#map .geo .countries path", state="attached", timeout=30_000)
            outline = page.eval_on_selector_all(
                "#map .geo .countries path, #map .geo .land path",
                "els => els.map(e => { const b = e.getBBox(); return (e.getAttribute('d') || '').length > 10"
                " ? b.width * b.height : 0; })",
            )
            points = page.eval_on_selector_all("#map .scattergeo .point", "els => els.length")
            lines = page.eval_on_selector_all("#map .scattergeo .js-line", "els => els.length")
            timeline = page.eval_on_selector_all("#timeline .scatterlayer .trace", "els => els.length")
            shot = tmp_path / "map.png"
            page.locator("#map").screenshot(path=str(shot))
        finally:
            context.close()
    assert outline and max(outline) > 10_000, "land and country outlines drawn over the map area"
    assert points >= 3 + 2, "labs and delivery points drawn"
    assert lines >= 1, "flows drawn"
    assert timeline >= 5, "demand and one line per policy"
    assert shot.stat().st_size > 10_000
    outside = [u for u in requests if not u.startswith(("file:", "data:", "blob:"))]
    assert outside == [], f"the report reached out to the network: {outside[:3]}"
