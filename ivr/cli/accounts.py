"""`ivr operators` and `ivr agents`: who may use the dashboard and who may take callers."""
from __future__ import annotations

import sys

import click

from .common import hotline_config, hotline_redis


def _remove(what, remove, error, name):
    """Remove one account; a bad name or an unknown one is a one-line error."""
    try:
        removed = remove(name)
    except error as exc:
        raise click.ClickException(str(exc)) from exc
    if not removed:
        raise click.ClickException(f"no {what} named {name}")
    click.echo(f"{what} {name} removed")


@click.group()
def operators():
    """Dashboard operator accounts (stored in Redis, passwords hashed with argon2)."""


def _operators():
    from ..dashboard.auth import Operators

    return Operators(hotline_redis(hotline_config()))   # the server's Redis: URL, sentinels or embedded


@operators.command("add")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input (scripts)")
@click.option("--replace", is_flag=True, help="set a new password for an existing operator")
def operators_add(name, password_stdin, replace):
    """Create an operator who can log in at /dashboard (password prompted)."""
    from ..dashboard.auth import AuthError

    accounts = _operators()         # which hotline, or the refusal, before the password is asked for
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        name = accounts.add(name, password, replace=replace)
    except AuthError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"operator {name} {'updated' if replace else 'added'}")


@operators.command("list")
def operators_list():
    """Operator names, when they were created and last logged in."""
    import datetime as dt

    def when(ts):
        return dt.datetime.fromtimestamp(int(ts)).strftime("%Y-%m-%d %H:%M") if ts else "never"

    for op in _operators().list():
        click.echo(f"{op['name']:<32} created {when(op['created_at'])}  last login {when(op['last_login_at'])}")


@operators.command("remove")
@click.argument("name")
def operators_remove(name):
    """Delete an operator; their open dashboard sessions end at once."""
    from ..dashboard.auth import AuthError

    _remove("operator", _operators().remove, AuthError, name)


@click.group()
def agents():
    """Agents who may take callers on the agent line (registered number, optional keypad PIN)."""


def _agents():
    from ..agents import Agents

    cfg = hotline_config()
    # The server's Redis (URL, sentinels or embedded), and its PIN lock-out settings.
    return Agents(hotline_redis(cfg), pin_max_failures=cfg.agent_pin_max_failures,
                  pin_lock_seconds=cfg.agent_pin_lock_seconds)


@agents.command("add")
@click.argument("name")
@click.argument("number")
@click.option("--pin", "with_pin", is_flag=True, help="ask for a 4-8 digit PIN the agent keys in on the line")
@click.option("--pin-stdin", is_flag=True, help="read the PIN from standard input (scripts)")
@click.option("--replace", is_flag=True, help="change an existing agent's number or PIN")
def agents_add(name, number, with_pin, pin_stdin, replace):
    """Let NAME reach callers on the agent line when calling from NUMBER (E.164, e.g. +15551234567)."""
    from ..agents import AgentError

    registry = _agents()            # which hotline, or the refusal, before the PIN is asked for
    pin = None
    if pin_stdin:
        pin = sys.stdin.readline().strip()
    elif with_pin:
        pin = click.prompt("PIN", hide_input=True, confirmation_prompt=True)
    try:
        name = registry.add(name, number, pin=pin, replace=replace)
    except AgentError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"agent {name} {'updated' if replace else 'added'}{' with a PIN' if pin else ''}")


@agents.command("list")
def agents_list():
    """Agents, their (masked) numbers and whether they need a PIN."""
    import datetime as dt

    from ..redact import mask_phone

    registry = _agents()
    for name, agent in sorted(registry.all().items()):
        added = dt.datetime.fromtimestamp(int(agent.get("added_at") or 0)).strftime("%Y-%m-%d %H:%M")
        locked = registry.pin_locked(name) if agent.get("pin") else 0
        click.echo(f"{name:<32} {mask_phone(agent.get('number', '')):<16} {'PIN' if agent.get('pin') else 'no PIN':<7}"
                   f" added {added}" + (f"  PIN LOCKED for {-(-locked // 60)} min more (ivr agents unlock {name})"
                                       if locked else ""))


@agents.command("unlock")
@click.argument("name")
def agents_unlock(name):
    """Let NAME key in their PIN again now, after too many wrong PINs locked it."""
    from ..agents import AgentError

    try:
        unlocked = _agents().unlock(name)
    except AgentError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"agent {name}: PIN entry {'unlocked' if unlocked else 'was not locked'}")


@agents.command("remove")
@click.argument("name")
def agents_remove(name):
    """Stop NAME from reaching callers on the agent line."""
    from ..agents import AgentError

    _remove("agent", _agents().remove, AgentError, name)
