"""Browser-side protection for the dashboard: session key, cookies, CSRF, headers.

Twilio's webhooks are protected by their signatures (ivr/signature.py) and never use a
session or a CSRF token; everything here is set up so it cannot get in their way.
"""
from __future__ import annotations

import logging

from flask import request
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFProtect

from ..keyring import shared_secret  # noqa: F401 - the one key every process shares (ivr/keyring.py)

log = logging.getLogger("ivr.dashboard")

csrf = CSRFProtect()

# No inline script or style anywhere in the dashboard: scripts and styles come from
# /dashboard/static only, data from same-origin fetch and EventSource, voicemail audio from the
# dashboard itself (media-src).
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "media-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


class LazyKeySessions(SecureCookieSessionInterface):
    """Fetches the shared key from Redis on the first dashboard request, not at start-up:
    the hotline must start and route callers to a person even while Redis is down."""

    def __init__(self, keyring):
        self.keyring = keyring

    def get_signing_serializer(self, app):
        if not app.secret_key:
            if not request.path.startswith("/dashboard"):
                return None  # webhooks need no session; no Redis round trip for them
            try:
                app.secret_key = self.keyring.secret()
            except Exception as exc:  # noqa: BLE001 - no session this time; the view reports Redis down
                log.warning("dashboard session key unavailable: %s", type(exc).__name__)
                return None
        return super().get_signing_serializer(app)


def init_app(app, config, keyring):
    if config.secret_key:
        app.secret_key = config.secret_key
    else:
        app.session_interface = LazyKeySessions(keyring)
    app.config.update(
        SESSION_COOKIE_NAME="ivr_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.public_url.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=config.session_hours * 3600,
        # Checked only where the dashboard asks (protect() in its before_request), so no
        # other blueprint's POSTs (Twilio's webhooks) are ever touched by it.
        WTF_CSRF_CHECK_DEFAULT=False,
        # Valid as long as the session: a login page left open over lunch still works.
        WTF_CSRF_TIME_LIMIT=None,
        WTF_CSRF_SSL_STRICT=True,
    )
    csrf.init_app(app)
    if config.trusted_proxies:
        from werkzeug.middleware.proxy_fix import ProxyFix
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=config.trusted_proxies)

    @app.after_request
    def baseline_headers(resp):
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        return resp


def page_headers(resp):
    """Dashboard responses: strict CSP, and no caching of anything about calls."""
    resp.headers["Content-Security-Policy"] = CSP
    if request.endpoint != "dashboard.static":
        resp.headers["Cache-Control"] = "no-store"
    return resp
