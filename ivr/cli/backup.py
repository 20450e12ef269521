"""`ivr backup FILE` and `ivr restore FILE`: what cannot be rebuilt, out of Redis and back (ivr/backup.py).

Both talk to the Redis the configuration names (the embedded one under IVR_DATA_DIR, REDIS_URL, or
the sentinels' master), so the same two commands serve every deployment. A backup can be taken
while the server runs; a restore goes into an empty Redis, before the server starts on it.
"""
from __future__ import annotations

from pathlib import Path

import click

from .common import hotline_config, hotline_redis


@click.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def backup_cmd(file):
    """Write operator accounts, the server secret, agents, callbacks, ratings, the unanswered log and
    call history to FILE (JSON lines, readable by this user only)."""
    from ..backup import backup
    from ..redis_conn import describe_where

    cfg = hotline_config()
    count = backup(hotline_redis(cfg), file)
    click.echo(f"{count} key(s) from {describe_where(cfg)} written to {file} (mode 0600)")


@click.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="restore into a Redis that already holds ivr keys, replacing "
                                            "the ones the backup has")
def restore_cmd(file, force):
    """Put a backup back into the configured Redis (empty, unless --force)."""
    from ..backup import BackupError, restore
    from ..redis_conn import describe_where

    cfg = hotline_config()
    try:
        restored, skipped = restore(hotline_redis(cfg), file, force=force)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{restored} key(s) restored into {describe_where(cfg)}"
               + (f"; {skipped} had expired since the backup" if skipped else ""))
