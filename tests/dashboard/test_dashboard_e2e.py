"""The dashboard end to end: a real headless Chromium on a real ``mqhook run`` process, a real
HTTP receiver as the webhook's target and a real MQTT client.

It follows EMQX's "create a webhook" steps (the seed page): log in; Webhooks -> Create; name and
note; a trigger (message.publish on a topic filter); POST and the receiver's URL; Test shows the
receiver's answer; a bad URL is refused next to the URL field; Save. Then an MQTT message on a
matching topic reaches the receiver and moves the list's counters, the deliveries log shows the
attempt, and after a restart on the same data directory the webhook is still there.

Every wait is a condition (Playwright's ``expect``, the receiver's ``wait_for``), never a sleep.
"""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from conftest import ADMIN_PASSWORD
from integration.pahoc import Clients
from integration.receiver import Receiver, config_toml, standard_webhooks_signature, webhook

from .kit import CHROMIUM, Dashboard, chromium

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (Debian package chromium; CI installs it)", allow_module_level=True)

NAME = "my-webhook"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NOTE = "Sensors to the receiver <b>as JSON</b>"  # markup in a server string must show as text


def test_dashboard_webhook_end_to_end(broker, tmp_path) -> None:
    rx = Receiver().start()
    clients = Clients()
    try:
        b = broker()
        with chromium() as browser:
            dash = Dashboard(browser, f"http://{b.admin_host}:{b.admin_port}")
            dash.goto()

            # -- log in through the form --------------------------------------------------------
            dash.login(ADMIN_PASSWORD)
            expect(dash.by("ov-connections")).to_have_text(re.compile(r"^\d+$"))

            # -- create: name + note, trigger with a topic filter, POST + the receiver's URL -------
            dash.open_create_form()
            dash.fill_basics(NAME, NOTE)
            dash.choose_trigger(["message.publish"], ["t/#"])
            dash.fill_request(rx.url("/hook"))

            # Test: one real request to the receiver, its answer shown in the page
            result = dash.press_test()
            expect(result).to_have_class(re.compile(r"\bok\b"))
            expect(dash.by("test-status")).to_have_text("HTTP 200")
            expect(dash.by("test-body")).to_contain_text('{"result":"ok"}')
            expect(dash.by("test-latency")).to_have_text(re.compile(r"\d ms$"))
            rx.wait_for(lambda: rx.requests(), what="the Test request")
            probe = rx.requests()[0]
            assert probe.method == "POST" and probe.path == "/hook", probe
            assert probe.headers.get("content-type") == "application/json", probe.headers

            # a bad URL: refused by the API, shown next to the URL field and in the summary
            dash.fill_request("ftp://127.0.0.1/nope")
            dash.save()
            expect(dash.by("error-url")).to_be_visible()
            expect(dash.by("error-url")).to_contain_text("ftp://127.0.0.1/nope")
            expect(dash.by("f-url")).to_have_class(re.compile(r"\binvalid\b"))
            expect(dash.by("form-summary")).to_contain_text("Not saved")
            status, _ = b.api("GET", f"/api/v1/webhooks/{NAME}")
            assert status == 404, "a refused form must not create the webhook"

            # fixed, saved: back to the list, which shows it
            dash.fill_request(rx.url("/hook"))
            dash.save()
            expect(dash.by("page-title")).to_have_text("Webhooks")
            expect(dash.by("flash")).to_contain_text(f'Webhook "{NAME}" created.')
            row = dash.row(NAME)
            expect(row).to_be_visible()
            expect(row.get_by_test_id("webhook-note")).to_have_text(NOTE)
            expect(row.get_by_test_id("status")).to_have_text("running")
            expect(dash.cell(NAME, "success")).to_have_text("0")

            # what the form sent is what the API stored
            status, item = b.api("GET", f"/api/v1/webhooks/{NAME}")
            assert status == 200, item
            cfg = item["config"]
            assert cfg["description"] == NOTE and cfg["url"] == rx.url("/hook"), cfg
            assert cfg["events"] == ["message.publish"] and cfg["topics"] == ["t/#"], cfg
            assert str(cfg["method"]).lower() == "post", cfg
            assert {k.lower(): v for k, v in cfg["headers"].items()} == {"content-type": "application/json"}, cfg

            # -- MQTT: a non-matching then a matching publish --------------------------------------
            pub = clients(b, "dash-e2e-pub")
            pub.publish("other/1", b"not for the webhook", qos=1)
            pub.publish("t/1", json.dumps({"msg": "Hello Webhook"}).encode(), qos=1)
            # (the Test's request carried a sample event of its own: this one is the client's)
            event = rx.wait_event("message.publish", topic="t/1", clientid="dash-e2e-pub")
            assert event["payload"] == '{"msg": "Hello Webhook"}', event
            assert event["metadata"]["rule_id"] == f"{NAME}_WH_D", event
            assert not rx.events("message.publish", topic="other/1"), "the topic filter let other/1 through"

            # the list's counters move by themselves (live refresh)
            expect(dash.cell(NAME, "success")).to_have_text("1")
            expect(dash.cell(NAME, "matched")).to_have_text("1")
            expect(dash.cell(NAME, "failed")).to_have_text("0")
            expect(dash.cell(NAME, "dropped")).to_have_text("0")

            # -- the deliveries log shows the attempt ----------------------------------------------
            row.get_by_test_id("webhook-link").click()
            expect(dash.by("page-title")).to_contain_text(NAME)
            delivery = dash.by("delivery-row").first
            expect(delivery).to_be_visible()
            expect(dash.by("delivery-row")).to_have_count(1)
            expect(delivery.locator('[data-col="outcome"]')).to_have_text("2xx")
            expect(delivery.locator('[data-col="status"]')).to_have_text("HTTP 200")
            expect(delivery.locator('[data-col="events"]')).to_have_text("1")
            expect(delivery.locator('[data-col="attempt"]')).to_have_text("first")
            expect(delivery.locator('[data-col="latency"]')).to_have_text(re.compile(r"\d ms$"))
            expect(dash.by("m-success")).to_have_text("1")

            # an expired or bad token: the next request is a 401 and the login screen comes back
            dash.page.evaluate("sessionStorage.setItem('mqhook.token', JSON.stringify({token: 'bogus'}))")
            expect(dash.by("login-form")).to_be_visible()
            expect(dash.by("login-error")).to_contain_text("sign in again")
            assert not dash.errors, dash.errors
            dash.close()

            # -- restart on the same data directory: the webhook is still there --------------------
            data_dir = b.data_dir
            b.stop()
            b2 = broker(data_dir=data_dir)
            dash = Dashboard(browser, f"http://{b2.admin_host}:{b2.admin_port}")
            dash.goto("#/webhooks")
            dash.login(ADMIN_PASSWORD)
            expect(dash.by("page-title")).to_have_text("Webhooks")
            row = dash.row(NAME)
            expect(row).to_be_visible()
            expect(row.get_by_test_id("webhook-note")).to_have_text(NOTE)

            # and its edit form loads what was saved (the name is fixed)
            row.get_by_test_id("edit").click()
            expect(dash.by("f-name")).to_have_value(NAME)
            expect(dash.by("f-name")).to_be_disabled()
            expect(dash.by("f-description")).to_have_value(NOTE)
            expect(dash.by("trigger-chosen")).to_be_checked()
            expect(dash.by("ev-message.publish")).to_be_checked()
            expect(dash.by("f-topics")).to_have_value("t/#")
            expect(dash.by("f-url")).to_have_value(rx.url("/hook"))
            assert not dash.errors, dash.errors
            dash.close()
    finally:
        clients.close_all()
        rx.stop()


def test_dashboard_edit_toggle_reset_delete_and_clients(broker) -> None:
    """The other screens: a config-file webhook is read-only; an edit through the form keeps the
    secrets it was shown as ******; the enabled switch, Reset and Delete (confirmed) act on the
    broker; the clients list filters by prefix and kicks a client after a confirmation."""
    rx = Receiver().start()
    clients = Clients()
    try:
        b = broker(config_toml([webhook("from-file", rx.url("/file"), events=["client.connected"])]))
        hook = {
            "name": "signed",
            "description": "before",
            "url": rx.url("/signed"),
            "events": ["message.publish"],
            "topics": ["s/#"],
            "headers": {"content-type": "application/json", "authorization": "Bearer s3cret"},
            "secret": SECRET,
        }
        status, body = b.api("POST", "/api/v1/webhooks", hook)
        assert status == 201, body
        with chromium() as browser:
            dash = Dashboard(browser, f"http://{b.admin_host}:{b.admin_port}")
            dash.goto("#/webhooks")
            dash.login(ADMIN_PASSWORD)

            # the config file's webhook: marked, and nothing on it can be changed
            file_row = dash.row("from-file")
            expect(file_row).to_contain_text("config file")
            expect(file_row.get_by_test_id("edit")).to_be_disabled()
            expect(file_row.get_by_test_id("delete")).to_be_disabled()
            expect(file_row.get_by_test_id("toggle")).to_be_disabled()

            # edit: the secrets read back as ******, are sent back as such, and the broker keeps them
            dash.row("signed").get_by_test_id("edit").click()
            expect(dash.by("f-name")).to_have_value("signed")
            expect(dash.by("f-secret")).to_have_value("******")
            header_values = dash.page.get_by_test_id("header-value")
            expect(header_values).to_have_count(2)
            assert "******" in header_values.evaluate_all("inputs => inputs.map(i => i.value)")
            dash.by("f-description").fill("after")
            dash.save()
            expect(dash.by("flash")).to_contain_text('Webhook "signed" saved.')
            expect(dash.row("signed").get_by_test_id("webhook-note")).to_have_text("after")
            status, item = b.api("GET", "/api/v1/webhooks/signed")
            assert status == 200 and item["config"]["description"] == "after", item
            pub = clients(b, "dash-signer")
            pub.publish("s/1", b"signed?", qos=1)
            rx.wait_event("message.publish", topic="s/1")
            req = next(r for r in rx.requests() if r.path == "/signed")
            assert req.headers["authorization"] == "Bearer s3cret", "the stored header value was lost"
            msg_id, ts = req.headers["webhook-id"], req.headers["webhook-timestamp"]
            expected = standard_webhooks_signature(SECRET, msg_id, ts, req.body)
            assert expected in req.headers["webhook-signature"].split(), "the stored secret was lost"

            # the enabled switch
            dash.row("signed").get_by_test_id("toggle").click()
            expect(dash.row("signed").get_by_test_id("status")).to_have_text("disabled")
            assert b.api("GET", "/api/v1/webhooks/signed")[1]["config"]["enable"] is False
            dash.row("signed").get_by_test_id("toggle").click()
            expect(dash.row("signed").get_by_test_id("status")).to_have_text("running")

            # Reset (confirmed) on the webhook's page
            expect(dash.cell("signed", "success")).to_have_text("1")
            dash.row("signed").get_by_test_id("webhook-link").click()
            expect(dash.by("m-success")).to_have_text("1")
            dash.by("reset-metrics").click()
            expect(dash.by("confirm-dialog")).to_be_visible()
            dash.by("confirm-ok").click()
            expect(dash.by("m-success")).to_have_text("0")
            assert b.api("GET", "/api/v1/webhooks/signed/metrics")[1]["reset_at"] is not None

            # Delete: cancelled first, then confirmed
            dash.by("delete").click()
            dash.by("confirm-cancel").click()
            expect(dash.by("confirm-dialog")).to_be_hidden()
            assert b.api("GET", "/api/v1/webhooks/signed")[0] == 200
            dash.by("delete").click()
            dash.by("confirm-ok").click()
            expect(dash.by("page-title")).to_have_text("Webhooks")
            expect(dash.row("signed")).to_have_count(0)
            assert b.api("GET", "/api/v1/webhooks/signed")[0] == 404

            # clients: filter by prefix, kick with a confirmation
            victim = clients(b, "dash-victim")
            dash.by("nav-clients").click()
            dash.by("clients-prefix").fill("dash-v")
            rows = dash.page.get_by_test_id("client-row")
            expect(rows).to_have_count(1)
            expect(rows.first.locator('[data-col="clientid"]')).to_have_text("dash-victim")
            rows.first.get_by_test_id("kick").click()
            dash.by("confirm-ok").click()
            assert victim.disconnected.wait(5), "the kicked client was not disconnected"
            expect(rows).to_have_count(0)
            expect(dash.by("clients-empty")).to_be_visible()
            assert not dash.errors, dash.errors
            dash.close()
    finally:
        clients.close_all()
        rx.stop()


DURABLE_FIELDS = (
    "durable",
    "fsync",
    "fsync_interval",
    "max_event_age",
    "max_spool_bytes",
    "dead_letter",
    "max_dead_letter_bytes",
)


def test_dashboard_delivery_guarantees(broker) -> None:
    """Step 4 of the form, README "Reliability": a durable webhook created through the form is
    stored as chosen; edits of other fields keep every durable setting (also values the form
    never set, on a webhook made over the API); a refused value is shown next to its field, also
    while its switch is off; the webhook's page says it is durable and shows its spool counters."""
    rx = Receiver().start()
    try:
        b = broker()
        # made over the API with values the form's defaults do not have
        api_hook = {
            "name": "api-durable",
            "url": rx.url("/api"),
            "durable": True,
            "fsync": "never",
            "fsync_interval": "50ms",
            "max_event_age": "90s",
            "max_spool_bytes": "1MB",
            "dead_letter": False,
            "max_dead_letter_bytes": "2MB",
        }
        status, body = b.api("POST", "/api/v1/webhooks", api_hook)
        assert status == 201, body
        with chromium() as browser:
            dash = Dashboard(browser, f"http://{b.admin_host}:{b.admin_port}")
            dash.goto("#/webhooks")
            dash.login(ADMIN_PASSWORD)

            # -- create: durable, fsync "always", dead letters on ------------------------------------
            dash.open_create_form()
            expect(dash.by("f-durable")).not_to_be_checked()
            expect(dash.by("durable-panel")).to_be_hidden()
            expect(dash.by("dead-letter-panel")).to_be_hidden()
            dash.fill_basics("spooled", "kept on disk")
            dash.fill_request(rx.url("/spooled"))
            dash.fill_guarantees(
                durable=True, dead_letter=True, fsync="always", max_event_age="2h", max_dead_letter_bytes="16MB"
            )
            expect(dash.by("durable-panel")).to_be_visible()
            expect(dash.by("dead-letter-panel")).to_be_visible()
            expect(dash.by("fsync-hint")).to_contain_text("power loss")
            dash.save()
            expect(dash.by("flash")).to_contain_text('Webhook "spooled" created.')
            status, item = b.api("GET", "/api/v1/webhooks/spooled")
            assert status == 200, item
            stored = {k: item["config"][k] for k in DURABLE_FIELDS}
            assert stored == {
                "durable": True,
                "fsync": "always",
                "fsync_interval": "10ms",
                "max_event_age": "2h",
                "max_spool_bytes": "256MB",
                "dead_letter": True,
                "max_dead_letter_bytes": "16MB",
            }, stored
            assert item["metrics"]["durable"] is True, item["metrics"]

            # -- its page: durable, the settings, the spool and dead-letter counters ------------------
            dash.row("spooled").get_by_test_id("webhook-link").click()
            expect(dash.by("wh-durability")).to_have_text("durable")
            expect(dash.by("setting-delivery")).to_contain_text("fsync always")
            expect(dash.by("setting-dead-letters")).to_have_text("kept, up to 16MB")
            expect(dash.by("spool-stats")).to_be_visible()
            expect(dash.by("m-spool_bytes")).to_have_text("0 B")
            expect(dash.by("m-dead_letters")).to_have_text("0")

            # -- edit another field: the durable settings survive -------------------------------------
            before = b.api("GET", "/api/v1/webhooks/spooled")[1]["config"]
            dash.by("edit").click()
            expect(dash.by("f-durable")).to_be_checked()
            expect(dash.by("f-fsync")).to_have_value("always")
            expect(dash.by("f-dead_letter")).to_be_checked()
            expect(dash.by("f-max_event_age")).to_have_value("2h")
            expect(dash.by("f-max_dead_letter_bytes")).to_have_value("16MB")
            dash.by("f-description").fill("still on disk")
            dash.save()
            expect(dash.by("flash")).to_contain_text('Webhook "spooled" saved.')
            after = b.api("GET", "/api/v1/webhooks/spooled")[1]["config"]
            assert after["description"] == "still on disk", after
            assert {**after, "description": before["description"]} == before, (before, after)

            # the webhook made over the API, non-default values the form never set, round trip
            before = b.api("GET", "/api/v1/webhooks/api-durable")[1]["config"]
            dash.goto("#/webhooks/api-durable/edit")
            expect(dash.by("f-fsync")).to_have_value("never")
            expect(dash.by("f-fsync_interval")).to_have_value("50ms")
            expect(dash.by("f-dead_letter")).not_to_be_checked()
            dash.by("f-description").fill("touched")
            dash.save()
            expect(dash.by("flash")).to_contain_text('Webhook "api-durable" saved.')
            after = b.api("GET", "/api/v1/webhooks/api-durable")[1]["config"]
            assert {**after, "description": before["description"]} == before, (before, after)
            assert after["description"] == "touched" and after["durable"] is True, after

            # -- a bad size: the API's error next to its field, nothing saved -------------------------
            dash.goto("#/webhooks/spooled/edit")
            expect(dash.by("f-durable")).to_be_checked()
            dash.by("f-max_spool_bytes").fill("lots")
            dash.save()
            expect(dash.by("error-max_spool_bytes")).to_be_visible()
            expect(dash.by("error-max_spool_bytes")).to_contain_text("'lots' is invalid")
            expect(dash.by("f-max_spool_bytes")).to_have_class(re.compile(r"\binvalid\b"))
            expect(dash.by("form-summary")).to_contain_text("Not saved")
            assert b.api("GET", "/api/v1/webhooks/spooled")[1]["config"]["max_spool_bytes"] == "256MB"

            # the same value with Durable switched off: still sent, still refused, its field shown
            dash.by("f-durable").uncheck()
            expect(dash.by("durable-panel")).to_be_hidden()
            dash.save()
            expect(dash.by("durable-panel")).to_be_visible()
            expect(dash.by("error-max_spool_bytes")).to_contain_text("'lots' is invalid")
            assert b.api("GET", "/api/v1/webhooks/spooled")[1]["config"]["durable"] is True

            # fixed and saved with Durable off: a memory webhook that keeps the other settings
            dash.by("f-max_spool_bytes").fill("256MB")
            dash.save()
            expect(dash.by("flash")).to_contain_text('Webhook "spooled" saved.')
            cfg = b.api("GET", "/api/v1/webhooks/spooled")[1]["config"]
            assert cfg["durable"] is False and cfg["fsync"] == "always" and cfg["dead_letter"] is True, cfg
            dash.row("spooled").get_by_test_id("webhook-link").click()
            expect(dash.by("wh-durability")).to_have_text("memory")
            expect(dash.by("setting-delivery")).to_have_text("memory (at most once)")
            expect(dash.by("spool-stats")).to_be_visible()  # dead letters are still kept
            assert not dash.errors, dash.errors
            dash.close()
    finally:
        rx.stop()
