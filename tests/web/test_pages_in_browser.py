"""The web pages in a real headless Chromium against real processes: a planner and three labs, one of
them run by its operator (`node join --manual`).

A hospital orders through the form and follows the order to done on its status page (live, over
server-sent events, without reloading); the order shows on the map; the manual lab's operator
refuses a job on the lab page and the order's status page shows the units moving to another lab.
Screenshots are written to test-artifacts/screenshots/ for a person to look at.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from protocol.model import Lab, Location, Machine
from scenarios.demo import Mesh, start_mesh
from tests.browser import CHROMIUM, FLAGS

pytestmark = pytest.mark.e2e
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
SPEED = 6000.0
MANUAL = "fablab-grenoble"


def _lab(lab_id: str, name: str, lat: float, lon: float, place: str) -> Lab:
    return Lab(
        id=lab_id,
        name=name,
        location=Location(lat=lat, lon=lon, place=place),
        machines=[
            Machine(id="printer-1", processes=["fdm"], hours_per_day=16, tags={"bed_mm": 250}),
            Machine(id="printer-2", processes=["fdm"], hours_per_day=16, tags={"bed_mm": 250}),
            Machine(id="laser-1", processes=["laser"], hours_per_day=12),
            Machine(id="bench-1", processes=["assembly"], speed=2.0, hours_per_day=12),
        ],
        stock={"petg": 3.0, "pla": 1.0, "pet_sheet_0_5": 5.0, "elastic": 40.0},
    )


LABS = [
    _lab("fablab-lyon", "Fablab Lyon", 45.75, 4.85, "Lyon"),
    _lab(MANUAL, "Fablab Grenoble", 45.19, 5.72, "Grenoble"),
    _lab("fablab-valence", "Fablab Valence", 44.93, 4.89, "Valence"),
]


@dataclass
class Running:
    """The running mesh and the operator tokens the tests use."""

    mesh: Mesh
    operator_token: str
    lyon_token: str

    @property
    def api(self) -> str:
        """The planner's HTTP address."""
        return self.mesh.api


TOKEN_CREATE = [sys.executable, "-m", "cosmolocal", "planner", "token", "create", "--role", "operator"]


def _token(db: Path, lab_id: str) -> str:
    created = subprocess.run(
        [*TOKEN_CREATE, "--lab", lab_id, "--db", str(db)],
        capture_output=True,
        text=True,
        check=True,
    )
    return created.stdout.strip()


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    workdir = tmp_path_factory.mktemp("web-mesh")
    started = start_mesh(
        LABS,
        workdir,
        SPEED,
        heartbeat_ms=500,
        planner_args=["--solve-seconds", "2"],
        node_args={MANUAL: ["--manual"]},
    )
    try:
        db = workdir / "planner.db"
        yield Running(started, _token(db, MANUAL), _token(db, "fablab-lyon"))
    finally:
        started.stop()
        for log in sorted(workdir.glob("*.log")):  # shown by pytest when a test failed
            print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")


def _get(api: str, path: str) -> Any:
    try:
        response = httpx.get(api + path, timeout=2.0)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("chromium is not on the PATH nor in $COSMOLOCAL_CHROMIUM (run `make browser`)")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        try:
            context = p.chromium.launch_persistent_context(
                tempfile.mkdtemp(prefix="chromium-"),
                executable_path=str(CHROMIUM),
                args=FLAGS,
                headless=True,
                viewport={"width": 1100, "height": 900},
            )
        except Exception as exc:  # the browser cannot start here at all
            pytest.skip(f"chromium could not be started: {exc}")
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser: Any, mesh: Running) -> Iterator[Any]:
    page = browser.new_page()
    outside: list[str] = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith((mesh.api, "data:")) else None)
    yield page
    page.close()
    assert outside == [], "the pages fetched something from outside the planner"


def _shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _fill_order(page: Any, design: str, quantity: str, place: str, lat: str, lon: str) -> None:
    page.select_option("#design", design)
    page.fill("#quantity", quantity)
    page.select_option("#priority", "urgent")
    page.fill("#place", place)
    page.fill("#lat", lat)
    page.fill("#lon", lon)


def test_order_through_the_form_see_it_on_the_map_and_follow_it_to_done(page: Any, mesh: Running) -> None:
    page.goto(mesh.api + "/order")
    _fill_order(page, "finger-splint", "0", "Lyon hospital", "45.76", "4.84")
    page.click("#submit")  # this planner takes orders with a requester token only
    page.wait_for_selector("#token-error:not([hidden])")
    assert page.get_attribute("#token", "aria-invalid") == "true"
    assert "requester token" in page.inner_text("#token-error")
    # A mistake is shown next to its field, and the field says so to assistive technology.
    page.fill("#token", mesh.mesh.token)
    page.keyboard.press("Tab")
    page.click("#submit")
    page.wait_for_selector("#quantity-error:not([hidden])")
    assert page.get_attribute("#quantity", "aria-invalid") == "true"
    assert page.get_attribute("#token", "aria-invalid") is None
    assert "greater than 0" in page.inner_text("#quantity-error")
    _shot(page, "01-order-form-error")

    page.fill("#quantity", "12")
    page.focus("#submit")
    page.keyboard.press("Enter")  # the form works from the keyboard
    page.wait_for_url("**/order/o-*", timeout=10_000)
    order_id = page.url.rsplit("/", 1)[1]
    page.wait_for_selector("#live-state.on", timeout=10_000)
    # Live: the page follows the order to done through the event stream, without reloading.
    page.wait_for_selector("#order-page[data-state='done']", timeout=30_000)
    assert int(page.get_attribute("body", "data-live-events") or 0) > 0
    assert page.inner_text("#overall-text") == "12 of 12"
    page.wait_for_selector("#explanation li .chosen")
    assert "Fablab Lyon" in page.inner_text("#allocations")
    _shot(page, "02-order-status-done")

    page.goto(mesh.api + "/")
    page.wait_for_selector("#map .geo .countries path", state="attached", timeout=20_000)
    page.wait_for_function(
        f"document.getElementById('map').getAttribute('data-orders')?.includes('{order_id}')",
        timeout=10_000,
    )
    assert page.locator(f"#orders-table tr[data-order='{order_id}']").count() == 1
    points = page.eval_on_selector_all("#map .scattergeo .point", "els => els.length")
    assert points >= len(LABS) + 1  # labs and the delivery point
    _shot(page, "03-map")

    page.goto(mesh.api + "/order")  # the browser remembers the requester token
    assert page.input_value("#token") == mesh.mesh.token

    page.goto(mesh.api + "/network")
    page.wait_for_selector("#plan dd")
    assert "Defra" in page.inner_text("#co2-source")
    facts = page.inner_text("#plan")  # what the bounds hold for, the last solve's and all plans'
    assert "Bound covers, all plans" in facts and "every valid plan, on any lab" in facts
    page.wait_for_selector("#fill-chart .scatterlayer path.js-line", state="attached")
    _shot(page, "04-network")

    # On a phone (360 px wide) the form and the order page fit the width: no sideways scrolling.
    page.set_viewport_size({"width": 360, "height": 740})
    for path, name in (("/order", "09-phone-order-form"), (f"/order/{order_id}", "10-phone-order-status")):
        page.goto(mesh.api + path)
        page.wait_for_selector("main")
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{path} is {overflow} px wider than a phone screen"
        _shot(page, name)
    page.set_viewport_size({"width": 1100, "height": 900})

    # The lab that made it sees the job on its machine schedule (the planner's view of it).
    page.goto(f"{mesh.api}/lab/fablab-lyon?token={mesh.lyon_token}")
    page.wait_for_selector("#gantt .barlayer .point path", state="attached", timeout=10_000)
    assert "done" in page.inner_text("#jobs")
    _shot(page, "04b-lab-schedule")


def test_the_operator_refuses_a_job_and_it_moves_to_another_lab(page: Any, mesh: Running) -> None:
    page.goto(mesh.api + "/order")
    _fill_order(page, "face-shield", "8", "Grenoble hospital", "45.18", "5.73")
    page.fill("#token", mesh.mesh.token)
    page.click("#submit")
    page.wait_for_url("**/order/o-*", timeout=10_000)
    order_url = page.url
    page.wait_for_selector("#allocations tr[data-state='assigned']", timeout=20_000)
    assert "Fablab Grenoble" in page.inner_text("#allocations")  # the nearest lab, run by hand
    _shot(page, "05-order-awaiting-operator")

    lab_page = page.context.new_page()
    lab_page.goto(f"{mesh.api}/lab/{MANUAL}?token={mesh.operator_token}")
    assert "token=" not in lab_page.url  # taken out of the address bar
    offer = lab_page.wait_for_selector("#awaiting article.offer", timeout=10_000)
    assignment = offer.get_attribute("data-assignment")
    lab_page.wait_for_selector("#gantt-empty:not([hidden])")  # nothing accepted yet
    lab_page.wait_for_selector("#transfers-empty:not([hidden])")  # no material shipped to or from it
    _shot(lab_page, "06-lab-page-offer")
    # Refusing needs a reason; the error sits next to the reason field.
    lab_page.click(f"article[data-assignment='{assignment}'] button.refuse")
    lab_page.wait_for_selector(f"#reason-{assignment}-error:not([hidden])")
    # The operator's decision works from the keyboard: type the reason, Tab to Refuse, press Enter.
    lab_page.focus(f"#reason-{assignment}")
    lab_page.keyboard.type("laser under repair until Monday")
    lab_page.keyboard.press("Tab")
    assert lab_page.evaluate("document.activeElement.classList.contains('refuse')")
    lab_page.keyboard.press("Enter")
    lab_page.wait_for_selector(
        f"#jobs tr[data-assignment='{assignment}'][data-state='refused']", timeout=10_000
    )
    assert "laser under repair" in lab_page.inner_text("#jobs")
    # The refusal weakened the lab's face-shield trail: shown beside the mean of the labs able to
    # make face shields, with both caps of its discount.
    lab_page.reload()
    row = lab_page.wait_for_selector("#trails tbody tr", timeout=10_000)
    cells = [cell.inner_text() for cell in row.query_selector_all("td")]
    assert cells[0] == "face-shield" and len(cells) == 6
    _shot(lab_page, "07-lab-page-refused")
    lab_page.close()

    # The order's page shows the refusal and, live, the units going to another lab and being made.
    page.goto(order_url)
    page.wait_for_selector(f"#allocations tr[data-assignment='{assignment}'][data-state='refused']")
    assert "laser under repair until Monday" in page.inner_text("#allocations")
    page.wait_for_selector(
        f"#allocations tr[data-assignment]:not([data-assignment='{assignment}'])", timeout=20_000
    )
    labs_now = set((page.get_attribute("#order-page", "data-labs") or "").split())
    assert labs_now - {MANUAL}, "a lab that refused an order is not offered the same order again"
    page.wait_for_selector("#order-page[data-state='done']", timeout=30_000)
    _shot(page, "08-order-moved-and-done")
    view = httpx.get(order_url.replace("/order/", "/orders/"), timeout=5).json()
    made_by = {a["lab_id"] for a in view["allocations"] if a["state"] == "done"}
    assert made_by and MANUAL not in made_by
