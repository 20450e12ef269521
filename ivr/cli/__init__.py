"""The `ivr` command line: one module per area, each registered here."""
from __future__ import annotations

import click

from ..config import ConfigError
from . import accounts, backup, init, models, quality, reload, serve, simulate


class _Commands(click.Group):
    """Every command reads the environment through Config.from_env; a setting it cannot use stops
    the command here, whichever it is, with one line naming the variable (exit 2), not a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            click.echo(f"ivr {ctx.invoked_subcommand}: {exc}", err=True)
            ctx.exit(2)


@click.group(cls=_Commands)
@click.version_option(package_name="ivr-hotline")
def main():
    """ivr: a self-hosted voice bot for telephone hotlines."""


for command in (serve.check_flows, serve.serve, simulate.simulate, accounts.operators, accounts.agents,
                quality.unanswered, quality.eval_cmd, models.models, models.render_audio, init.init,
                reload.reload_cmd, backup.backup_cmd, backup.restore_cmd):
    main.add_command(command)


if __name__ == "__main__":
    main()
