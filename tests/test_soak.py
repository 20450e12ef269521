"""The short soak: half a minute of concurrent calls against `ivr serve` and a real Redis.
The long one is `.venv/bin/python -m bench.soak --minutes 10`."""

import pytest
import redis as redis_lib

from bench.soak import run
from ivr.simulate.twilio_client import TwilioClient
from tests.support.procs import ServeProcess

pytestmark = [pytest.mark.slow, pytest.mark.load]   # `ivr serve` in a process, half a minute of calls


def test_soak_memory_flat_no_leaks_records_complete(redis_url, redis, tmp_path):
    token = "k" * 32
    srv = ServeProcess({"TWILIO_AUTH_TOKEN": token, "REDIS_URL": redis_url, "PUBLIC_URL": "https://soak.example",
                        "IVR_DATA_DIR": str(tmp_path)}).start()
    try:
        client = TwilioClient(srv.url, token, public_url="https://soak.example")
        result = run(client, redis_lib.Redis.from_url(redis_url, decode_responses=True), srv.proc.pid,
                     seconds=25, concurrency=6)
    finally:
        srv.terminate()
    assert result["calls"] >= 100, result["calls"]
    assert result["error_count"] == 0, result["errors"]
    assert result["incomplete"] == [] and result["wrong_outcome"] == []
    warm, end = result["warm"], result["end"]
    assert end["rss_mib"] - warm["rss_mib"] < 20, (warm, end)     # memory stays flat
    assert end["fds"] - warm["fds"] <= 8, (warm, end)              # no socket leak
    assert end["threads"] - warm["threads"] <= 8, (warm, end)      # no thread leak
