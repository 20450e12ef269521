"""Order status from the business's own system over HTTP (`sources:` in a flow, ivr/data_sources.py).

A real HTTP server in a thread plays the shop; a keypad caller asks for an order through the signed
webhooks of a real server on a real Redis. Each way the shop can answer (an answer, not found, too
slow, an error status, a broken answer, nobody listening) is checked by what the caller hears and
where the call goes: a failed lookup always ends with a person, never silence."""
from __future__ import annotations

import json
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ivr import keys
from ivr.config import ROOT
from ivr.flows.loader import FlowError, load_flow
from ivr.server import LoopbackServer, free_port
from ivr.simulate.twilio_client import TwilioClient, parse_twiml
from tests.support import port_of

FAILED = "I can't reach our order system right now."
TIMEOUT = 0.8
TOKEN = "sk_live_" + "7f3a9c" * 6          # the shop's API key: in the environment, never in a flow


class Shop(BaseHTTPRequestHandler):
    """GET /orders/{number}: what the shop answers depends on the number."""
    orders = {"100234": {"order": {"status": "shipped on Monday with DHL", "carrier": "DHL"}, "id": "100234"}}
    requests = []
    seen_auth = []

    def do_GET(self):
        Shop.requests.append(self.path)
        Shop.seen_auth.append(self.headers.get("Authorization"))
        if self.path.startswith("/secure/") and self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._send(401, json.dumps({"error": "unauthorized"}))
        number = self.path.rsplit("/", 1)[-1]
        if number == "100001":                       # slow: past the flow's timeout
            time.sleep(TIMEOUT * 3)
            return self._send(200, json.dumps(self.orders["100234"]))
        if number == "100002":
            return self._send(500, "Internal Server Error")
        if number == "100003":
            return self._send(200, "<html>maintenance</html>", "text/html")
        if number == "100006":                       # JSON, nested past the decoder's stack
            return self._send(200, "[" * 60000)
        if number == "100005":                       # not HTTP at all
            self.wfile.write(b"NOT HTTP AT ALL\r\n\r\n")
            self.close_connection = True
            return None
        if number == "100004":                       # JSON, but not the fields the flow reads
            return self._send(200, json.dumps({"id": number}))
        if number in self.orders:
            return self._send(200, json.dumps(self.orders[number]))
        return self._send(404, json.dumps({"error": "no such order"}))

    def _send(self, status, body, kind="application/json"):
        data = body.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass                                      # ivr gave up waiting: as a real shop would see it

    def log_message(self, *args):
        pass


@pytest.fixture
def shop():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Shop)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    Shop.requests, Shop.seen_auth = [], []
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


SOURCE = """sources:
  shop:
    url: "{base}/orders/{{value}}"
    timeout: {timeout}
    fields: {{status: order.status, carrier: order.carrier}}
    failed: {{en: "{failed}"}}
"""
AUTH = '    headers: {Authorization: "Bearer ${IVR_SOURCE_SHOP_TOKEN}"}\n'


def shop_flows(tmp_path, base, timeout=TIMEOUT, headers=""):
    """The shipped flows, the English order lookup reading the shop instead of the YAML file
    (`headers`: lines added to the source, e.g. AUTH)."""
    folder = tmp_path / "flows"
    shutil.copytree(ROOT / "flows", folder)
    path = folder / "hotline.yaml"
    text = path.read_text(encoding="utf-8")
    text = text.replace("data:\n  orders: data/orders.yaml\n",
                        "data:\n  orders: data/orders.yaml\n" + SOURCE.format(base=base, timeout=timeout,
                                                                              failed=FAILED) + headers)
    text = text.replace("lookup: orders, record: order", "lookup: shop, record: order")
    text = text.replace("labels:\n", "labels:\n  lookup_failed: {en: the order system did not answer}\n", 1)
    path.write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def hotline(tmp_path, shop, make_config, build_app, redis):
    cfg = make_config(flows_dir=shop_flows(tmp_path, shop))
    with LoopbackServer(build_app(cfg), port=port_of(cfg)) as srv:
        yield TwilioClient(srv.url, cfg.twilio_auth_token)


def ask_order(client, number, n):
    """A keypad caller: 1 (order), then the number and #. Returns (TwiML root, seconds it took)."""
    call = {"CallSid": "CA" + f"{n:032d}", "From": f"+1555010{n:04d}", "To": "+15005550100"}
    assert client.post("/voice", call)[0] == 200
    status, body = client.post("/voice/gather?turn=1", dict(call, Digits="1"))
    assert status == 200 and "order number" in body
    started = time.monotonic()
    status, body = client.post("/voice/gather?turn=2", dict(call, Digits=number))
    assert status == 200, body
    return call["CallSid"], parse_twiml(body), time.monotonic() - started


def said(root) -> str:
    return " ".join(el.text or "" for el in root.iter("Say"))


def test_the_shop_answers_and_the_caller_hears_the_status(hotline, redis):
    sid, root, _ = ask_order(hotline, "100234", 1)
    assert "shipped on Monday with DHL" in said(root)
    assert root.find("Gather") is not None                        # then "anything else?"
    assert Shop.requests == ["/orders/100234"]
    assert not redis.hget(keys.call(sid), "handoff_at")


def test_an_order_the_shop_does_not_know_is_asked_again(hotline, redis):
    sid, root, _ = ask_order(hotline, "199999", 2)
    assert "couldn't find that order number" in said(root) and root.find("Gather") is not None
    assert not redis.hget(keys.call(sid), "handoff_at")


@pytest.mark.parametrize("number, why", [
    ("100001", "no answer within 0.8 s"),
    ("100002", "HTTP 500"),
    ("100003", "answer is not JSON"),
    ("100004", "answer has no 'order.status'"),
    ("100005", "no usable HTTP answer (BadStatusLine)"),
    ("100006", "answer is JSON nested too deeply"),
], ids=["slow", "error", "bad-json", "missing-field", "not-http", "nested"])
def test_a_failed_lookup_says_so_and_goes_to_a_person(hotline, redis, number, why):
    sid, root, took = ask_order(hotline, number, 10 + int(number[-1]))
    words = said(root)
    assert words.startswith(FAILED) and "connecting you to one of our team" in words   # never silence
    assert root.find("Enqueue") is not None or root.find("Dial") is not None          # a person next
    assert took < TIMEOUT + 1.5                                                         # the timeout held
    rec = redis.hgetall(keys.call(sid))
    assert rec["reason"] == "lookup_failed" and rec["status"] == "queued" and rec["queue"] == "normal"
    turns = [json.loads(t) for t in redis.lrange(keys.turns(sid), 0, -1)]
    assert any(why in (t.get("detail") or "") for t in turns), turns


def test_a_shop_nobody_answers_at_goes_to_a_person(tmp_path, make_config, build_app, redis):
    cfg = make_config(flows_dir=shop_flows(tmp_path, f"http://127.0.0.1:{free_port()}"))
    with LoopbackServer(build_app(cfg), port=port_of(cfg)) as srv:
        sid, root, _ = ask_order(TwilioClient(srv.url, cfg.twilio_auth_token), "100234", 20)
    assert said(root).startswith(FAILED) and root.find("Enqueue") is not None
    assert redis.hget(keys.call(sid), "reason") == "lookup_failed"


def with_header(header):
    """An edit of the flow text giving the shop source this header (as `headers: {...}`)."""
    failed = f'    failed: {{en: "{FAILED}"}}\n'
    return lambda s: s.replace(failed, failed + f"    headers: {{{header}}}\n", 1)


@pytest.mark.parametrize("edit, problem", [
    (lambda s: s.replace("/orders/{value}", "/orders/"), "the url needs {value}"),
    (lambda s: s.replace("/orders/{value}", "/orders/{value}/{other}"), "only placeholder a url may use"),
    (lambda s: s.replace("timeout: 0.8", "timeout: 30"), "30 is greater than the maximum of 5"),
    (lambda s: s.replace("url: \"http", "url: \"ftp"), "does not match"),
    (lambda s: s.replace("lookup: shop,", "lookup: shopp,"), "lookup 'shopp' is not in data or sources"),
    (lambda s: s.replace("  lookup_failed: {en: the order system did not answer}\n", ""),
     "label 'lookup_failed': missing 'en'"),
    (lambda s: s.replace(f"failed: {{en: \"{FAILED}\"}}", "failed: {en: \"Please say your number again.\"}"),
     "asks the caller to speak"),
    (with_header('Authorization: "Bearer sk_live_abc123"'), "is a credential written into the flow file"),
    (with_header('X-Api-Key: "abc123"'), "is a credential written into the flow file"),
    (with_header('Authorization: "Bearer ${TWILIO_AUTH_TOKEN}"'), "is not an IVR_SOURCE_ variable"),
    (with_header('"Bad Header": "x"'), "does not match"),
    (with_header('Authorization: "Bearer sk_live_abc123 ${IVR_SOURCE_SHOP_TOKEN}"'),
     "is a credential written into the flow file"),
    (with_header('X-Shop-Credential: "abc123"'), "is a credential written into the flow file"),
    (lambda s: s.replace("/orders/{value}", "/orders/{value}?api_key=abc123"), "the url carries a credential"),
    (lambda s: s.replace("http://shop.example", "http://ivr:abc123@shop.example"), "the url carries a credential"),
], ids=["no-value", "other-placeholder", "timeout", "scheme", "unknown-lookup", "label", "keypad",
        "literal-bearer", "literal-api-key", "other-variable", "header-name", "literal-beside-variable",
        "credential-header-name", "key-in-query", "userinfo"])
def test_a_bad_source_is_refused_with_its_file_and_line(tmp_path, edit, problem):
    path = shop_flows(tmp_path, "http://shop.example") / "hotline.yaml"
    path.write_text(edit(path.read_text(encoding="utf-8")), encoding="utf-8")
    with pytest.raises(FlowError) as err:
        load_flow(path)
    found = [p for p in err.value.problems if problem in p.message]
    assert found, str(err.value)
    line = path.read_text(encoding="utf-8").splitlines()[found[0].line - 1]
    assert found[0].file == str(path) and found[0].line > 1, (found[0], line)


def test_a_credential_comes_from_the_environment_and_stays_out_of_records_and_logs(
        tmp_path, shop, make_config, build_app, redis, caplog):
    cfg = make_config(flows_dir=shop_flows(tmp_path, shop + "/secure", headers=AUTH),
                      source_secrets={"IVR_SOURCE_SHOP_TOKEN": TOKEN})
    caplog.set_level("DEBUG")
    with LoopbackServer(build_app(cfg), port=port_of(cfg)) as srv:
        sid, root, _ = ask_order(TwilioClient(srv.url, cfg.twilio_auth_token), "100234", 30)
    assert "shipped on Monday with DHL" in said(root)
    assert Shop.seen_auth == [f"Bearer {TOKEN}"]
    stored = [str(v) for k in redis.scan_iter("*") for v in
              (redis.hgetall(k).values() if redis.type(k) == "hash" else
               redis.lrange(k, 0, -1) if redis.type(k) == "list" else [])]
    assert stored and not any(TOKEN in v for v in stored)
    assert TOKEN not in caplog.text and TOKEN not in repr(cfg)


def test_an_unset_credential_is_a_failed_lookup_named_in_the_transcript_and_at_healthz(
        tmp_path, shop, make_config, build_app, redis):
    cfg = make_config(flows_dir=shop_flows(tmp_path, shop + "/secure", headers=AUTH))
    with LoopbackServer(build_app(cfg), port=port_of(cfg)) as srv:
        client = TwilioClient(srv.url, cfg.twilio_auth_token)
        sid, root, _ = ask_order(client, "100234", 31)
        health = client.get_json("/healthz")[1]
    assert said(root).startswith(FAILED) and root.find("Enqueue") is not None     # a person, not silence
    assert Shop.requests == []                                                     # nothing sent without it
    turns = [json.loads(t) for t in redis.lrange(keys.turns(sid), 0, -1)]
    assert any("IVR_SOURCE_SHOP_TOKEN is not set" in (t.get("detail") or "") for t in turns), turns
    assert health["status"] == "degraded"
    assert any("IVR_SOURCE_SHOP_TOKEN" in r and "shop" in r for r in health["reasons"]), health


def test_a_credential_with_a_line_break_is_a_failed_lookup_that_does_not_say_it(
        tmp_path, shop, make_config, build_app, redis, caplog):
    # An env file saved with CRLF: from_env strips it, a Config built otherwise must not leak it either.
    cfg = make_config(flows_dir=shop_flows(tmp_path, shop + "/secure", headers=AUTH),
                      source_secrets={"IVR_SOURCE_SHOP_TOKEN": TOKEN + "\r"})
    caplog.set_level("DEBUG")
    with LoopbackServer(build_app(cfg), port=port_of(cfg)) as srv:
        sid, root, _ = ask_order(TwilioClient(srv.url, cfg.twilio_auth_token), "100234", 33)
    assert said(root).startswith(FAILED) and redis.hget(keys.call(sid), "reason") == "lookup_failed"
    turns = [json.loads(t) for t in redis.lrange(keys.turns(sid), 0, -1)]
    assert any("IVR_SOURCE_SHOP_TOKEN holds a line break" in (t.get("detail") or "") for t in turns), turns
    assert TOKEN not in caplog.text and Shop.requests == []


def test_a_wrong_credential_is_a_failed_lookup(tmp_path, shop, make_config, build_app, redis):
    cfg = make_config(flows_dir=shop_flows(tmp_path, shop + "/secure", headers=AUTH),
                      source_secrets={"IVR_SOURCE_SHOP_TOKEN": "expired"})
    with LoopbackServer(build_app(cfg), port=port_of(cfg)) as srv:
        sid, root, _ = ask_order(TwilioClient(srv.url, cfg.twilio_auth_token), "100234", 32)
    assert said(root).startswith(FAILED) and redis.hget(keys.call(sid), "reason") == "lookup_failed"
    turns = [json.loads(t) for t in redis.lrange(keys.turns(sid), 0, -1)]
    assert any("HTTP 401" in (t.get("detail") or "") for t in turns), turns


def test_only_ivr_source_variables_reach_a_source():
    from ivr.config import Config
    cfg = Config.from_env({"IVR_SOURCE_SHOP_TOKEN": TOKEN + "\r", "TWILIO_AUTH_TOKEN": "t" * 32,
                           "IVR_SOURCE_EMPTY": " "})
    assert cfg.source_secrets == {"IVR_SOURCE_SHOP_TOKEN": TOKEN}      # blanks (a CRLF env file) stripped
    assert TOKEN not in repr(cfg)


@pytest.mark.parametrize("base, warned", [("http://shop.example", True), ("https://shop.example", False),
                                          ("http://127.0.0.1:9", False)])
def test_a_credential_sent_unencrypted_to_another_machine_is_reported(tmp_path, base, warned):
    from ivr import preflight
    flow = load_flow(shop_flows(tmp_path, base, headers=AUTH) / "hotline.yaml")
    found = preflight.source_problems({"hotline": flow}, {"IVR_SOURCE_SHOP_TOKEN": TOKEN})
    assert any("over plain http" in p for p in found) == warned, found
    assert not any(TOKEN in p for p in found)
