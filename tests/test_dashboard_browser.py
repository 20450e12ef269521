"""The dashboard in headless Chromium: log in, watch a simulated call arrive live, open it.

Needs Debian's `chromium` and `chromium-driver` (scripts/install-system-deps.sh --test);
Selenium is pointed at /usr/bin/chromedriver so it never downloads a browser or driver.
IVR_UPDATE_SCREENSHOT=1 writes docs/dashboard.png; otherwise screenshots go to tmp.
"""
import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ivr.config import ROOT
from tests.support.dashboard import PASSWORD, HeldCall, add_operator, write_call

CHROMEDRIVER = "/usr/bin/chromedriver"
pytestmark = [pytest.mark.browser, pytest.mark.skipif(
    not (os.path.exists(CHROMEDRIVER) and shutil.which("chromium")),
    reason="chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")]


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--hide-scrollbars", "--force-device-scale-factor=1",
                f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1600,1000"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


def seed_history(redis):
    """A believable week behind the live call, so the KPIs and charts have something to show."""
    now = time.time()
    reasons = ["agent_request", "complaint", "fraud_security", "agent_request", "safety_hazard", "not_understood"]
    n = 0
    for day in range(6, -1, -1):
        base = now - day * 86400 - 3600 * 3
        for i in range(6 + (day * 5) % 9):
            n += 1
            t = base - i * 600
            who = {"from": f"+1415555{1000 + n * 37:04d}"}
            if i % 3 == 0:
                wait = 6 + (i * 7 + day * 5) % 40
                write_call(redis, f"CAhist{n}", started_at=t, status="ended", outcome="handoff", transfers=1 + (i == 6),
                           queue="urgent" if i % 2 else "normal", reason=reasons[(i + day) % len(reasons)],
                           handoff_at=t + 40, answered_at=t + 40 + wait, wait_seconds=wait, ended_at=t + 300,
                           rating=3 + i % 3, waits=(wait, t + 40 + wait), **who)
            elif i % 7 == 5:
                write_call(redis, f"CAhist{n}", started_at=t, status="ended", outcome="handoff", transfers=1,
                           queue="normal", reason="agent_request", handoff_at=t + 30, ended_at=t + 90,
                           queue_result="hangup", abandoned_at=t + 90, **who)
            else:
                write_call(redis, f"CAhist{n}", started_at=t, status="ended", outcome="answered", answered=1,
                           ended_at=t + 70, rating=4 + i % 2, **who)
    write_call(redis, "CAlivebot1", started_at=now - 75, status="in_bot", step="ask_order_number",
               turns=[{"who": "caller", "input": "speech", "text": "where is my order", "confidence": 0.91}],
               **{"from": "+12125550187"})
    write_call(redis, "CAlivebot2", started_at=now - 20, status="in_bot", step="welcome", **{"from": "+4930123456"})
    write_call(redis, "CAwaitlong", started_at=now - 140, status="queued", queue="urgent", reason="complaint",
               transfers=2, handoff_at=now - 48, enqueued_at=now - 48, queue_zset="urgent",
               boost="transferred_before", **{"from": "+447700900123"})
    write_call(redis, "CAagent1", started_at=now - 400, status="with_agent", queue="urgent",
               reason="fraud_security", transfers=1, answered_at=now - 185, **{"from": "+33612345678"})
    write_call(redis, "CAcallback1", started_at=now - 1500, status="ended", outcome="handoff", queue="normal",
               reason="agent_request", transfers=1, callback_requested_at=now - 1300, callback_at=now - 1400,
               **{"from": "+13105550142"})


def test_operator_sees_a_call_arrive_live(browser, server, twilio, redis, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    add_operator(redis)
    seed_history(redis)

    # Refused without a login: the page sends the browser to the login form, data says 401.
    browser.get(server.url + "/dashboard")
    assert "/dashboard/login" in browser.current_url
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(server.url + "/dashboard/api/live", timeout=5)
    assert refused.value.code == 401

    browser.find_element(By.ID, "name").send_keys("alice")
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait = WebDriverWait(browser, 10)
    wait.until(EC.text_to_be_present_in_element((By.ID, "live-status"), "live"))
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, ".kpi[data-kpi=calls] .kpi-value").text not in ("", "–"))

    with HeldCall(twilio, [("press", "2"), ("press", "0")], from_number="+15005550163") as held:
        sid = held.start()
        placed = time.monotonic()
        row_css = f"#queues tr[data-sid='{sid}']"
        WebDriverWait(browser, 2, poll_frequency=0.05).until(
            EC.presence_of_element_located((By.CSS_SELECTOR, row_css)))
        assert time.monotonic() - placed < 2
        text = _fresh(browser, lambda: browser.find_element(By.CSS_SELECTOR, row_css).text)
        assert "+150****0163" in text and "agent request" in text
        assert "+15005550163" not in browser.page_source
        classes = _fresh(browser, lambda: browser.find_element(
            By.CSS_SELECTOR, "#queues tr[data-sid='CAwaitlong']").get_attribute("class"))
        assert set(classes.split()) == {"late", "bounced"}
        time.sleep(1.2)  # let charts settle and a wait tick
        _screenshot(browser, "dashboard.png", tmp_path)

        _fresh(browser, lambda: browser.find_element(By.CSS_SELECTOR, row_css + " a").click())
        wait.until(EC.presence_of_element_located((By.ID, "timeline")))
        body = browser.find_element(By.TAG_NAME, "body").text
        assert "what the agent heard" in body.lower() and "Transferred to a person" in body
        assert "+150****0163" in body
        _screenshot(browser, "dashboard-call.png", tmp_path, docs=False)
        held.finish()

    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and "favicon" not in e["message"]]
    assert not severe, severe  # no CSP violations, no script errors


def _fresh(browser, action, tries=5):
    """The live tables are rebuilt when calls change; look an element up again if it was."""
    from selenium.common.exceptions import StaleElementReferenceException

    for _ in range(tries - 1):
        try:
            return action()
        except StaleElementReferenceException:
            time.sleep(0.1)
    return action()


def _screenshot(browser, name, tmp_path, docs=True):
    """The whole page: the window grows to the document's height (plus the window's own frame)."""
    height, chrome = browser.execute_script(
        "return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight]")
    browser.set_window_size(1600, max(1000, min(height + chrome, 3000)))
    target = ROOT / "docs" / name if docs and os.environ.get("IVR_UPDATE_SCREENSHOT") == "1" else tmp_path / name
    assert browser.save_screenshot(str(target))
    browser.set_window_size(1600, 1000)
    return Path(target)
