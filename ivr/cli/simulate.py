"""`ivr simulate`: place a call exactly as Twilio would and print the conversation."""
from __future__ import annotations

import json
import logging
import secrets

import click

from ..config import Config
from .common import build_app


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
@click.option("--press", multiple=True, help="keys the caller presses at the next prompt (repeatable)")
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
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def simulate(press, say, audio, barge_in, lang, url, token, from_number, agent, as_json):
    """Place a call exactly as Twilio would and print the conversation."""
    from ..simulate.call import CallSimulator
    from ..simulate.twilio_client import TwilioClient

    inputs = click.get_current_context().meta["ivr_inputs"]
    from_number = from_number or "+1555" + f"{secrets.randbelow(10**7):07d}"
    if url:
        if not token:
            raise click.UsageError("--url needs the server's auth token (--token or TWILIO_AUTH_TOKEN)")
        report = CallSimulator(TwilioClient(url, token), from_number=from_number, agent=agent,
                               stream_options={"barge_in_after": barge_in}).run(inputs, lang)
    else:
        report = _simulate_in_process(inputs, lang, from_number, agent, barge_in)
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False))
        return
    for turn in report["turns"]:
        if turn["caller"]:
            heard = f"   (heard: {turn['heard']})" if turn["heard"] not in (None, turn["caller"]) else ""
            click.echo(f"caller: {turn['caller']}{heard}")
        if turn["bot"]:
            click.echo(f"bot:    {turn['bot']}")
    if report.get("agent_heard"):
        click.echo(f"agent heard before the bridge: {report['agent_heard']}")
    wait = f" wait={report['wait_seconds']}s" if report.get("wait_seconds") is not None else ""
    click.echo(f"-- outcome={report['outcome']} queue={report['queue']} transfers={report['transfers']}{wait}"
               f" intents={report['intents']}")


def _simulate_in_process(inputs, lang, from_number, agent, barge_in=None):
    from ..server import LoopbackServer, free_port
    from ..simulate.call import AGENT_NUMBER, CallSimulator
    from ..simulate.twilio_client import TwilioClient

    logging.basicConfig(level="WARNING")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    cfg = Config.from_env(port=port, public_url=f"http://127.0.0.1:{port}")
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
