"""The dashboard in a real browser: headless Debian Chromium driven by Playwright against a real
uvicorn server, asserting the rendered numbers and saving a screenshot (var/artifacts/dashboard.png)."""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from api.app import create_app
from oracle.chain.abi import PROJECT_ROOT

from .conftest import AS_OF, get_json

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = PROJECT_ROOT / "var" / "artifacts"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent (apt-get install chromium)")


@pytest.fixture(scope="module")
def server(world) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(world.settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


def test_agreement_page_shows_sites_burn_chart_payouts_and_state(server, browser, world, client):
    page = browser.new_page(viewport={"width": 1280, "height": 1180})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f"{server}/dashboard/{world.agreement}#key={world.keys['customer']}&as_of={AS_OF}")
    page.wait_for_selector("body[data-ready='1']", timeout=20_000)

    status = get_json(client, f"/v1/agreements/{world.agreement}/status?as_of={AS_OF}", "customer", world)
    avail = {r["subject"]: r for r in status["objectives"][0]["results"]}
    north = f"{avail['north']['attainment_bps'] / 100:.2f}%"
    assert page.inner_text("[data-testid=att-north-avail]") == north == "78.87%"
    assert page.inner_text("[data-testid=att-south-avail]") == "100.00%"
    estate = status["objectives"][2]["results"][0]
    assert page.inner_text("[data-testid=att-\\*-uptime]") == f"{estate['attainment_bps'] / 100:.2f}%"
    assert "red" in page.inner_text("[data-testid=state-north]")
    assert "green" in page.inner_text("[data-testid=state-south]")
    assert page.inner_text("[data-testid=overall-state]").lower() == "red"
    assert "red" in page.get_attribute("[data-testid=overall-state]", "class")
    assert page.inner_text("[data-testid=fact-credit-so-far-this-month]") == "2750.000000 USDC"
    assert page.inner_text("[data-testid=payout-amount]") == "2750.000000 USDC"
    # P(meet) per site and objective, styled by the forecast's status
    forecast = get_json(client, f"/v1/agreements/{world.agreement}/forecast?as_of={AS_OF}", "customer", world)
    for o in forecast["objectives"]:
        for r in o["results"]:
            cell = f'[data-testid="pmeet-{r["subject"]}-{o["id"]}"]'
            assert page.inner_text(cell).startswith(f"{100 * r['p_meet']:.0f}%"), cell
            assert f"p-{r['status']}" in page.get_attribute(cell, "class")
    assert page.inner_text("[data-testid=pmeet-north-avail]") == "0%lost"
    color = page.eval_on_selector("[data-testid=pmeet-north-avail]", "e => getComputedStyle(e).color")
    assert color == "rgb(197, 48, 48)"
    assert "no open faults" in page.inner_text("[data-testid=fix-first]")
    # a real chart: Chart.js drew the datasets on the canvas, the forecast band after each observed line
    datasets = page.evaluate("() => Chart.getChart('burn').data.datasets.map(d => [d.label, d.data.at(-1).y, d.fill])")
    burn = get_json(client, f"/v1/agreements/{world.agreement}/status/burn?as_of={AS_OF}&forecast=true", "customer",
                    world)
    north = burn["objectives"][0]["series"][0]
    assert datasets[0][:2] == ["north", north["burn_pct"][-1]] and north["burn_pct"][-1] > 100
    assert [d[0] for d in datasets] == [
        "north", "north forecast 5–95%", "north forecast 5%", "north forecast median",
        "south", "south forecast 5–95%", "south forecast 5%", "south forecast median", "even pace", "budget (100%)"]
    band = {d[0]: d for d in datasets}
    assert band["north forecast 5–95%"][1:] == [north["forecast"][-1]["p95_pct"], "+1"]  # filled down to the 5% edge
    assert band["north forecast median"][1] == north["forecast"][-1]["p50_pct"] > 100
    # nothing fetched from outside the app (no CDN)
    assert all(u.startswith(server) for u in requests), [u for u in requests if not u.startswith(server)]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
    page.close()


def test_fix_first_lists_the_open_faults_by_credit_saved(server, browser, world, client):
    as_of = "2026-10-14T12:00:00Z"  # four north chargers down
    page = browser.new_page(viewport={"width": 1280, "height": 1180})
    page.goto(f"{server}/dashboard/{world.agreement}#key={world.keys['vendor']}&as_of={as_of}")
    page.wait_for_selector("body[data-ready='1']", timeout=20_000)
    forecast = get_json(client, f"/v1/agreements/{world.agreement}/forecast?as_of={as_of}", "vendor", world)
    rows = page.locator("[data-testid=fault]")
    assert rows.count() == len(forecast["priorities"]) == 4
    first = forecast["priorities"][0]
    assert rows.first.inner_text().split("\t")[:2] == [first["device"], "north"]
    assert f"{first['expected_credit_saved']['units']} USDC" in rows.first.inner_text()
    page.close()


def test_index_lists_what_the_key_may_see_and_refuses_a_bad_key(server, browser, world):
    page = browser.new_page()
    page.goto(f"{server}/dashboard#key={world.keys['other_customer']}")
    page.wait_for_selector("body[data-ready='1']", timeout=20_000)
    text = page.inner_text("#agreements")
    assert world.other in text and world.agreement not in text
    page.goto(f"{server}/dashboard/{world.agreement}#key=slk_wrong")
    page.wait_for_selector("body[data-ready='error']", timeout=20_000)
    assert "refused" in page.inner_text("#error") and page.is_visible("#key-form")
    page.close()
