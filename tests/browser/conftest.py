"""Browser tests: the map pages in Debian's headless Chromium, driven by Selenium, against `gridsvc serve`.

The service runs in its own process on a database of its own (the small demo city, plus what the tests
need committed: API keys, a draft plan, a routed case), so nothing here touches the shared demo database.
The base map points at a closed loopback port, as in CI where no tile server can be reached: the pages
must work without it. Screenshots go to ``.gridsvc/artefacts/browser/`` (``GRIDSVC_ARTEFACTS`` overrides
it); with ``GRIDSVC_SCREENSHOTS_TO_DOCS=1`` the one of each page is also copied to ``docs/screenshots/``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from gridsvc.db.engine import make_engine
from gridsvc.settings import Settings
from tests.conftest import free_port, scratch_database, served_gridsvc

REPO = Path(__file__).resolve().parents[2]
ARTEFACTS = Path(os.environ.get("GRIDSVC_ARTEFACTS", REPO / ".gridsvc" / "artefacts")) / "browser"
DOCS_SCREENSHOTS = REPO / "docs" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@dataclass(frozen=True)
class BrowserCity:
    """The browser tests' database and what they made in it."""

    url: str
    keys: dict[str, str]
    draft_plan_id: int
    case_code: str
    case_lon: float
    case_lat: float


@pytest.fixture(scope="session")
def browser_city(database_url: str, test_settings: Settings) -> Iterator[BrowserCity]:
    """A database of its own with the small demo, one key per role, a draft plan and a routed case."""
    from gridsvc.services import cases, demo, planning
    from gridsvc.services.access import LOCAL_DISPATCHER, LOCAL_OPERATOR, create_key

    url = scratch_database(database_url, "gridsvc_browser")
    engine = make_engine(url)
    sessions = sessionmaker(bind=engine, expire_on_commit=False)
    demo.load_demo(sessions, settings=test_settings, scale="small", seed=2023, replace=False)
    keys = {
        role: create_key(sessions, name=f"浏览器测试-{role}", role=role, actor=LOCAL_OPERATOR).secret
        for role in ("dispatcher", "field", "gis_staff", "reporter")
    }
    with sessions() as session:
        communities = (
            session.execute(text("SELECT code FROM community ORDER BY code LIMIT 2")).scalars().all()
        )
        # A street lamp somewhere in the middle of the demo, for a case whose routing names it.
        lamp = session.execute(
            text(
                "SELECT ST_X(geom), ST_Y(geom) FROM component WHERE class_code = '0118' AND valid_to IS NULL "
                "ORDER BY code OFFSET 500 LIMIT 1"
            )
        ).one()
    draft = planning.draw_plan(
        sessions,
        test_settings,
        planning.DrawParams(communities=list(communities), households_min=200, households_max=350),
        actor=LOCAL_OPERATOR,
    )
    routed = cases.intake_case(
        sessions,
        test_settings,
        cases.CaseIntake(
            kind="component",
            class_code="0118",
            x=float(lamp[0]) + 0.00005,
            y=float(lamp[1]),
            crs="cgcs2000",
            channel="app",
            description="路灯不亮（浏览器测试）",
        ),
        actor=LOCAL_DISPATCHER,
    )
    case = routed.case
    yield BrowserCity(
        url=url,
        keys=keys,
        draft_plan_id=draft.plan_id,
        case_code=str(case["request_code"]),
        case_lon=float(case["lon"]),
        case_lat=float(case["lat"]),
    )
    engine.dispose()


@pytest.fixture(scope="session")
def browser_sessions(browser_city: BrowserCity) -> Iterator[sessionmaker[Session]]:
    """Read-only sessions on the browser tests' database (for expected answers)."""
    engine = make_engine(browser_city.url)
    yield sessionmaker(bind=engine, expire_on_commit=False)
    engine.dispose()


@pytest.fixture(scope="session")
def served_pages(browser_city: BrowserCity) -> Iterator[str]:
    """`gridsvc serve` on the browser database; the base map is a port nobody listens on."""
    with served_gridsvc(
        browser_city.url,
        BASEMAP_URL=f"http://127.0.0.1:{free_port()}/{{z}}/{{x}}/{{y}}.png",
        ESCALATION_INTERVAL_SECONDS="0",
    ) as base:
        yield base


@pytest.fixture(scope="session")
def driver() -> Iterator[Any]:
    """One headless Chromium for the run (Debian's chromium and chromedriver)."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        # Not a skip: a missing browser must fail the run, never pass it quietly.
        pytest.fail(
            "the browser tests need Debian's chromium and chromium-driver "
            "(python3 -m gridsvc.bootstrap test installs them)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--lang=zh-CN",
        "--window-size=1280,800",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    browser.set_script_timeout(20)
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture
def page(driver: Any, served_pages: str) -> Callable[..., Any]:
    """Open a page at a viewport size (a fresh tab state: no key kept from an earlier test)."""

    def open_page(path: str, *, width: int = 1280, height: int = 800, mobile: bool = False) -> Any:
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
        )
        driver.get(f"{served_pages}/health")
        driver.execute_script("window.sessionStorage.clear()")
        driver.get_log("browser")  # drop what earlier pages logged
        driver.get(f"{served_pages}{path}")
        return driver

    return open_page


def screenshot(driver: Any, name: str, *, docs_name: str | None = None) -> Path:
    """Save the viewport as ``ARTEFACTS/name.png`` (and to docs/screenshots when asked to)."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    if docs_name and os.environ.get("GRIDSVC_SCREENSHOTS_TO_DOCS") == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_SCREENSHOTS / docs_name)
    return path


def console_errors(driver: Any) -> list[str]:
    """The page's console errors, less the base map's failed tiles (unreachable on purpose) and the
    favicon of the /health page the fixture opens first."""
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE"
        and ".png" not in entry["message"]
        and "favicon.ico" not in entry["message"]
    ]
