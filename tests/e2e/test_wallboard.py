"""The wallboard in a real browser: headless Chromium (Debian's chromium + chromium-driver,
driven by Selenium) against the API on a loopback port.

The page loads with a supervisor token given once as ``?token=``, shows a call arriving (PBX
events fed to the controller), and a click on *whisper* sends the spy request: the fake PBX
port receives StartSpy (whisper, the supervisor's phone, the agent's interface) and the audit
log has the row. ``CALLCENTER_WALLBOARD_SCREENSHOT=path`` also saves the screenshot there
(docs/wallboard.png is made that way).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from sqlalchemy import text

from callcenter.domain.commands import StartSpy
from callcenter.domain.events import (
    AgentConnected,
    AgentOffered,
    AgentPauseChanged,
    AgentStatus,
    AgentStatusChanged,
    QueueMemberChanged,
)
from tests.integration.test_api_support import Env, api_env, arrive

CHROMIUM_ARGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1440,960", "--force-device-scale-factor=1")


def _chromium() -> str:
    for candidate in ("/usr/lib/chromium/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    raise AssertionError("Chromium is not installed (Debian: apt-get install chromium chromium-driver)")


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[webdriver.Chrome]:
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must never try to download a driver
    driver_path = shutil.which("chromedriver")
    assert driver_path, "chromedriver is not installed (Debian: apt-get install chromium-driver)"
    profile = tempfile.mkdtemp(prefix="cc-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = _chromium()
    for arg in (*CHROMIUM_ARGS, f"--user-data-dir={profile}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=Service(driver_path))
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_until(fn: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = fn()
            if value:
                return value
        except (StaleElementReferenceException, WebDriverException) as exc:
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}" + (f" ({last})" if last else ""))


def staff(env: Env) -> None:
    at = env.clock[0]
    for agent, queue in (("PJSIP/1001", "sales"), ("PJSIP/1002", "support")):
        env.feed(QueueMemberChanged(pbx="ast1", call_id=None, at=at, agent=agent, queue=queue, added=True),
                 AgentStatusChanged(pbx="ast1", call_id=None, at=at, agent=agent, status=AgentStatus.AVAILABLE,
                                    queue=queue))


async def test_wallboard_shows_a_call_and_whisper_sends_the_request(database, tmp_path, browser) -> None:
    async with api_env(database, tmp_path) as env:
        staff(env)
        env.controller.clock = lambda: datetime.now(UTC)
        url = f"{env.base}/wallboard?token={env.tokens['sup_red']}"
        await asyncio.to_thread(browser.get, url)
        # The token is taken from the address bar and removed from it.
        await asyncio.to_thread(wait_until, lambda: browser.find_element(By.ID, "conn").text == "live",
                                what="the event stream")
        assert "token=" not in browser.current_url
        assert browser.execute_script("return sessionStorage.getItem('cc.token')") == env.tokens["sup_red"]
        tiles = await asyncio.to_thread(
            wait_until, lambda: browser.find_elements(By.CSS_SELECTOR, "#agents .agent"), what="agent tiles")
        # sam supervises team red: alice (PJSIP/1001) is shown, bob (team blue) is not
        assert [t.get_attribute("data-agent") for t in tiles] == ["PJSIP/1001"]

        # A call arrives in sales and alice answers it.
        env.controller.live.calls.clear()
        arrive(env, "c-live", "sales", "+12025550199", "Ivanova A.")
        now = env.controller.clock()
        env.feed(AgentOffered(pbx="ast1", call_id="c-live", at=now, queue="sales", agent="PJSIP/1001"),
                 AgentConnected(pbx="ast1", call_id="c-live", at=now, queue="sales", agent="PJSIP/1001"))
        # The table is re-rendered on every live update: read the row fresh each try (a row found a
        # moment ago can be stale by the time it is read or clicked).
        def row_text() -> str:
            text = browser.find_element(By.CSS_SELECTOR, 'tr[data-call="c-live"]').text
            return text if "talking" in text else ""

        text = await asyncio.to_thread(wait_until, row_text, what="the call row, talking")
        assert "Ivanova A." in text
        await asyncio.to_thread(
            wait_until, lambda: "on a call" in browser.find_element(By.CSS_SELECTOR, '[data-agent="PJSIP/1001"]').text,
            what="alice on a call")

        # The supervisor types their phone once and clicks whisper.
        box = browser.find_element(By.ID, "my-endpoint")
        box.clear()
        box.send_keys("PJSIP/1009")

        def click_whisper() -> bool:
            browser.find_element(By.CSS_SELECTOR, 'tr[data-call="c-live"] button[data-mode="whisper"]').click()
            return True  # retried only while the button was stale: it is clicked once

        await asyncio.to_thread(wait_until, click_whisper, what="a click on whisper")
        for _ in range(200):
            if any(isinstance(cmd, StartSpy) for cmd in env.pbx.commands):
                break
            await asyncio.sleep(0.05)
        spies = [cmd for cmd in env.pbx.commands if isinstance(cmd, StartSpy)]
        assert len(spies) == 1
        spy = spies[0]
        assert (spy.mode.value, spy.supervisor_endpoint, spy.target, spy.call_id) == (
            "whisper", "PJSIP/1009", "PJSIP/1001", "c-live")
        rows = await env.audit_rows()
        assert [(r["action"], r["target"], r["role"], r["result"]) for r in rows] == [
            ("whisper", "call:c-live", "supervisor", "ok")]
        toast = await asyncio.to_thread(
            wait_until, lambda: browser.find_element(By.ID, "toast").text, what="the confirmation")
        assert "PJSIP/1009 is ringing" in toast
        assert browser.execute_script("return localStorage.getItem('cc.endpoint')") == "PJSIP/1009"

        # The page survives a reload from sessionStorage, without the token in the URL.
        await asyncio.to_thread(browser.get, f"{env.base}/wallboard")
        await asyncio.to_thread(wait_until, lambda: browser.find_element(By.ID, "conn").text == "live",
                                what="the stream after a reload")


async def test_a_bad_token_gets_the_login_form(database, tmp_path, browser) -> None:
    async with api_env(database, tmp_path) as env:
        await asyncio.to_thread(browser.get, f"{env.base}/wallboard?token=cc_wrong")
        form = await asyncio.to_thread(
            wait_until, lambda: browser.find_element(By.ID, "login").is_displayed(), what="the login form")
        assert form
        assert browser.execute_script("return sessionStorage.getItem('cc.token')") is None

        def sign_in(who: str) -> None:
            browser.find_element(By.ID, "login-token").send_keys(env.tokens[who])
            browser.find_element(By.CSS_SELECTOR, "#login-form button").click()

        # an analyst's token is valid but cannot show the floor: said so, and forgotten
        await asyncio.to_thread(sign_in, "analyst")
        await asyncio.to_thread(
            wait_until, lambda: "analyst token cannot show the live floor" in browser.find_element(
                By.ID, "login-error").text, what="the analyst message")
        assert browser.execute_script("return sessionStorage.getItem('cc.token')") is None
        await asyncio.to_thread(sign_in, "admin")
        await asyncio.to_thread(wait_until, lambda: browser.find_element(By.ID, "conn").text == "live",
                                what="the stream after signing in")
        assert "admin" in browser.find_element(By.ID, "who").text


async def test_screenshot_of_a_busy_floor(database, tmp_path, browser) -> None:
    """A realistic floor for the README; the PNG must be a real picture of the page."""
    async with api_env(database, tmp_path) as env:
        start = datetime.now(UTC) - timedelta(minutes=3)
        env.clock[0] = start
        env.controller.clock = lambda: datetime.now(UTC)
        names = {"PJSIP/1001": "Alice", "PJSIP/1002": "Bob", "PJSIP/1003": "Carla", "PJSIP/1004": "Dmitri",
                 "PJSIP/1005": "Eve", "PJSIP/1006": "Farid"}
        async with env.engine.begin() as conn:
            for iface, name in names.items():
                if iface in ("PJSIP/1001", "PJSIP/1002"):
                    continue
                aid = (await conn.execute(text("INSERT INTO agents (name) VALUES (:n) RETURNING id"),
                                          {"n": name})).scalar_one()
                await conn.execute(text("INSERT INTO agent_endpoints (agent_id, pbx, interface) "
                                        "VALUES (:a, 'ast1', :i)"), {"a": aid, "i": iface})
        for iface, queue in (("PJSIP/1001", "sales"), ("PJSIP/1002", "support"), ("PJSIP/1003", "sales"),
                             ("PJSIP/1004", "support"), ("PJSIP/1005", "sales"), ("PJSIP/1006", "support")):
            env.feed(QueueMemberChanged(pbx="ast1", call_id=None, at=start, agent=iface, queue=queue, added=True,
                                        agent_name=names[iface]),
                     AgentStatusChanged(pbx="ast1", call_id=None, at=start, agent=iface, status=AgentStatus.AVAILABLE,
                                        queue=queue, agent_name=names[iface]))
        env.feed(AgentPauseChanged(pbx="ast1", call_id=None, at=start, agent="PJSIP/1004", paused=True, reason="break"),
                 AgentPauseChanged(pbx="ast1", call_id=None, at=start, agent="PJSIP/1006", paused=True, reason="dnd"))
        for call_id, queue, caller, name, agent in (
                ("c1", "sales", "+12025550101", "Ivanova A.", "PJSIP/1001"),
                ("c2", "support", "+12025550102", "Smith J.", "PJSIP/1002"),
                ("c3", "sales", "+12025550103", "Okafor C.", None),
                ("c4", "support", "+12025550104", "Nguyen T.", None),
                ("c5", "sales", "+12025550105", "García L.", None)):
            arrive(env, call_id, queue, caller, name)
            if agent:
                env.feed(AgentOffered(pbx="ast1", call_id=call_id, at=env.clock[0], queue=queue, agent=agent),
                         AgentConnected(pbx="ast1", call_id=call_id, at=env.clock[0], queue=queue, agent=agent))
            env.tick(25)
        env.controller.live.calls["c1"].customer = {"id": 7, "name": "Ivanova A.", "tier": "vip"}
        await asyncio.to_thread(browser.get, f"{env.base}/wallboard?token={env.tokens['admin']}")
        await asyncio.to_thread(
            wait_until, lambda: len(browser.find_elements(By.CSS_SELECTOR, "#calls tbody tr")) == 5, what="5 calls")
        browser.execute_script("document.getElementById('my-endpoint').value = 'PJSIP/1009'")
        await asyncio.sleep(1.1)  # one tick of the clocks
        png = await asyncio.to_thread(browser.get_screenshot_as_png)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
        targets = [tmp_path / "wallboard.png"]
        if os.environ.get("CALLCENTER_WALLBOARD_SCREENSHOT"):
            targets.append(Path(os.environ["CALLCENTER_WALLBOARD_SCREENSHOT"]))
        for target in targets:
            await asyncio.to_thread(target.write_bytes, png)
