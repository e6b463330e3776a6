"""The map pages as a user sees them: a real headless Chromium against `gridsvc serve` (issue 6)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from gridsvc.services import locate, pages
from gridsvc.services.access import LOCAL_OPERATOR
from gridsvc.settings import Settings
from tests.browser.conftest import BrowserCity, console_errors, screenshot

WAIT_S = 20


def wait_for(driver: Any, script: str, timeout: float = WAIT_S) -> Any:
    """Wait until the JavaScript expression is truthy; return its value."""
    return WebDriverWait(driver, timeout).until(lambda d: d.execute_script(f"return {script}"))


def shown(driver: Any, element_id: str) -> Any:
    """The element once it is displayed (Leaflet fades popups in: at opacity 0 it has no visible text)."""
    return WebDriverWait(driver, WAIT_S).until(
        expected_conditions.visibility_of_element_located((By.ID, element_id))
    )


def click_at(driver: Any, lon: float, lat: float) -> None:
    """A real mouse click on the map at a place."""
    container = driver.find_element(By.CSS_SELECTOR, ".folium-map")
    x, y = driver.execute_script(
        "var p = gridsvcPage.map.latLngToContainerPoint([arguments[1], arguments[0]]); return [p.x, p.y];",
        lon,
        lat,
    )
    size = container.size
    ActionChains(driver).move_to_element_with_offset(
        container, x - size["width"] / 2, y - size["height"] / 2
    ).click().perform()


def quiet_grid(sessions: sessionmaker[Session]) -> tuple[str, float, float, dict[str, Any]]:
    """A responsibility grid of the active plan, and a point inside it with no station, case or other
    grid within 60 m: a click there can only hit that grid."""
    with sessions() as session:
        row = session.execute(
            text(
                """
                WITH p AS (
                    SELECT r.code, r.worker_name, c.name AS community_name, r.geom,
                           ST_PointOnSurface(r.geom) AS pt
                    FROM responsibility_grid r JOIN grid_plan g ON g.id = r.plan_id AND g.status = 'active'
                    JOIN community c ON c.code = r.community_code
                )
                SELECT p.code, ST_X(p.pt), ST_Y(p.pt), p.worker_name, p.community_name FROM p
                WHERE ST_DWithin(ST_Boundary(p.geom)::geography, p.pt::geography, 60) IS FALSE
                  AND NOT EXISTS (SELECT 1 FROM station s
                                  WHERE ST_DWithin(s.geom::geography, p.pt::geography, 60))
                  AND NOT EXISTS (SELECT 1 FROM case_record k WHERE k.status NOT IN ('closed', 'rejected')
                                  AND ST_DWithin(k.geom::geography, p.pt::geography, 60))
                ORDER BY p.code LIMIT 1
                """
            )
        ).one()
    return row[0], float(row[1]), float(row[2]), {"worker": row[3], "community": row[4]}


def test_map_shows_nothing_without_a_key_then_signs_in(
    page: Callable[..., Any], browser_city: BrowserCity
) -> None:
    driver = page("/map")
    wait_for(driver, "!document.getElementById('gs-signin').hidden")
    assert driver.find_element(By.ID, "gs-panel").get_attribute("hidden") is not None
    tile_requests = driver.execute_script(
        "return performance.getEntriesByType('resource').filter(e => e.name.includes('/v1/')).length"
    )
    assert tile_requests == 0  # no key, no data call at all

    driver.find_element(By.ID, "gs-key").send_keys(browser_city.keys["field"])
    driver.find_element(By.ID, "gs-signin-button").click()
    error = shown(driver, "gs-signin-error")
    assert "field" in error.text and "dispatcher" in error.text  # the wrong role is told, not let in

    driver.find_element(By.ID, "gs-key").send_keys(browser_city.keys["dispatcher"])
    driver.find_element(By.ID, "gs-signin-button").click()
    wait_for(driver, "window.gridsvcPage && gridsvcPage.ready")
    assert driver.find_element(By.ID, "gs-user-name").text == "浏览器测试-dispatcher · dispatcher"
    assert (
        driver.execute_script("return sessionStorage.getItem('gridsvc.apiKey')")
        == browser_city.keys["dispatcher"]
    )


def test_dispatcher_map_layers_legend_grid_and_case_popups(
    page: Callable[..., Any], browser_city: BrowserCity, browser_sessions: sessionmaker[Session]
) -> None:
    code, lon, lat, expected = quiet_grid(browser_sessions)
    driver = page(f"/map?key={browser_city.keys['dispatcher']}&lon={lon}&lat={lat}&z=16")
    wait_for(driver, "window.gridsvcPage && gridsvcPage.ready && gridsvc.loaded.responsibility_grids")
    assert "key=" not in driver.current_url  # taken out of the address bar at once

    overlays = [
        e.text for e in driver.find_elements(By.CSS_SELECTOR, ".leaflet-control-layers-overlays label")
    ]
    assert overlays == [
        "社区边界 communities",
        "责任网格 responsibility grids",
        "单元网格 unit grids",
        "部件 components",
        "城管工作站 stations",
        "在办案件 open cases",
    ]
    legend = driver.find_element(By.ID, "gs-legend").text
    assert "每网格在办案件" in legend and "≥ 7" in legend and "超期案件" in legend
    assert driver.execute_script("return gridsvc.stats.responsibility_grids") > 0
    # At zoom 16 every layer is shown; at 12 the components and unit grids wait for the user to zoom in.
    assert "放大到" not in driver.find_element(By.ID, "gs-zoom-hints").text

    click_at(driver, lon, lat)
    popup = shown(driver, "gs-grid-popup")
    assert popup.find_element(By.CSS_SELECTOR, ".gs-grid-code").text == code
    assert expected["community"] in popup.text and (expected["worker"] or "") in popup.text
    screenshot(driver, "dispatcher-map-grid-popup")

    # A case: its routing reasons, deadline and history, read from GET /v1/cases/{code}.
    loads = driver.execute_script("return gridsvc.loaded.cases")
    driver.execute_script(
        "gridsvcPage.map.closePopup();"
        "gridsvcPage.map.setView([arguments[1], arguments[0]], 17, {animate: false});",
        browser_city.case_lon,
        browser_city.case_lat,
    )
    wait_for(driver, f"gridsvc.loaded.cases > {loads}")
    click_at(driver, browser_city.case_lon, browser_city.case_lat)
    case_popup = shown(driver, "gs-case-popup")
    # The details make the popup taller; the map pans until all of it is in view.
    heading = case_popup.find_element(By.TAG_NAME, "h3")
    WebDriverWait(driver, WAIT_S).until(lambda d: "处理记录" in case_popup.text and heading.text)
    assert heading.text == f"案件 {browser_city.case_code}"
    screenshot(driver, "dispatcher-map-case-popup")
    assert "归属 owner：" in case_popup.text and "时限 deadlines：" in case_popup.text
    assert re.search(r"intake +→reported", case_popup.text)

    # Filters go to the tile URL: overdue only.
    driver.find_element(By.ID, "gs-case-overdue").click()
    assert "overdue=true" in driver.execute_script("return gridsvcPage.state.layers.cases._url")
    assert console_errors(driver) == []

    # The picture for the README: zoom 14, all open cases, the quiet grid's popup open.
    driver.find_element(By.ID, "gs-case-overdue").click()
    loads = driver.execute_script("return gridsvc.loaded.responsibility_grids")
    driver.execute_script(
        "gridsvcPage.map.closePopup();"
        "gridsvcPage.map.setView([arguments[1], arguments[0]], 14, {animate: false});",
        lon,
        lat,
    )
    wait_for(driver, f"gridsvc.loaded.responsibility_grids > {loads}")
    click_at(driver, lon, lat)
    assert shown(driver, "gs-grid-popup").find_element(By.CSS_SELECTOR, ".gs-grid-code").text == code
    screenshot(driver, "dispatcher-map", docs_name="dispatcher-map.png")


def test_tile_request_returns_features(page: Callable[..., Any], browser_city: BrowserCity) -> None:
    driver = page(f"/map?key={browser_city.keys['dispatcher']}")
    wait_for(driver, "window.gridsvcPage && gridsvcPage.ready")
    # The tile under the case at zoom 15, fetched as the page does and decoded with the page's own
    # Mapbox Vector Tile reader (bundled with VectorGrid).
    decoded = driver.execute_async_script(
        """
        const [lon, lat, key, done] = arguments;
        (async () => {
          const z = 15, n = 2 ** z, r = lat * Math.PI / 180;
          const x = Math.floor((lon + 180) / 360 * n);
          const y = Math.floor((1 - Math.log(Math.tan(r) + 1 / Math.cos(r)) / Math.PI) / 2 * n);
          const answers = {};
          for (const layer of ['responsibility_grids', 'cases']) {
            const url = `/v1/tiles/${layer}/${z}/${x}/${y}.mvt`;
            const response = await fetch(url, {headers: {'X-API-Key': key}});
            const features = new VectorTile(new Pbf(await response.arrayBuffer())).layers[layer];
            answers[layer] = {
              status: response.status,
              type: response.headers.get('content-type'),
              count: features ? features.length : 0,
              properties: Array.from({length: features ? features.length : 0},
                                     (_, i) => features.feature(i).properties),
            };
          }
          return answers;
        })().then(done, (error) => done({error: String(error)}));
        """,
        browser_city.case_lon,
        browser_city.case_lat,
        browser_city.keys["dispatcher"],
    )
    assert "error" not in decoded, decoded
    grids = decoded["responsibility_grids"]
    assert grids["status"] == 200 and grids["type"].startswith("application/vnd.mapbox-vector-tile")
    assert grids["count"] > 0
    assert all(re.fullmatch(r"\d{12}R\d{2}", p["code"]) and p["community_name"] for p in grids["properties"])
    cases = decoded["cases"]
    assert browser_city.case_code in [p["request_code"] for p in cases["properties"]]


def test_field_page_answers_for_the_phone_position(
    driver: Any,
    page: Callable[..., Any],
    browser_city: BrowserCity,
    browser_sessions: sessionmaker[Session],
    test_settings: Settings,
) -> None:
    code, lon, lat, _ = quiet_grid(browser_sessions)
    expected = locate.located_dict(locate.locate_point(browser_sessions, test_settings, lon, lat))
    nearest = pages.nearest_components(browser_sessions, lon, lat, class_code="0118", actor=LOCAL_OPERATOR)
    assert expected["responsibility_grid"]["code"] == code and nearest["components"]

    # The phone's position, set before the page asks for it on load.
    driver.execute_cdp_cmd("Browser.grantPermissions", {"permissions": ["geolocation"]})
    driver.execute_cdp_cmd(
        "Emulation.setGeolocationOverride", {"latitude": lat, "longitude": lon, "accuracy": 8}
    )
    page(f"/field?key={browser_city.keys['field']}", width=390, height=844, mobile=True)
    wait_for(driver, "window.gridsvcPage && gridsvcPage.ready")

    assert driver.find_element(By.ID, "gs-grid-code").text == code
    call = driver.find_element(By.ID, "gs-station-call")
    assert call.get_attribute("href") == "tel:" + re.sub(r"[^0-9+]", "", expected["station"]["phone"])
    # A switchboard's extension is dialled after a pause, not as more digits of the number.
    assert driver.execute_script("return gridsvc.telHref('(0531)86001234转8001')") == "tel:053186001234,8001"
    assert expected["station"]["name"] in driver.find_element(By.ID, "gs-answer").text
    shown = [
        li.get_attribute("data-code") for li in driver.find_elements(By.CSS_SELECTOR, "#gs-components li")
    ]
    assert shown == [c["code"] for c in nearest["components"]]
    assert driver.find_elements(By.ID, "gs-boundary-warning") == []
    first = nearest["components"][0]
    for place in ((lon, lat), (first["lon"], first["lat"])):  # the map shows both
        assert driver.execute_script(
            "return gridsvcPage.map.getBounds().contains([arguments[1], arguments[0]])", *place
        )
    # Usable on the phone: nothing wider than the screen, the call button inside it.
    assert driver.execute_script("return document.documentElement.scrollWidth") <= 390
    assert call.rect["x"] >= 0 and call.rect["x"] + call.rect["width"] <= 390
    screenshot(driver, "field", docs_name="field.png")

    # A tapped point answers too (the map's centre: the position found above, inside the city).
    before = driver.execute_script("return gridsvcPage.answers")
    ActionChains(driver).move_to_element(
        driver.find_element(By.CSS_SELECTOR, ".folium-map")
    ).click().perform()
    wait_for(driver, f"gridsvcPage.answers > {before}")
    assert driver.find_element(By.ID, "gs-field-status").text.startswith("地图选点")
    assert console_errors(driver) == []


def test_field_page_warns_near_a_boundary(
    page: Callable[..., Any],
    browser_city: BrowserCity,
    browser_sessions: sessionmaker[Session],
    test_settings: Settings,
) -> None:
    with browser_sessions() as session:
        # The middle of an edge between two unit grids of different responsibility grids.
        lon, lat = session.execute(
            text(
                """
                SELECT ST_X(pt), ST_Y(pt) FROM (
                    SELECT ST_LineInterpolatePoint(edge, 0.5) AS pt
                    FROM unit_grid a JOIN unit_grid b ON a.plan_id = b.plan_id AND a.id < b.id
                      AND a.responsibility_grid_id <> b.responsibility_grid_id AND ST_Touches(a.geom, b.geom)
                    JOIN grid_plan g ON g.id = a.plan_id AND g.status = 'active',
                    LATERAL ST_LineMerge(ST_Intersection(ST_Boundary(a.geom), ST_Boundary(b.geom))) AS edge
                    WHERE GeometryType(edge) = 'LINESTRING'
                    ORDER BY a.code LIMIT 1
                ) AS edge
                """
            )
        ).one()
    expected = locate.located_dict(locate.locate_point(browser_sessions, test_settings, lon, lat))
    assert expected["near_boundary"]

    driver = page(
        f"/field?key={browser_city.keys['field']}&lon={lon}&lat={lat}", width=390, height=844, mobile=True
    )
    wait_for(driver, "window.gridsvcPage && gridsvcPage.ready")
    warning = shown(driver, "gs-boundary-warning")
    assert "靠近网格边界" in warning.text
    assert all(c["responsibility_grid_code"] in warning.text for c in expected["candidates"])
    assert driver.find_element(By.ID, "gs-grid-code").text == expected["responsibility_grid"]["code"]
    screenshot(driver, "field-near-boundary")


def test_plan_review_map(
    page: Callable[..., Any], browser_city: BrowserCity, browser_sessions: sessionmaker[Session]
) -> None:
    review = pages.plan_review(browser_sessions, browser_city.draft_plan_id, actor=LOCAL_OPERATOR)
    driver = page(f"/plans/{browser_city.draft_plan_id}/map?key={browser_city.keys['gis_staff']}")
    wait_for(driver, "window.gridsvcPage && gridsvcPage.ready && gridsvc.loaded.responsibility_grids >= 2")

    title = driver.find_element(By.ID, "gs-plan-title").text
    assert title.startswith(f"方案 {browser_city.draft_plan_id} 重新划分方案") and "draft" in title
    figures = driver.find_element(By.ID, "gs-change-figures").text.split("\n")
    counts = dict(zip(figures[::2], figures[1::2], strict=True))
    assert counts["责任网格 新增 added"] == str(review["responsibility_grids"]["added"])
    assert counts["责任网格 撤销 removed"] == str(review["responsibility_grids"]["removed"])
    assert counts["部件换属 components changing owner"] == str(review["components_changing_owner"])
    rows = driver.find_elements(By.CSS_SELECTOR, "#gs-changed-grids tbody tr")
    assert [r.get_attribute("data-code") for r in rows] == [g["code"] for g in review["changed_grids"]][:200]
    assert driver.find_elements(By.CSS_SELECTOR, "#gs-worst tbody tr")  # the quality report, per community
    assert "全部连通 all contiguous" in driver.find_element(By.ID, "gs-quality-figures").text
    screenshot(driver, "plan-review", docs_name="plan-review.png")

    driver.find_element(By.ID, "gs-mode-beside").click()
    wait_for(driver, "gridsvcPage.second && gridsvc.loaded.responsibility_grids >= 3")
    assert driver.execute_script("return gridsvcPage.second.getZoom() === gridsvcPage.map.getZoom()")
    screenshot(driver, "plan-review-beside")
    assert console_errors(driver) == []


def test_pages_load_only_their_own_files(served_pages: str, browser_city: BrowserCity) -> None:
    for path in ("/map", "/field", f"/plans/{browser_city.draft_plan_id}/map"):
        response = httpx.get(f"{served_pages}{path}")  # no key: the page, without any data
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
        assert "浏览器测试" not in response.text
        assets = re.findall(r'<script src="([^"]+)"|<link rel="stylesheet" href="([^"]+)"', response.text)
        urls = [a or b for a, b in assets]
        assert urls and all(url.startswith("/static/") for url in urls), urls  # no CDN
        for url in urls:
            assert httpx.get(f"{served_pages}{url}").status_code == 200, url


def test_page_endpoints_need_a_key_of_the_right_role(served_pages: str, browser_city: BrowserCity) -> None:
    nearest = f"{served_pages}/v1/components/nearest?lon=117.05&lat=36.66&class=0118"
    assert httpx.get(nearest).status_code == 401
    assert httpx.get(nearest, headers={"X-API-Key": browser_city.keys["reporter"]}).status_code == 403
    unknown = httpx.get(nearest.replace("0118", "9999"), headers={"X-API-Key": browser_city.keys["field"]})
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "class"
    me = httpx.get(f"{served_pages}/v1/me", headers={"X-API-Key": browser_city.keys["field"]})
    assert me.json() == {"name": "浏览器测试-field", "role": "field"}
    review = f"{served_pages}/v1/plans/{browser_city.draft_plan_id}/review"
    assert httpx.get(review, headers={"X-API-Key": browser_city.keys["field"]}).status_code == 403
