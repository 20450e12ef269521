"""`ivr models` and `ivr render-audio`: speech models and prompt audio."""
from __future__ import annotations

import click

from ..config import Config


@click.group()
def models():
    """Offline speech models (Vosk): which languages can be spoken to the bot."""


@models.command("list")
def models_list():
    """Known languages, whether their model is installed, and how to get it."""
    from ..speech.models import describe

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
    from ..speech.models import ModelError, download

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
    from ..speech.models import model_path

    path = model_path(lang, Config.from_env().models_dir)
    if path is None:
        raise click.ClickException(f"no model for {lang!r}; see `ivr models list`")
    click.echo(str(path))


@click.command("render-audio")
def render_audio():
    """Render every static prompt of every flow to audio/ (the server also does this at start-up)."""
    from ..flows.loader import FlowError, load_flows
    from ..speech.tts import PromptAudio

    cfg = Config.from_env()
    try:
        flows = load_flows(cfg.flows_dir)
    except FlowError as exc:
        raise click.ClickException(f"invalid flow\n{exc}") from None
    new, old = PromptAudio(cfg.audio_dir).prerender(flows.values())
    click.echo(f"{new} prompt(s) rendered, {old} already cached in {cfg.audio_dir}")
