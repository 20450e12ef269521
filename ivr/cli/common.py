"""What the commands share: logging set-up, the app (refusing a bad flow or Redis in one line)."""
from __future__ import annotations

import sys

import click

# Exit status of a command refused before it did anything (a Redis it must not use).
REFUSED = 2


def setup_logging(cfg=None):
    """Logs at the configured level and format (IVR_LOG_LEVEL, IVR_LOG_FORMAT; ivr/logs.py)."""
    from ..logs import setup
    setup(cfg.log_level if cfg else "INFO", cfg.log_format if cfg else "text")


def build_app(cfg):
    from .. import create_app
    from ..flows.loader import FlowError
    from ..redis_conn import EmbeddedRedisError, UnsupportedRedis

    try:
        return create_app(cfg)
    except FlowError as exc:
        click.echo(f"refusing to start: invalid flow\n{exc}", err=True)
        sys.exit(REFUSED)
    except (UnsupportedRedis, EmbeddedRedisError) as exc:
        click.echo(f"refusing to start: {exc}", err=True)
        sys.exit(REFUSED)


def hotline_redis(cfg):
    """The Redis of `cfg` for a command; an embedded one that can be neither joined nor started is one line."""
    from ..redis_conn import EmbeddedRedisError, for_config

    try:
        return for_config(cfg)
    except EmbeddedRedisError as exc:
        click.echo(f"ivr: {exc}", err=True)
        sys.exit(REFUSED)
