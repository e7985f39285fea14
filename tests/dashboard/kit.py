"""Helpers shared by the dashboard's end-to-end test and ``screenshots.py``: a real headless
Chromium (Debian's /usr/bin/chromium) driven by Playwright, and the steps a user takes in the
dashboard (log in, fill the webhook form as EMQX's page describes, press Test, save).

Every wait is a Playwright condition (``expect`` / ``wait_for``) with a bound; nothing sleeps."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 800}
WAIT_MS = 10_000  # bound of every wait on the page (the list refreshes every 2 s)


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium; closed on exit."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


class Dashboard:
    """One browser tab on a broker's dashboard. ``errors`` collects uncaught page errors and
    console errors other than failed requests the test provoked on purpose."""

    def __init__(self, browser: Browser, base_url: str) -> None:
        self.context = browser.new_context(viewport=VIEWPORT)
        self.page: Page = self.context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.base_url = base_url
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        self.page.on("console", self._on_console)

    def _on_console(self, msg: Any) -> None:
        # A 4xx answer is logged by Chromium as "Failed to load resource"; the tests provoke some.
        if msg.type == "error" and "Failed to load resource" not in msg.text:
            self.errors.append(f"console: {msg.text}")

    def close(self) -> None:
        self.context.close()

    def by(self, testid: str) -> Locator:
        return self.page.get_by_test_id(testid)

    def goto(self, route: str = "") -> None:
        self.page.goto(self.base_url + "/" + route)

    # -- steps ---------------------------------------------------------------------------------
    def login(self, password: str, username: str = "admin") -> None:
        """From the login screen, through the form, to the overview."""
        expect(self.by("login-form")).to_be_visible()
        self.by("login-username").fill(username)
        self.by("login-password").fill(password)
        self.by("login-submit").click()
        expect(self.by("login-form")).to_be_hidden()
        expect(self.by("view")).to_be_visible()

    def open_webhooks(self) -> None:
        self.by("nav-webhooks").click()
        expect(self.by("page-title")).to_have_text("Webhooks")

    def open_create_form(self) -> None:
        """Webhooks -> Create, like EMQX's Integration -> Webhook -> Create."""
        self.open_webhooks()
        self.by("create-webhook").click()
        expect(self.by("webhook-form")).to_be_visible()

    def fill_basics(self, name: str, note: str) -> None:
        """Step 1: name and note."""
        self.by("f-name").fill(name)
        self.by("f-description").fill(note)

    def choose_trigger(self, events: list[str], topics: list[str]) -> None:
        """Step 2: chosen message events with topic filters (one per line)."""
        self.by("trigger-chosen").check()
        for event in events:
            self.by("ev-" + event).check()
        self.by("f-topics").fill("\n".join(topics))

    def fill_request(self, url: str, method: str = "post") -> None:
        """Step 3: method and URL."""
        self.by("f-method").select_option(method)
        self.by("f-url").fill(url)

    def fill_guarantees(self, *, durable: bool, dead_letter: bool, **values: str) -> None:
        """Step 4, delivery guarantees: the two switches, then ``values`` by field name (``fsync`` is
        the select, the others text inputs, e.g. ``max_event_age="2h"``)."""
        self.by("f-durable").set_checked(durable)
        self.by("f-dead_letter").set_checked(dead_letter)
        for field, value in values.items():
            if field == "fsync":
                self.by("f-fsync").select_option(value)
            else:
                self.by("f-" + field).fill(value)

    def press_test(self) -> Locator:
        """The Test button beside the URL; returns the result box once the answer is shown."""
        self.by("test-button").click()
        result = self.by("test-result")
        expect(result).to_have_class(re.compile(r"\b(ok|bad)\b"))
        return result

    def save(self) -> None:
        self.by("save-button").click()

    def row(self, name: str) -> Locator:
        return self.page.locator(f'[data-testid="webhook-row"][data-name="{name}"]')

    def cell(self, name: str, col: str) -> Locator:
        return self.row(name).locator(f'[data-col="{col}"]')


def create_webhook(dash: Dashboard, name: str, note: str, url: str, topics: list[str]) -> None:
    """The whole form, as the seed describes it, up to the list showing the new webhook."""
    dash.open_create_form()
    dash.fill_basics(name, note)
    dash.choose_trigger(["message.publish"], topics)
    dash.fill_request(url)
    dash.save()
    expect(dash.by("page-title")).to_have_text("Webhooks")
    expect(dash.row(name)).to_be_visible()
