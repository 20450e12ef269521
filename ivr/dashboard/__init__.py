"""The operator dashboard: live calls, queues, waits, transfers and KPIs in the browser.

Read-only over the Redis call records (see queries.py); its own state is operator
accounts and sessions. Docs: docs/dashboard.md.
"""
from __future__ import annotations


def init_app(app):
    """Register the dashboard on an app made by ivr.create_app (services already attached)."""
    from . import security, views

    svc = app.extensions["ivr"]
    security.init_app(app, svc.config, svc.keyring)
    app.register_blueprint(views.bp)
