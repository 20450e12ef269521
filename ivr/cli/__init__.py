"""The `ivr` command line: one module per area, each registered here."""
from __future__ import annotations

import click

from . import accounts, backup, init, models, quality, reload, serve, simulate


@click.group()
@click.version_option(package_name="ivr-hotline")
def main():
    """ivr: a self-hosted voice bot for telephone hotlines."""


for command in (serve.check_flows, serve.serve, simulate.simulate, accounts.operators, accounts.agents,
                quality.unanswered, quality.eval_cmd, models.models, models.render_audio, init.init,
                reload.reload_cmd, backup.backup_cmd, backup.restore_cmd):
    main.add_command(command)


if __name__ == "__main__":
    main()
