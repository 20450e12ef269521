"""Each webhook costs at most two Redis round trips: one pipelined read, one script."""
import pytest

from ivr.server import LoopbackServer
from ivr.simulate.twilio_client import TwilioClient, parse_twiml
from tests.support import port_of
from tests.support.redis_count import CountingRedis

CALL = {"CallSid": "CA" + "3" * 32, "From": "+15005550133", "To": "+15005550100"}


@pytest.fixture
def counted(config, redis, build_app):
    conn = CountingRedis.from_url(config.redis_url, decode_responses=True)
    app = build_app(config, redis=conn)
    with LoopbackServer(app, port=port_of(config)) as srv:
        conn.round_trips.take()
        yield TwilioClient(srv.url, config.twilio_auth_token), conn.round_trips


def test_webhooks_cost_at_most_two_round_trips(counted):
    client, trips = counted
    # Scripts are loaded on first use (EVALSHA falls back to SCRIPT LOAD): warm them up on another call.
    warm = dict(CALL, CallSid="CA" + "2" * 32)
    client.post("/voice", warm)
    _, body = client.post("/voice/gather?turn=1", dict(warm, Digits="0"))
    client.post(parse_twiml(body).find("Enqueue").get("waitUrl"), dict(warm, QueuePosition="1", QueueTime="1"))
    client.post("/voice/status", dict(warm, CallStatus="completed"))
    trips.take()
    costs = {}
    client.post("/voice", CALL)
    costs["/voice"] = trips.take()
    client.post("/voice/gather?turn=1", dict(CALL, Digits="3"))
    costs["gather (answer)"] = trips.take()
    _, body = client.post("/voice/gather?turn=2", dict(CALL, Digits="0"))
    costs["gather (handoff)"] = trips.take()
    wait_url = parse_twiml(body).find("Enqueue").get("waitUrl")
    client.post(wait_url, dict(CALL, QueuePosition="1", QueueTime="3"))
    costs["queue waitUrl"] = trips.take()
    client.post("/voice/status", dict(CALL, CallStatus="completed"))
    costs["status"] = trips.take()
    assert all(n <= 2 for n in costs.values()), costs
