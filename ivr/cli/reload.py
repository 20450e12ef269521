"""`ivr reload`: serve changed flows (and their data) without a restart.

The check and the training happen here, in this command's process, so a running server neither
serves a broken flow nor makes a caller wait for a classifier: a folder with problems is refused
with every problem (file:line) and nothing changes; a good one is trained (the classifier cache
under the data folder, which the servers then read; new spoken prompts are rendered here too),
and every server process is asked, through one Redis key, to load it on a background thread
(ivr/flow_versions.py). Calls in progress finish on the version they began with.
"""
from __future__ import annotations

import sys
import time

import click

from .common import hotline_config, hotline_redis

# Exit status when a running server process did not report serving the new version within --wait
# (none reported, one refused it, or one had not loaded it yet); 1: the folder has problems.
NOT_SERVED = 3


@click.command("reload")
@click.option("--wait", "wait_seconds", default=15.0, show_default=True, type=float,
              help="seconds to wait for the running server processes to report the new version (0: don't)")
def reload_cmd(wait_seconds):
    """Validate the flows folder and make every running server serve it for new calls."""
    from ..flow_versions import build, request_reload, serving
    from ..flows.loader import FlowError
    from ..redis_conn import describe_where

    cfg = hotline_config()
    try:
        version = build(cfg.flows_dir, cfg.data_dir / "classifiers", cfg.default_flow)
    except FlowError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        click.echo(f"{len(exc.problems)} problem(s) found: nothing reloaded, the servers keep what they serve",
                   err=True)
        sys.exit(1)
    if cfg.speech:
        # Spoken prompts rendered here too (the cache the servers read), for the same reason.
        from ..speech.services import SpeechServices

        speech = SpeechServices(cfg)
        langs = {lang for f in version.flows.values() for lang in f.languages if speech.available(lang)}
        new, _ = speech.prompts.prerender(version.flows.values(), langs)
        if new:
            click.echo(f"{new} new prompt(s) rendered")
    redis = hotline_redis(cfg)
    token = request_reload(redis, version.version)
    click.echo(f"flows {version.version} ({', '.join(sorted(version.flows))}) requested")
    if wait_seconds <= 0:
        return
    deadline = time.time() + wait_seconds
    while True:
        live = serving(redis)         # the running server processes (their entries expire with them)
        done = {w: e for w, e in live.items() if e.get("token") == token}
        if live and len(done) == len(live) or time.time() >= deadline:
            break
        time.sleep(0.2)
    for worker, entry in sorted(live.items()):
        state = "refused: " + entry["error"].splitlines()[0] if entry.get("error") and entry.get("token") == token \
            else "serving " + entry["version"] if entry.get("token") == token else "not yet reloaded"
        click.echo(f"  {worker}: {state}")
    if not live:
        # Nothing confirmed the new version: no server runs on this Redis (or this is not the server's Redis).
        # A server started later reads the folder, but a deploy script must not take this for a reload done.
        click.echo(f"no running server reported in {wait_seconds:g} s on {describe_where(cfg)}; a server started "
                   "later serves these flows", err=True)
        sys.exit(NOT_SERVED)
    if any(e.get("token") != token or e.get("error") for e in live.values()):
        sys.exit(NOT_SERVED)
