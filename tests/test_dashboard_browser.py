"""An operator's day in headless Chromium, in one browser session: log in, watch a call arrive live,
an urgent caller raise the alert (banner, sound) and clear it when answered, the live view fit a
laptop at 1280×800, 1366×768, 1440×900 and 1920×1080 with calls in every panel and long
transcripts, and a voicemail play back from its call page.

Every call on screen is made through the real webhooks (tests/support/hotline.py), a week of
history included (a second server whose clock the test moves). Needs Debian's `chromium` and
`chromium-driver` (scripts/install-system-deps.sh --test); Selenium is pointed at
/usr/bin/chromedriver so it never downloads a browser or driver.

Screenshots go to the test's tmp folder; `IVR_UPDATE_SCREENSHOT=1 .venv/bin/python -m pytest
tests/test_dashboard_browser.py` writes them to docs/ instead (docs/dashboard.png and one per size).
"""
import math
import os
import shutil
import time
import urllib.error
import urllib.request
import wave
from io import BytesIO
from pathlib import Path

import pytest

from ivr.agents import Agents
from ivr.config import ROOT
from tests.support import Clock
from tests.support.dashboard import PASSWORD, HeldCall, add_operator
from tests.support.hotline import (
    agent_line,
    agent_takes,
    ask_callback,
    caller,
    enqueued,
    leave_voicemail,
    post,
    start,
    verb,
    week_of_calls,
)
from tests.support.twilio_api import ACCOUNT_SID, TwilioStandIn

CHROMEDRIVER = "/usr/bin/chromedriver"
pytestmark = [pytest.mark.browser, pytest.mark.skipif(
    not (os.path.exists(CHROMEDRIVER) and shutil.which("chromium")),
    reason="chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")]

SIZES = [(1280, 800), (1366, 768), (1440, 900), (1920, 1080)]
PANELS = ("panel-queues", "panel-callbacks", "panel-voicemail", "panel-bot", "panel-agent", "panel-agents")
LONG = ("well I bought the big washing machine in your store in March and since the engineer came it makes "
        "a grinding noise on every spin and leaks a little water under the door, and I have a receipt, the "
        "order confirmation and photos of the puddle, and I would like to know whether this is covered")
TOKEN = "test-token-" + "x" * 20


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--hide-scrollbars", "--force-device-scale-factor=1",
                "--autoplay-policy=no-user-gesture-required",
                f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1600,1000"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


def tone_wav(seconds=2.0) -> bytes:
    buf = BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"".join(int(6000 * math.sin(2 * math.pi * 523 * i / 8000)).to_bytes(2, "little", signed=True)
                               for i in range(int(8000 * seconds))))
    return buf.getvalue()


def a_busy_hotline(serve, redis, media):
    """Calls in every panel of the live view, all made through the webhooks. Returns (client, sids)."""
    now = time.time()
    clock = Clock(now)
    week_of_calls(serve(clock=clock), clock, now)
    client = serve(twilio_account_sid=ACCOUNT_SID, twilio_api_url=media.url, callback_after=60)
    agents = Agents(redis)
    agents.add("ann", "+14155550177")
    agents.add("bo", "+14155550178")
    agent_line(client, 1, number="+14155550177")                  # ann waits on the line: available
    sids = {}
    for n, words in enumerate((LONG, "i have a question about my bill and the delivery slot"), 1):
        call = caller(n, f"+1917555{n:04d}")
        start(client, call, words)                                 # in the bot, asked again
        sids.setdefault("bot", call["CallSid"])
    talking = caller(10, "+16465550110")
    enqueued(client, talking, "the battery of my laptop is swelling")
    agent_takes(client, 10, talking)                               # with an agent (the simulator's)
    sids["agent"] = talking["CallSid"]
    waiting = caller(11, "+13125550111")
    enqueued(client, waiting, "0")                                 # waiting, normal queue
    cb = caller(12, "+17185550112")
    ask_callback(client, cb, enqueued(client, cb, "0"))            # waiting for a call back
    sids["callback"] = cb["CallSid"]
    closed = serve(hours="closed")
    night = caller(13, "+17185550113")
    offer = verb(start(closed, night, "my phone is smoking and smells like burning"), "Gather")
    post(closed, offer.get("action"), dict(night, Digits="1"))     # out of hours, urgent: call back
    vm = caller(14, "+13475550114")
    leave_voicemail(client, vm, enqueued(client, vm, "0"), media.add_recording(tone_wav(), processing=False))
    assert client.app.extensions["ivr"].transcriber.wait(20)
    sids["voicemail"] = vm["CallSid"]
    return client, sids


def test_an_operators_day(browser, serve, redis, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    add_operator(redis)
    with TwilioStandIn(TOKEN) as media:
        client, sids = a_busy_hotline(serve, redis, media)
        url = client.base_url

        # Refused without a login: the page sends the browser to the login form; data and audio say 401.
        browser.get(url + "/dashboard")
        assert "/dashboard/login" in browser.current_url
        for path in ("/dashboard/api/live", f"/dashboard/calls/{sids['voicemail']}/voicemail.wav"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(url + path, timeout=5)
            assert refused.value.code == 401
        browser.find_element(By.ID, "name").send_keys("alice")
        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait = WebDriverWait(browser, 10)
        wait.until(EC.text_to_be_present_in_element((By.ID, "live-status"), "live"))
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, ".kpi[data-kpi=calls] .kpi-value").text not in ("", "–"))

        # A caller asks for a person: on screen within 2 s, masked.
        with HeldCall(client, [("press", "2"), ("press", "0")], from_number="+15005550163", agent="no-answer") as held:
            sid = held.start()
            placed = time.monotonic()
            row_css = f"#queues tr[data-sid='{sid}']"
            WebDriverWait(browser, 2, poll_frequency=0.05).until(
                EC.presence_of_element_located((By.CSS_SELECTOR, row_css)))
            assert time.monotonic() - placed < 2
            text = _fresh(browser, lambda: browser.find_element(By.CSS_SELECTOR, row_css).text)
            assert "+150****0163" in text and "agent request" in text
            assert "+15005550163" not in browser.page_source
            held.finish()

        # The call back's full number is there for the operator to ring; the urgent one is flagged.
        callbacks = _fresh(browser, lambda: browser.find_element(By.ID, "callbacks").text)
        assert "+17185550112" in callbacks and "+17185550113" in callbacks and "urgent" in callbacks
        assert "out of hours" in callbacks

        # An urgent caller starts waiting: banner, highlighted row, and the sound and the browser
        # notification the operator turned on (the browser's permission granted as a person would).
        browser.execute_cdp_cmd("Browser.grantPermissions", {"origin": url, "permissions": ["notifications"]})
        browser.find_element(By.ID, "alert-sound").click()
        browser.find_element(By.ID, "alert-notify").click()
        assert browser.find_element(By.ID, "urgent-alert").get_attribute("hidden")
        urgent = caller(20, "+12025550120")
        enqueued(client, urgent, "someone charged my card and i did not make it")
        WebDriverWait(browser, 3, poll_frequency=0.05).until(
            lambda d: not d.find_element(By.ID, "urgent-alert").get_attribute("hidden"))
        assert "fraud security" in browser.find_element(By.ID, "urgent-alert").text
        assert "alert" in _fresh(browser, lambda: browser.find_element(
            By.CSS_SELECTOR, f"#queues tr[data-sid='{urgent['CallSid']}']").get_attribute("class"))
        counts = browser.execute_script("const d = document.getElementById('dashboard').dataset;"
                                        "return [d.soundsPlayed, d.notified]")
        assert counts == ["1", "1"]

        # It fits: no sideways scroll, no panel over another, nothing spilling out of a panel.
        time.sleep(1)
        for width, height in SIZES:
            _viewport(browser, width, height)
            fit = browser.execute_script(_FIT_JS, list(PANELS))
            assert fit["scrollWidth"] <= fit["innerWidth"], (width, fit)
            assert fit["overlaps"] == [], (width, fit["overlaps"])
            assert fit["spilling"] == [], (width, fit["spilling"])
            assert fit["empty"] == [], (width, fit["empty"])           # calls in every panel
            # The long sentence ends in an ellipsis inside its cell; the whole of it is on hover.
            cell = browser.find_element(By.CSS_SELECTOR, "#in-bot td.said[title*='grinding noise']")
            assert LONG in cell.get_attribute("title")
            assert browser.execute_script("return arguments[0].scrollWidth > arguments[0].clientWidth", cell)
            _screenshot(browser, f"dashboard-{width}x{height}.png", tmp_path)
        _viewport(browser, 1440, 900)
        _screenshot(browser, "dashboard.png", tmp_path, full_page=True)

        # Agents dial in: the first rings back the urgent caller from the night (their call back kept
        # its place, ahead of this caller), the second takes this caller: the alert clears by itself.
        assert verb(agent_line(client, 21), "Enqueue") is not None
        agent_takes(client, 22, urgent)
        WebDriverWait(browser, 3, poll_frequency=0.05).until(
            lambda d: d.find_element(By.ID, "urgent-alert").get_attribute("hidden"))

        # The voicemail plays in the browser from its call page.
        browser.get(url + f"/dashboard/calls/{sids['voicemail']}")
        wait.until(EC.presence_of_element_located((By.ID, "voicemail-audio")))
        wait.until(lambda d: d.execute_script(
            "const a = document.getElementById('voicemail-audio'); return a.readyState >= 1 && a.duration > 0"))
        duration = browser.execute_script("return document.getElementById('voicemail-audio').duration")
        assert 1.5 < duration < 2.5
        assert "+13475550114" in browser.find_element(By.TAG_NAME, "h1").text
        _screenshot(browser, "dashboard-call.png", tmp_path, docs=False)

    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and "favicon" not in e["message"]]
    assert not severe, severe  # no CSP violations, no script errors


def test_a_refused_live_view_keeps_the_page_current_and_reconnects(browser, serve, redis):
    """The process serves as many live views as its share of threads allows (ivr/slots.py); one more is
    refused (503). The page then reads /api/live and tries its stream again 3 s later, so a waiting caller
    still shows up; once a live view is free it is live again."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    from ivr.slots import ThreadShares

    add_operator(redis)
    client = serve()
    shares = client.app.extensions["ivr"].shares = ThreadShares.of(4)     # one live view for the process
    elsewhere = shares.live_views.take("another operator's session")       # and it is taken
    browser.get(client.base_url + "/dashboard")
    browser.find_element(By.ID, "name").send_keys("alice")
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait = WebDriverWait(browser, 10)
    wait.until(EC.text_to_be_present_in_element((By.ID, "live-status"), "reconnecting"))
    with HeldCall(client, [("press", "0")], from_number="+15005550164") as held:
        sid = held.start()
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, f"#queues tr[data-sid='{sid}']")))
        assert "reconnecting" in browser.find_element(By.ID, "live-status").text
        elsewhere.release()
        wait.until(EC.text_to_be_present_in_element((By.ID, "live-status"), "live"))
        assert shares.live_views.taken == 1                                  # the page's own stream now
        held.finish()
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"
              and "favicon" not in e["message"] and "/dashboard/events" not in e["message"]]
    assert not severe, severe


_FIT_JS = """
const ids = arguments[0];
const boxes = [...document.querySelectorAll('.panel, .kpi')].filter(e => e.offsetParent !== null)
  .map(e => ({id: e.id || e.className, r: e.getBoundingClientRect(), e}));
const overlaps = [];
for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
  const a = boxes[i].r, b = boxes[j].r;
  if (a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5)
    overlaps.push([boxes[i].id, boxes[j].id]);
}
const spilling = boxes.filter(b => b.e.scrollWidth > b.e.clientWidth + 1)
  .map(b => [b.id, b.e.scrollWidth, b.e.clientWidth]);
const empty = ids.filter(id => !document.querySelector('#' + id + ' tbody tr:not(.empty)'));
return {scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth, overlaps, spilling, empty};
"""


def _viewport(browser, width, height):
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
    time.sleep(0.4)    # layout and the charts' resize


def _fresh(browser, action, tries=5):
    """The live tables are rebuilt when calls change; look an element up again if it was."""
    from selenium.common.exceptions import StaleElementReferenceException

    for _ in range(tries - 1):
        try:
            return action()
        except StaleElementReferenceException:
            time.sleep(0.1)
    return action()


def _screenshot(browser, name, tmp_path, docs=True, full_page=False):
    """What the operator sees at this size (or the page down to the charts); docs/ only when asked to."""
    if full_page:
        width = browser.execute_script("return window.innerWidth")
        height = browser.execute_script("return document.documentElement.scrollHeight")
        _viewport(browser, width, min(height, 1900))
    target = ROOT / "docs" / name if docs and os.environ.get("IVR_UPDATE_SCREENSHOT") == "1" else tmp_path / name
    assert browser.save_screenshot(str(target))
    return Path(target)
