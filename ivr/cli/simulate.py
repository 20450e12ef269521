"""`ivr simulate`: place a call exactly as Twilio would and print the conversation.

Without --url the call is served in-process on a Redis of its own, in a temporary folder removed
afterwards: trying the README's examples on a production box must not add fake calls to the
operators' figures, nor to the waits real callers are told. --server-redis opts into the configured
Redis (REDIS_URL, sentinels, or the embedded one under IVR_DATA_DIR) to see a simulated call on the
dashboard. With --url, what goes wrong (nothing listening, a wrong token, not an ivr server) is one
line with a hint, not a traceback.
"""
from __future__ import annotations

import json
import logging
import secrets
import urllib.error
import xml.etree.ElementTree as ET
from urllib.parse import urlsplit

import click

from ..config import Config
from .common import build_app, refuse


class _OrderedInputs(click.Command):
    """Keeps --press, --say and --audio in the order given: a call is a sequence."""

    def parse_args(self, ctx, args):
        inputs, it = [], iter(args)
        for arg in it:
            for flag, kind in (("--press", "press"), ("--say", "say"), ("--audio", "audio")):
                if arg == flag:
                    inputs.append((kind, next(it, "")))
                elif arg.startswith(flag + "="):
                    inputs.append((kind, arg.split("=", 1)[1]))
        ctx.meta["ivr_inputs"] = inputs
        return super().parse_args(ctx, args)


@click.command(cls=_OrderedInputs)
@click.option("--press", multiple=True, help="keys the caller presses at the next prompt (repeatable); "
              "\"\" stays silent until the prompt times out")
@click.option("--say", multiple=True, help="what the caller says at the next prompt (repeatable); spoken with "
              "espeak-ng over the media stream when the language has a speech model, else sent as the transcript")
@click.option("--audio", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="a WAV file the caller plays at the next prompt (speech model needed)")
@click.option("--barge-in", "barge_in", type=float, default=None,
              help="speak this many seconds into each prompt instead of after it (media stream)")
@click.option("--lang", default=None, help="caller language (default: the flow's first)")
@click.option("--url", default=None, help="a running server to call (default: start one in-process)")
@click.option("--token", envvar="TWILIO_AUTH_TOKEN", default=None, help="auth token of the server at --url")
@click.option("--from", "from_number", default=None,
              help="caller's number (default: a random one, so calls do not count as repeat callers)")
@click.option("--agent", type=click.Choice(["answer", "busy", "no-answer"]), default="answer", show_default=True,
              help="what the human line does when the call is handed off")
@click.option("--server-redis", is_flag=True,
              help="without --url: use the configured Redis (REDIS_URL or IVR_DATA_DIR's) instead of a throw-away "
                   "one; the call then shows on that server's dashboard and figures")
@click.option("--why", is_flag=True, help="after each caller turn, the bot's reason: the intent, its score and "
              "the words, rule or keyword behind it, as the call page shows it")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def simulate(press, say, audio, barge_in, lang, url, token, from_number, agent, server_redis, why, as_json):
    """Place a call exactly as Twilio would and print the conversation.

    Without --url: served in-process on a throw-away Redis, so production's figures are untouched."""
    inputs = click.get_current_context().meta["ivr_inputs"]
    from_number = from_number or "+1555" + f"{secrets.randbelow(10**7):07d}"
    if url:
        if not token:
            raise click.UsageError("--url needs the server's auth token (--token or TWILIO_AUTH_TOKEN)")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            _fail(f"--url {url!r} is not an http(s) address", "e.g. --url http://127.0.0.1:5000 (the server's "
                  "PUBLIC_URL, as `ivr serve` prints it)")
        report = _call_server(url, token, inputs, lang, from_number, agent, barge_in)
    else:
        report = _simulate_in_process(inputs, lang, from_number, agent, barge_in, server_redis)
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False))
        return
    for turn in report["turns"]:
        if turn["caller"]:
            heard = f"   (heard: {turn['heard']})" if turn["heard"] not in (None, turn["caller"]) else ""
            click.echo(f"caller: {turn['caller']}{heard}")
            if why and turn.get("why"):
                click.echo(f"why:    {turn['why']}")
        if turn["bot"]:
            click.echo(f"bot:    {turn['bot']}")
    if report.get("agent_refused"):
        from ..simulate.call import AGENT_NUMBER
        click.echo(f"the agent line turned the simulated agent away ({report['agent_heard']}): nobody took the "
                   f"call; to let it in, register its number: ivr agents add sim {AGENT_NUMBER}")
    elif report.get("agent_heard"):
        click.echo(f"agent heard before the bridge: {report['agent_heard']}")
    wait = f" wait={report['wait_seconds']}s" if report.get("wait_seconds") is not None else ""
    click.echo(f"-- outcome={report['outcome']} queue={report['queue']} transfers={report['transfers']}{wait}"
               f" intents={report['intents']}")


def _fail(message, hint):
    refuse(f"ivr simulate: {message}\n  hint: {hint}")


def _call_server(url, token, inputs, lang, from_number, agent, barge_in):
    """One call to the server at `url`; what stops it is one line and a hint (exit 2)."""
    from ..simulate.call import CallSimulator, SimulationError
    from ..simulate.twilio_client import TwilioClient

    try:
        return CallSimulator(TwilioClient(url, token), from_number=from_number, agent=agent,
                             stream_options={"barge_in_after": barge_in}).run(inputs, lang)
    except SimulationError as exc:
        if exc.status == 403:
            _fail(f"{url} refused the request's signature (403)",
                  "--token must be that server's TWILIO_AUTH_TOKEN and --url its PUBLIC_URL (signatures cover both)")
        if exc.status == 404:
            _fail(f"{url} has no such page (404)", "--url is the server's base address, without /voice")
        _fail(" ".join(str(exc).split()), "the server's log says why")
    except urllib.error.URLError as exc:
        _fail(f"cannot reach {url}: {exc.reason}", "is `ivr serve` running there? check the host, the port and "
              "any proxy in between")
    except (TimeoutError, ConnectionError) as exc:
        _fail(f"no answer from {url}: {exc or type(exc).__name__}", "is `ivr serve` running there and reachable?")
    except (ET.ParseError, ValueError) as exc:
        _fail(f"{url} did not answer with TwiML ({exc})", "is it an ivr server? --url is its base address")


def _own_redis():
    """(Redis URL, its folder) of an embedded Redis for this simulation only."""
    import tempfile

    from ..redis_conn import start_embedded

    folder = tempfile.mkdtemp(prefix="ivr-simulate-")
    return start_embedded(folder), folder


def _simulate_in_process(inputs, lang, from_number, agent, barge_in=None, server_redis=False):
    logging.basicConfig(level="WARNING")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    if server_redis:
        from .common import hotline_config
        hotline_config()        # the server's Redis: refused where there is no hotline, named where there is
        return _run_in_process(inputs, lang, from_number, agent, barge_in, {})
    import shutil

    from ..redis_conn import stop_embedded

    url, folder = _own_redis()
    try:
        # A simulated call is not a caller: nothing of it is recorded, whatever IVR_RECORD_CALLS says.
        return _run_in_process(inputs, lang, from_number, agent, barge_in,
                               {"redis_url": url, "redis_sentinels": (), "record_calls": False})
    finally:
        stop_embedded(folder)
        shutil.rmtree(folder, ignore_errors=True)


def _run_in_process(inputs, lang, from_number, agent, barge_in, overrides):
    from ..server import LoopbackServer, free_port
    from ..simulate.call import AGENT_NUMBER, CallSimulator
    from ..simulate.twilio_client import TwilioClient

    port = free_port()
    cfg = Config.from_env(port=port, public_url=f"http://127.0.0.1:{port}", **overrides)
    app = build_app(cfg)
    agents = app.extensions["ivr"].agents
    # The simulated agent dials the agent line from AGENT_NUMBER: admitted for this run only.
    added = agents.by_number(AGENT_NUMBER) is None
    if added:
        agents.add("simulator", AGENT_NUMBER, replace=True)
    try:
        with LoopbackServer(app, port=port) as server:
            client = TwilioClient(server.url, cfg.twilio_auth_token)
            return CallSimulator(client, from_number=from_number, agent=agent,
                                 stream_options={"barge_in_after": barge_in}).run(inputs, lang)
    finally:
        if added:
            agents.remove("simulator")
