"""Screenshots of the dashboard for the docs, taken from a real broker with real traffic.

    .venv/bin/python tests/dashboard/screenshots.py [OUT_DIR]

writes OUT_DIR (default docs/screenshots/) webhooks.png (the list), webhook-form.png (the create
form with the Test result shown) and deliveries.png (a webhook's metrics and deliveries log),
each 1280x800. It starts its own broker (one webhook from a config file, two created over the
API, one through the form), two HTTP receivers (one answers 503 now and then, so the log shows
retries) and an MQTT client, and stops them all at the end.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
if str(TESTS) not in sys.path:  # run as a script: make tests/ importable like pytest does
    sys.path.insert(0, str(TESTS))

from playwright.sync_api import expect  # noqa: E402

from conftest import ADMIN_PASSWORD, Broker  # noqa: E402
from dashboard.kit import Dashboard, chromium  # noqa: E402
from integration.pahoc import Client  # noqa: E402
from integration.receiver import Receiver, config_toml, webhook  # noqa: E402

OUT = TESTS.parent / "docs" / "screenshots"


def take(out: Path = OUT) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    ok = Receiver().start()
    # the Test gets the first 200; then every fourth request is refused with a 503 and retried
    flaky = Receiver(statuses=[200, 200, 200, 503, 200, 200, 200, 503, 200, 200, 200]).start()
    tmp = Path(tempfile.mkdtemp(prefix="mqhook-shots-"))
    config = config_toml([webhook("audit-log", ok.url("/audit"), description="Every event, for the audit store")])
    b = Broker(tmp, config=config)
    pub = None
    written = []
    try:
        for body in (
            {"name": "alerts", "description": "Over-temperature alerts to on-call", "url": ok.url("/alerts"),
             "events": ["message.publish"], "topics": ["sensors/+/alarm"]},
            {"name": "presence", "description": "Client online/offline to the CRM", "enable": False,
             "url": "http://127.0.0.1:9/presence", "events": ["client.connected", "client.disconnected"]},
        ):  # fmt: skip
            status, answer = b.api("POST", "/api/v1/webhooks", body)
            assert status == 201, answer
        with chromium() as browser:
            dash = Dashboard(browser, f"http://{b.admin_host}:{b.admin_port}")
            dash.goto()
            dash.login(ADMIN_PASSWORD)

            # the form, as EMQX's page walks through it, with the Test's answer shown
            dash.open_create_form()
            dash.fill_basics("my-webhook", "Forward sensor readings to the billing service")
            dash.choose_trigger(["message.publish"], ["sensors/+/temperature", "t/#"])
            dash.fill_request(flaky.url("/hook"))
            result = dash.press_test()
            expect(dash.by("test-status")).to_have_text("HTTP 200")
            dash.page.evaluate("window.scrollTo(0, 0)")
            result.scroll_into_view_if_needed()
            written.append(_shot(dash, out / "webhook-form.png"))
            dash.save()
            expect(dash.row("my-webhook")).to_be_visible()

            # traffic: readings and an alarm
            pub = Client(b, "sensor-17")
            for i in range(12):
                pub.publish("sensors/17/temperature", f'{{"celsius": {20 + i * 0.5}}}', qos=1)
            pub.publish("sensors/17/alarm", '{"celsius": 61.5}', qos=1)
            expect(dash.cell("my-webhook", "success")).to_have_text("12", timeout=20_000)
            expect(dash.cell("alerts", "success")).to_have_text("1")
            expect(dash.cell("audit-log", "success")).not_to_have_text("0")
            written.append(_shot(dash, out / "webhooks.png"))

            # the deliveries log of my-webhook: first tries, 503s and their retries
            dash.row("my-webhook").get_by_test_id("webhook-link").click()
            expect(dash.by("m-success")).to_have_text("12")
            expect(dash.by("delivery-row").filter(has_text="5xx").first).to_be_visible()
            written.append(_shot(dash, out / "deliveries.png"))
            assert not dash.errors, dash.errors
            dash.close()
    finally:
        if pub is not None:
            pub.close()
        b.stop()
        ok.stop()
        flaky.stop()
    return written


def _shot(dash: Dashboard, path: Path) -> Path:
    """The viewport, without the pointer's hover, the focus ring or the passing "created" notice."""
    dash.page.mouse.move(1, 1)
    dash.page.evaluate("document.activeElement && document.activeElement.blur()")
    dash.page.evaluate("document.getElementById('flash').hidden = true")
    dash.page.screenshot(path=str(path))
    return path


if __name__ == "__main__":
    for p in take(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT):
        print(p)
