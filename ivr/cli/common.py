"""What the commands share: logging set-up, the app (refusing a bad flow or Redis in one line), and the
hotline an admin command works on (refusing a folder that is none)."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NoReturn

import click

# Exit status of a command refused before it did anything (no hotline here, a Redis it must not use).
REFUSED = 2


def refuse(message: str) -> NoReturn:
    """Say why on stderr, in the command's words, and exit REFUSED."""
    click.echo(message, err=True)
    sys.exit(REFUSED)


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
        refuse(f"refusing to start: invalid flow\n{exc}")
    except (UnsupportedRedis, EmbeddedRedisError) as exc:
        refuse(f"refusing to start: {exc}")


# What names a hotline without the working directory: its Redis, or its folder.
NAMING_VARIABLES = ("REDIS_URL", "REDIS_SENTINELS", "IVR_HOME", "IVR_DATA_DIR")


def hotline_problem(env=None) -> str | None:
    """Why an admin command run here would work on no hotline's data; None when it would not.

    A hotline is named by the environment (REDIS_URL or REDIS_SENTINELS: its Redis; IVR_HOME or
    IVR_DATA_DIR: its folder), or else is the working directory, when that is one: it has flows/ or
    ivr.env (`ivr init` lays a hotline folder out), or its var/ holds the embedded Redis's data or a
    running server's socket. Anywhere else a command would start an empty Redis in a new ./var/ and
    report success on it (a backup of nothing, an operator nobody's server knows)."""
    from ..config import home
    from ..redis_conn import AOF_FILE, DUMP_FILE, SOCKET_FILE

    env = os.environ if env is None else env
    if any(env.get(name) for name in NAMING_VARIABLES):
        return None
    here = home(env)
    data = Path(here) / "var"
    if (here / "flows").is_dir() or (here / "ivr.env").is_file() or \
            any((data / name).exists() for name in (DUMP_FILE, AOF_FILE, SOCKET_FILE)):
        return None
    return (f"{here} is not a hotline folder (no flows/, no ivr.env, no data in var/) and neither IVR_HOME nor "
            "REDIS_URL is set: run this in the hotline folder, or set IVR_HOME to it (the server's; "
            "docs/deploy.md)")


def hotline_config():
    """The configuration of the hotline an admin command reads or changes, after saying on stderr which
    Redis that is (passwords masked); exit REFUSED, in one line, when there is no hotline here."""
    from ..config import Config
    from ..redis_conn import describe_where

    problem = hotline_problem()
    if problem:
        refuse(f"ivr: {problem}")
    cfg = Config.from_env()
    click.echo(f"ivr: hotline data: {describe_where(cfg)}", err=True)
    return cfg


def hotline_redis(cfg):
    """The Redis of `cfg` for a command; an embedded one that can be neither joined nor started is one line."""
    from ..redis_conn import EmbeddedRedisError, for_config

    try:
        return for_config(cfg)
    except EmbeddedRedisError as exc:
        refuse(f"ivr: {exc}")
