"""What the commands share: logging set-up, the app (refusing a bad flow or Redis in one line)."""
from __future__ import annotations

import logging
import sys

import click


def setup_logging(level="INFO"):
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def build_app(cfg):
    from .. import create_app
    from ..flows.loader import FlowError
    from ..redis_conn import UnsupportedRedis

    try:
        return create_app(cfg)
    except FlowError as exc:
        click.echo(f"refusing to start: invalid flow\n{exc}", err=True)
        sys.exit(2)
    except UnsupportedRedis as exc:
        click.echo(f"refusing to start: {exc}", err=True)
        sys.exit(2)
