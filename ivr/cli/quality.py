"""`ivr unanswered` and `ivr eval`: what the bot misses, and how well it understands a labelled set."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from ..config import Config
from .common import hotline_config, hotline_redis, refuse


@click.command()
@click.option("--top", default=20, show_default=True, type=int)
@click.option("--flow", "flow_id", default=None, help="flow id (default: IVR_DEFAULT_FLOW)")
@click.option("--lang", default=None, help="language (default: the flow's first)")
def unanswered(top, flow_id, lang):
    """The questions the bot did not understand most often: candidates for new intents or examples."""
    from ..config import ConfigError, default_flow_problem
    from ..flows.loader import FlowError, load_flows
    from ..quality import top_unanswered

    cfg = hotline_config()
    try:
        flows = load_flows(cfg.flows_dir)
    except FlowError as exc:
        refuse(f"ivr unanswered: invalid flow\n{exc}")
    if flow_id:
        if flow_id not in flows:
            refuse(f"ivr unanswered: --flow must be the id of a flow in {cfg.flows_dir}: one of "
                   f"{', '.join(sorted(flows))}; got {flow_id!r}")
    elif problem := default_flow_problem(cfg.default_flow, flows, cfg.flows_dir):
        raise ConfigError(problem)
    flow = flows[flow_id or cfg.default_flow]
    lang = lang or flow.languages[0]
    if lang not in flow.languages:
        # A typo would report "nothing logged", which reads as a bot that understands everyone.
        refuse(f"ivr unanswered: --lang must be a language of flow {flow.id}: one of "
               f"{', '.join(flow.languages)}; got {lang!r}")
    rows = top_unanswered(hotline_redis(cfg), flow.id, lang, top)
    if not rows:
        click.echo(f"no unanswered questions logged for {flow.id} ({lang})")
        return
    click.echo(f"count  question   ({flow.id}, {lang})")
    for row in rows:
        click.echo(f"{row['count']:5d}  {row['text']}")


@click.command("eval")
@click.option("--set", "set_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="labelled set, YAML or CSV (default: the Korean set shipped with ivr, eval/hotline_ko.yaml in a "
                   "checkout); format in docs/quality.md")
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
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="items decoded at once (default: up to 4, one per core); 1 makes a run repeatable: Kaldi's "
                   "dither draws from one process-wide random sequence, in the items' order (docs/quality.md)")
@click.option("--json", "as_json", is_flag=True, help="print the figures as one JSON object")
def eval_cmd(set_path, flow_ref, lang, out_dir, min_accuracy, asr, limit, cache_dir, generate, workers, as_json):
    """Run a labelled set through the recognizer and the flow; write report.md + chart.png; exit 1 below threshold."""
    from ..defaults import EVAL
    from ..eval import evaluate, load_set
    from ..eval.dataset import AudioSource
    from ..eval.report import write
    from ..flows.loader import FlowError, load_flow, load_flows
    from ..speech import models as speech_models

    def fail(message):
        refuse(f"ivr eval: {message}")

    logging.basicConfig(level="WARNING")
    cfg = Config.from_env()
    set_path = set_path or EVAL / "hotline_ko.yaml"     # shipped in the package: the checkout's eval/
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
        result = evaluate(eval_set, flow, lang=lang, model=model, cache_dir=cache_dir, min_accuracy=min_accuracy,
                          workers=workers)
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
