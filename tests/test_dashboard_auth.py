"""Dashboard login: nothing of a call without a session, CSRF, lock-out, cookies, headers, CLI."""
import pytest
from click.testing import CliRunner

from ivr import keys
from ivr.cli import main as cli
from ivr.dashboard.auth import Operators
from tests.support.dashboard import PASSWORD, add_operator, csrf_from, login

DATA_URLS = ["/dashboard/api/live", "/dashboard/api/kpis", "/dashboard/api/calls", "/dashboard/api/calls/CA1",
             "/dashboard/events", "/dashboard/export.csv"]


@pytest.fixture
def client(app, redis):
    add_operator(redis)
    return app.test_client()


def test_nothing_visible_without_login(client, simulate):
    report = simulate(("press", "0"))
    page = client.get("/dashboard")
    assert page.status_code == 302 and page.headers["Location"].startswith("/dashboard/login")
    call_page = client.get(f"/dashboard/calls/{report['call_sid']}")
    assert call_page.status_code == 302
    for url in DATA_URLS:
        resp = client.get(url)
        assert resp.status_code == 401, url
        assert report["call_sid"] not in resp.get_data(as_text=True)


def test_login_then_logout(client):
    resp = login(client, next="/dashboard/calls/CAx")
    assert resp.status_code == 302 and resp.headers["Location"] == "/dashboard/calls/CAx"
    assert client.get("/dashboard").status_code == 200
    assert client.get("/dashboard/api/live").status_code == 200
    token = csrf_from(client.get("/dashboard").get_data(as_text=True))
    assert client.post("/dashboard/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/dashboard/api/live").status_code == 401


def test_login_never_redirects_off_site(client):
    for target in ("https://evil.example/", "//evil.example/x", "/voice", "/\\evil.example"):
        resp = login(client, next=target)
        assert resp.headers["Location"] == "/dashboard", target


def test_login_and_logout_need_csrf_token(client):
    resp = client.post("/dashboard/login", data={"name": "alice", "password": PASSWORD})
    assert resp.status_code == 400
    assert client.get("/dashboard/api/live").status_code == 401
    login(client)
    assert client.post("/dashboard/logout").status_code == 400
    assert client.get("/dashboard/api/live").status_code == 200


def test_wrong_password_and_unknown_name_look_the_same(client):
    a = login(client, password="wrong password!")
    b = login(client, name="mallory", password="wrong password!")
    assert a.status_code == b.status_code == 401
    assert "Wrong name or password" in a.get_data(as_text=True)
    assert "Wrong name or password" in b.get_data(as_text=True)


def test_five_failures_lock_the_account(client, config, redis, app):
    for _ in range(config.login_max_failures):
        assert login(client, password="not the password").status_code == 401
    locked = login(client)  # the right password, too late
    assert locked.status_code == 429 and "Too many failed attempts" in locked.get_data(as_text=True)
    assert client.get("/dashboard/api/live").status_code == 401
    pair = keys.login_failures("pair", "alice|127.0.0.1", app.extensions["ivr"].keyring.hash_key)
    ttl = redis.ttl(pair)
    assert 0 < ttl <= config.login_lock_seconds
    # The lock ends by itself: expire it as time would.
    redis.delete(pair)
    assert login(client).status_code == 302


@pytest.mark.slow          # 21 argon2 verifications at production cost: seconds of CPU
def test_failures_from_one_address_lock_that_address(client, redis):
    Operators(redis).add("bob", PASSWORD)
    for i in range(20):
        login(client, name=f"guess{i}", password="nope nope nope", ip="198.51.100.7")
    assert login(client, name="bob", ip="198.51.100.7").status_code == 429
    assert login(client, name="bob", ip="198.51.100.8").status_code == 302
    # Addresses are hashed in key names, like caller numbers.
    assert not any("198.51.100.7" in k for k in redis.scan_iter("ivr:login_failures:*"))


def test_removing_an_operator_ends_their_sessions(client, redis):
    login(client)
    assert client.get("/dashboard/api/live").status_code == 200
    Operators(redis).remove("alice")
    assert client.get("/dashboard/api/live").status_code == 401


def test_a_new_password_ends_the_sessions_of_the_old_one(client, redis):
    """`ivr operators add NAME --replace` rotates a leaked password: a browser logged in with the old
    one is logged out, and the new one logs in."""
    login(client)
    assert client.get("/dashboard/api/live").status_code == 200
    Operators(redis).add("alice", "a brand new password", replace=True)
    assert client.get("/dashboard/api/live").status_code == 401
    assert login(client).status_code != 302                                  # the old password
    assert login(client, password="a brand new password").status_code == 302
    assert client.get("/dashboard/api/live").status_code == 200


def test_passwords_are_stored_as_argon2(redis):
    add_operator(redis)
    stored = redis.hget(keys.operator("alice"), "password")
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_cookie_flags_and_security_headers(client):
    page = client.get("/dashboard/login")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    cookie = login(client).headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert client.get("/dashboard/api/live").headers["Cache-Control"] == "no-store"


def test_secure_cookie_when_public_url_is_https(make_config, redis, build_app):
    cfg = make_config(public_url="https://hotline.example")
    app = build_app(cfg)
    add_operator(redis)
    client = app.test_client()
    token = csrf_from(client.get("/dashboard/login", base_url="https://hotline.example").get_data(as_text=True))
    resp = client.post("/dashboard/login", base_url="https://hotline.example",
                       headers={"Referer": "https://hotline.example/dashboard/login"},
                       data={"name": "alice", "password": PASSWORD, "csrf_token": token})
    assert resp.status_code == 302 and "Secure" in resp.headers["Set-Cookie"]


def test_processes_share_the_session_key_through_redis(make_config, redis, build_app):
    cfg = make_config()
    one = build_app(cfg)
    two = build_app(cfg)
    add_operator(redis)
    c1 = one.test_client()
    login(c1)
    cookie = c1.get_cookie("ivr_session")
    c2 = two.test_client()
    c2.set_cookie("ivr_session", cookie.value)
    assert c2.get("/dashboard/api/live").status_code == 200
    assert redis.get(keys.SECRET_KEY) == one.secret_key == two.secret_key


def test_configured_secret_key_is_used(make_config, redis, build_app):
    cfg = make_config(secret_key="s" * 40)
    app = build_app(cfg)
    assert app.secret_key == "s" * 40
    add_operator(redis)
    login(app.test_client())
    assert redis.get(keys.SECRET_KEY) is None


def test_webhooks_need_no_session_or_csrf(simulate):
    report = simulate(("press", "3"), ("press", "2"))
    assert report["outcome"] == "answered"


def test_operators_cli(redis_url, redis, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)
    runner = CliRunner()
    added = runner.invoke(cli, ["operators", "add", "Carol", "--password-stdin"], input=PASSWORD + "\n")
    assert added.exit_code == 0, added.output
    assert "carol added" in added.output and PASSWORD not in added.output
    assert Operators(redis).verify("carol", PASSWORD)
    again = runner.invoke(cli, ["operators", "add", "carol", "--password-stdin"], input=PASSWORD + "\n")
    assert again.exit_code != 0 and "already exists" in again.output
    short = runner.invoke(cli, ["operators", "add", "dave", "--password-stdin"], input="short\n")
    assert short.exit_code != 0 and "at least" in short.output
    prompted = runner.invoke(cli, ["operators", "add", "erin"], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert prompted.exit_code == 0, prompted.output
    listed = runner.invoke(cli, ["operators", "list"])
    assert "carol" in listed.output and "erin" in listed.output
    assert runner.invoke(cli, ["operators", "remove", "carol"]).exit_code == 0
    assert runner.invoke(cli, ["operators", "remove", "carol"]).exit_code != 0
    assert "carol" not in runner.invoke(cli, ["operators", "list"]).output
