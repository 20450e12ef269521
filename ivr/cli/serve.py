"""`ivr serve` and `ivr check-flows`: the server and the check of what it will serve."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from ..config import Config
from .common import build_app, setup_logging


@click.command("check-flows")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
def check_flows(paths):
    """Validate flow files (default: the configured flows folder, and that IVR_DEFAULT_FLOW is one of
    them); exit 1 on any problem."""
    from ..config import default_flow_problem
    from ..flows.loader import FlowError, Problem, load_flow, load_flows

    cfg = Config.from_env()
    problems, count = [], 0
    targets = list(paths) or [cfg.flows_dir]
    for target in targets:
        try:
            if target.is_dir():
                flows = load_flows(target)
                count += len(flows)
                problem = None if paths else default_flow_problem(cfg.default_flow, flows, target)
                if problem:
                    problems.append(Problem(str(target), 1, problem))
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



@click.command()
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

    from .. import preflight
    from ..config import metrics_dir, use_metrics_dir
    from ..redis_conn import describe_where
    from ..server import run_gunicorn

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
    setup_logging(cfg)
    if cfg.worker_connections < 3 * threads:
        # Twice the threads stay free of waiting clients (ivr/worker.py: waiting_cap); some must be left for them.
        raise click.UsageError(f"IVR_WORKER_CONNECTIONS={cfg.worker_connections} is too few for --threads "
                               f"{threads}: at least 3 x the threads ({3 * threads})")
    app = build_app(cfg)
    click.echo(f"ivr serving on http://{host}:{port}  (Redis: {describe_where(cfg)})")
    click.echo("URLs for the Twilio console and the operators:")
    urls = preflight.urls(cfg, app.extensions["ivr"].flows)
    width = max(len(what) for what, _, _ in urls)
    for what, method, url in urls:
        click.echo(f"  {what:<{width}}  {method:<4} {url}")
    warn = logging.getLogger("ivr.preflight").warning
    for problem in preflight.problems(cfg, app.extensions["ivr"].flows):
        # One log line each (stderr, in IVR_LOG_FORMAT); /healthz reports the same as "degraded".
        warn("%s", problem)
    if not cfg.metrics_token and host not in ("127.0.0.1", "localhost", "::1"):
        # Counts only (no personal data, no secret), but call volumes are the business's own figures.
        warn("/metrics is open to anyone who reaches this address; set IVR_METRICS_TOKEN or firewall it "
             "(docs/security.md)")
    if cfg.token_generated:
        # Printed (not logged) so the demo and the simulator can sign requests.
        click.echo(f"TWILIO_AUTH_TOKEN was not set; this run uses the generated token {cfg.twilio_auth_token}")
    svc = app.extensions["ivr"]
    svc.speech.warm_up(svc.flows.values(), log_to=logging.getLogger("ivr"))  # models and prompts before calls
    run_gunicorn(app, host, port, workers=workers, threads=threads)
