"""The `ivr` command line."""
from __future__ import annotations

import json
import logging
import secrets
import sys
from pathlib import Path

import click

from .config import Config


def _setup_logging(level="INFO"):
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@click.group()
@click.version_option(package_name="ivr")
def main():
    """ivr: a self-hosted voice bot for telephone hotlines."""


@main.command("check-flows")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
def check_flows(paths):
    """Validate flow files (default: the configured flows folder); exit 1 on any problem."""
    from .flows.loader import FlowError, load_flow, load_flows

    cfg = Config.from_env()
    problems, count = [], 0
    targets = list(paths) or [cfg.flows_dir]
    for target in targets:
        try:
            if target.is_dir():
                count += len(load_flows(target))
            else:
                load_flow(target)
                count += 1
        except FlowError as exc:
            problems += exc.problems
    for p in problems:
        click.echo(str(p), err=True)
    if problems:
        click.echo(f"{len(problems)} problem(s) found", err=True)
        sys.exit(1)
    click.echo(f"{count} flow(s) OK")


def _build_app(cfg):
    from . import create_app
    from .flows.loader import FlowError
    from .redis_conn import UnsupportedRedis

    try:
        return create_app(cfg)
    except FlowError as exc:
        click.echo(f"refusing to start: invalid flow\n{exc}", err=True)
        sys.exit(2)
    except UnsupportedRedis as exc:
        click.echo(f"refusing to start: {exc}", err=True)
        sys.exit(2)


@main.command()
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--threads", default=64, show_default=True, type=int, help="concurrent requests and calls per worker")
@click.option("--workers", default=1, show_default=True, type=int,
              help="worker processes; all state is in Redis, so any number can share one hotline")
def serve(host, port, threads, workers):
    """Run the hotline server (gunicorn, threaded)."""
    import atexit
    import os
    import shutil
    import tempfile

    from .config import metrics_dir, use_metrics_dir
    from .redis_conn import describe_config
    from .server import run_gunicorn

    _setup_logging()
    # Everything the server writes (the embedded Redis's dump, recordings, metrics files) is this user's only.
    os.umask(0o077)
    if metrics_dir() is not None:
        # The deployer's folder: last run's counts would be added to this run's (prometheus_client's rule).
        os.makedirs(metrics_dir(), mode=0o700, exist_ok=True)
        for stale in Path(metrics_dir()).glob("*.db"):
            stale.unlink()
    else:
        # Each worker counts into files here; a scrape sums them all (ivr/metrics.py). Fresh per run.
        folder, owner = tempfile.mkdtemp(prefix="ivr-metrics-"), os.getpid()
        # Removed when the master exits; forked workers run atexit too, and must leave it alone.
        atexit.register(lambda: os.getpid() == owner and shutil.rmtree(folder, True))
        use_metrics_dir(folder)
    cfg = Config.from_env(port=port)
    app = _build_app(cfg)
    click.echo(f"ivr serving on http://{host}:{port}  (Redis: {describe_config(cfg)})")
    click.echo("Twilio console, phone number > Voice configuration:")
    click.echo(f"  A call comes in   POST {cfg.url('/voice')}")
    click.echo(f"  Primary handler fails  POST {cfg.url('/voice/fallback')}")
    click.echo(f"  Call status changes    POST {cfg.url('/voice/status')}")
    click.echo(f"Health: {cfg.url('/healthz')}")
    if not cfg.metrics_token and host not in ("127.0.0.1", "localhost", "::1"):
        # Counts only (no personal data, no secret), but call volumes are the business's own figures.
        click.echo("warning: /metrics is open to anyone who reaches this address; set IVR_METRICS_TOKEN or "
                   "firewall it (docs/security.md)")
    if cfg.token_generated:
        # Printed (not logged) so the demo and the simulator can sign requests.
        click.echo(f"TWILIO_AUTH_TOKEN was not set; this run uses the generated token {cfg.twilio_auth_token}")
    svc = app.extensions["ivr"]
    svc.speech.warm_up(svc.flows.values(), log_to=logging.getLogger("ivr"))  # models and prompts before calls
    run_gunicorn(app, host, port, workers=workers, threads=threads)


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


@main.command(cls=_OrderedInputs)
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
    from .simulate.call import CallSimulator
    from .simulate.twilio_client import TwilioClient

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
    from .server import LoopbackServer, free_port
    from .simulate.call import AGENT_NUMBER, CallSimulator
    from .simulate.twilio_client import TwilioClient

    logging.basicConfig(level="WARNING")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    cfg = Config.from_env(port=port, public_url=f"http://127.0.0.1:{port}")
    app = _build_app(cfg)
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


@main.group()
def operators():
    """Dashboard operator accounts (stored in Redis, passwords hashed with argon2)."""


def _operators():
    from .dashboard.auth import Operators
    from .redis_conn import for_config

    cfg = Config.from_env()
    return Operators(for_config(cfg))


@operators.command("add")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input (scripts)")
@click.option("--replace", is_flag=True, help="set a new password for an existing operator")
def operators_add(name, password_stdin, replace):
    """Create an operator who can log in at /dashboard (password prompted)."""
    from .dashboard.auth import AuthError

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        name = _operators().add(name, password, replace=replace)
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
    from .dashboard.auth import AuthError

    try:
        removed = _operators().remove(name)
    except AuthError as exc:
        raise click.ClickException(str(exc)) from exc
    if not removed:
        raise click.ClickException(f"no operator named {name}")
    click.echo(f"operator {name} removed")


@main.group()
def agents():
    """Agents who may take callers on the agent line (registered number, optional keypad PIN)."""


def _agents():
    from .agents import Agents
    from .redis_conn import connect

    cfg = Config.from_env()
    return Agents(connect(cfg.redis_url, cfg.data_dir))


@agents.command("add")
@click.argument("name")
@click.argument("number")
@click.option("--pin", "with_pin", is_flag=True, help="ask for a 4-8 digit PIN the agent keys in on the line")
@click.option("--pin-stdin", is_flag=True, help="read the PIN from standard input (scripts)")
@click.option("--replace", is_flag=True, help="change an existing agent's number or PIN")
def agents_add(name, number, with_pin, pin_stdin, replace):
    """Let NAME reach callers on the agent line when calling from NUMBER (E.164, e.g. +15551234567)."""
    from .agents import AgentError

    pin = None
    if pin_stdin:
        pin = sys.stdin.readline().strip()
    elif with_pin:
        pin = click.prompt("PIN", hide_input=True, confirmation_prompt=True)
    try:
        name = _agents().add(name, number, pin=pin, replace=replace)
    except AgentError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"agent {name} {'updated' if replace else 'added'}{' with a PIN' if pin else ''}")


@agents.command("list")
def agents_list():
    """Agents, their (masked) numbers and whether they need a PIN."""
    import datetime as dt

    from .redact import mask_phone

    for name, agent in sorted(_agents().all().items()):
        added = dt.datetime.fromtimestamp(int(agent.get("added_at") or 0)).strftime("%Y-%m-%d %H:%M")
        click.echo(f"{name:<32} {mask_phone(agent.get('number', '')):<16} {'PIN' if agent.get('pin') else 'no PIN':<7}"
                   f" added {added}")


@agents.command("remove")
@click.argument("name")
def agents_remove(name):
    """Stop NAME from reaching callers on the agent line."""
    from .agents import AgentError

    try:
        removed = _agents().remove(name)
    except AgentError as exc:
        raise click.ClickException(str(exc)) from exc
    if not removed:
        raise click.ClickException(f"no agent named {name}")
    click.echo(f"agent {name} removed")


@main.command()
@click.option("--top", default=20, show_default=True, type=int)
@click.option("--flow", "flow_id", default=None, help="flow id (default: the default flow)")
@click.option("--lang", default=None, help="language (default: the flow's first)")
def unanswered(top, flow_id, lang):
    """The questions the bot did not understand most often: candidates for new intents or examples."""
    from .flows.loader import load_flows
    from .quality import top_unanswered
    from .redis_conn import for_config

    cfg = Config.from_env()
    flows = load_flows(cfg.flows_dir)
    flow = flows.get(flow_id or cfg.default_flow) or next(iter(flows.values()))
    lang = lang or flow.languages[0]
    rows = top_unanswered(for_config(cfg), flow.id, lang, top)
    if not rows:
        click.echo(f"no unanswered questions logged for {flow.id} ({lang})")
        return
    click.echo(f"count  question   ({flow.id}, {lang})")
    for row in rows:
        click.echo(f"{row['count']:5d}  {row['text']}")


@main.command("eval")
@click.option("--set", "set_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="labelled set, YAML or CSV (default: eval/hotline_ko.yaml); format in docs/quality.md")
@click.option("--flow", "flow_ref", default=None,
              help="flow id in IVR_FLOWS_DIR, or a flow YAML file (default: the set's `flow`, else the default flow)")
@click.option("--lang", default=None, help="language (default: the set's `lang`, else the flow's first)")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="report folder (default: IVR_DATA_DIR/eval/<flow>)")
@click.option("--min-accuracy", type=click.FloatRange(0, 1), default=None,
              help="exit 1 when intent accuracy is below this (default: the set's `min_accuracy`)")
@click.option("--asr", type=click.Choice(["auto", "vosk", "text"]), default="auto", show_default=True,
              help="vosk: recognize audio (spoken by espeak-ng when an item has none); text: transcripts only; "
                   "auto: vosk when the language has a model")
@click.option("--limit", type=int, default=None, help="only the first N items (a quick check)")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="where synthesized audio is kept (default: IVR_DATA_DIR/eval-cache)")
@click.option("--generate", is_flag=True, help="only synthesize the set's missing audio into the cache")
@click.option("--json", "as_json", is_flag=True, help="print the figures as one JSON object")
def eval_cmd(set_path, flow_ref, lang, out_dir, min_accuracy, asr, limit, cache_dir, generate, as_json):
    """Run a labelled set through the recognizer and the flow; write report.md + chart.png; exit 1 below threshold."""
    from .config import ROOT
    from .eval import evaluate, load_set
    from .eval.dataset import AudioSource
    from .eval.report import write
    from .flows.loader import FlowError, load_flow, load_flows
    from .speech import models as speech_models

    def fail(message):
        click.echo(f"ivr eval: {message}", err=True)
        sys.exit(2)

    logging.basicConfig(level="WARNING")
    cfg = Config.from_env()
    set_path = set_path or ROOT / "eval" / "hotline_ko.yaml"
    try:
        eval_set = load_set(set_path)
    except (ValueError, OSError) as exc:
        fail(f"cannot read {set_path}: {exc}")
    if limit:
        eval_set.items = eval_set.items[:limit]
    try:
        if flow_ref and Path(flow_ref).is_file():
            flow = load_flow(Path(flow_ref))
        else:
            flows = load_flows(cfg.flows_dir)
            wanted = flow_ref or eval_set.flow or cfg.default_flow
            if wanted not in flows:
                fail(f"no flow {wanted!r} in {cfg.flows_dir} (known: {', '.join(sorted(flows))})")
            flow = flows[wanted]
    except FlowError as exc:
        fail(f"invalid flow\n{exc}")
    lang = lang or eval_set.lang or flow.languages[0]
    model_dir = speech_models.model_path(lang, cfg.models_dir)
    if asr == "vosk" and model_dir is None:
        fail(f"no Vosk model for {lang!r} (see `ivr models list`); use --asr text to evaluate transcripts")
    use_model = asr != "text" and model_dir is not None
    if asr == "auto" and not use_model:
        click.echo(f"no speech model for {lang!r}: evaluating transcripts only (asr=text)", err=True)
    cache_dir = cache_dir or cfg.data_dir / "eval-cache"
    if generate:
        new, old = AudioSource(cache_dir, lang, eval_set.voice_speed).generate(
            [i for i in eval_set.items if i.audio is None])
        click.echo(f"{new} item(s) synthesized, {old} already cached in {cache_dir}")
        return
    model = speech_models.load(model_dir) if use_model else None
    try:
        result = evaluate(eval_set, flow, lang=lang, model=model, cache_dir=cache_dir, min_accuracy=min_accuracy)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    paths = write(result, out_dir or cfg.data_dir / "eval" / flow.id)
    m = result.metrics

    def pct(v):
        return "n/a" if v is None else f"{v * 100:.1f}%"

    if as_json:
        click.echo(json.dumps(dict(result.to_dict(), items=None, report={k: str(v) for k, v in paths.items()}),
                              ensure_ascii=False))
    else:
        click.echo(f"{flow.id} ({lang}), {m['items']} items, asr={result.asr}: intent accuracy "
                   f"{pct(m['intent_accuracy'])}, WER {pct(m['wer'])}, CER {pct(m['cer'])}, urgent->person "
                   f"{pct(m['urgent_to_human_rate'])}, clarification {pct(m['clarification_rate'])}, "
                   f"containment {pct(m['containment'])}")
        click.echo(f"  human path {pct(m['human_path_recall'])} ({m['human_path_missed']} of {m['human_items']} "
                   f"urgent/person requests missed), false urgent {pct(m['false_urgent_rate'])}, out of scope "
                   f"handled {pct(m['oos_handled_rate'])} ({m['oos_items']} items)")
        for c in m["confusions"][:5]:
            click.echo(f"  confused: {c['expected']} -> {c['got']} x{c['count']}")
        click.echo(f"report: {paths['markdown']}  chart: {paths['chart']}")
    if not result.passed:
        click.echo(f"FAIL: intent accuracy {pct(m['intent_accuracy'])} is below the threshold "
                   f"{pct(result.min_accuracy)}", err=True)
        sys.exit(1)


@main.group()
def models():
    """Offline speech models (Vosk): which languages can be spoken to the bot."""


@models.command("list")
def models_list():
    """Known languages, whether their model is installed, and how to get it."""
    from .speech.models import describe

    cfg = Config.from_env()
    for lang, name, path, how in describe(cfg.models_dir):
        state = str(path) if path else f"not installed ({how}); callers use the keypad"
        click.echo(f"{lang}  {name:<32} {state}")


@models.command("download")
@click.argument("lang")
@click.option("--optional", is_flag=True,
              help="set-up use: when the model cannot be had (offline), say so in one line and exit 0")
def models_download(lang, optional):
    """Download, verify (SHA-256) and install the model for LANG into IVR_MODELS_DIR."""
    from .speech.models import ModelError, download

    cfg = Config.from_env()
    try:
        path = download(lang, cfg.models_dir, url_base=cfg.model_url_base or None)
    except ModelError as exc:
        if optional:
            click.echo(f"{lang}: no speech model ({str(exc).split('. ')[0]}); {lang} callers use the keypad. "
                       f"Later: ivr models download {lang}")
            return
        raise click.ClickException(str(exc)) from None
    click.echo(f"{lang}: model ready at {path}")


@models.command("path")
@click.argument("lang")
def models_path(lang):
    """Print the model directory for LANG (exit 1 when there is none)."""
    from .speech.models import model_path

    path = model_path(lang, Config.from_env().models_dir)
    if path is None:
        raise click.ClickException(f"no model for {lang!r}; see `ivr models list`")
    click.echo(str(path))


@main.command("render-audio")
def render_audio():
    """Render every static prompt of every flow to audio/ (the server also does this at start-up)."""
    from .flows.loader import FlowError, load_flows
    from .speech.tts import PromptAudio

    cfg = Config.from_env()
    try:
        flows = load_flows(cfg.flows_dir)
    except FlowError as exc:
        raise click.ClickException(f"invalid flow\n{exc}") from None
    new, old = PromptAudio(cfg.audio_dir).prerender(flows.values())
    click.echo(f"{new} prompt(s) rendered, {old} already cached in {cfg.audio_dir}")


if __name__ == "__main__":
    main()
