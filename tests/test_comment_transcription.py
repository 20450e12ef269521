"""Spoken comments after a rating: downloaded like Twilio serves them, transcribed by the real Korean model.

The recording is real espeak-ng speech, served as an 8 kHz 16-bit WAV (Twilio's format) by a local
stand-in for Twilio's media URLs (tests/support/twilio_api.py) that checks the basic-auth credentials
and answers 404 first, as Twilio does while a recording is still being processed. A recording URL on
any other host is refused before anything is sent there.
"""
import logging
import subprocess

import pytest

from ivr import keys
from tests.support.twilio_api import ACCOUNT_SID, Bystander, TwilioStandIn

# speech: the tests on the `config` below, with the Korean model loaded (ko_model), where a comment is
# decoded or would be. The refusals of a RecordingUrl elsewhere decode nothing (slow: a server each),
# and the check of Twilio's hosts is a plain function.


@pytest.fixture(scope="module")
def comment_wav(tmp_path_factory):
    """A caller saying '네' as a Twilio recording: 8 kHz mono 16-bit PCM WAV.

    Free-form recognition of synthetic speech in open sentences is poor and not repeatable word for
    word; a short word is what the small Korean model gets right every time.
    """
    tmp = tmp_path_factory.mktemp("comment")
    raw, out = tmp / "raw.wav", tmp / "comment.wav"
    subprocess.run(["espeak-ng", "-v", "ko", "-w", str(raw), "네"], check=True, capture_output=True)
    subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", str(out)],
                   check=True, capture_output=True)
    return out.read_bytes()


TOKEN = "test-token-" + "x" * 20     # conftest's make_config


@pytest.fixture
def config(make_config, ko_model, recordings):
    return make_config(twilio_account_sid=ACCOUNT_SID, twilio_api_url=recordings.url)


@pytest.fixture
def recordings():
    """Twilio's recording media, served locally as Twilio serves it (basic auth, 404 while processing)."""
    with TwilioStandIn(TOKEN) as srv:
        yield srv


def _transcriber(app):
    t = app.extensions["ivr"].transcriber
    t.retry_wait = 0.1
    return t


@pytest.mark.speech
def test_spoken_comment_is_downloaded_transcribed_and_stored(twilio, app, redis, recordings, comment_wav):
    sid = "CA" + "c0" * 16
    call = {"CallSid": sid, "From": "+15005550177"}
    twilio.post("/voice?lang=ko", call)
    transcriber = _transcriber(app)
    recording_url = recordings.add_recording(comment_wav)
    status, body = twilio.post("/voice/comment", dict(call, RecordingUrl=recording_url, RecordingDuration="4"))
    assert status == 200 and "<Hangup" in body           # the caller is not kept waiting for the decoder
    assert transcriber.wait(60), "comment still queued after 60 s"
    rec = redis.hgetall(keys.call(sid))
    assert rec["comment_url"] == recording_url
    assert rec["comment_asr"] == "vosk" and rec["comment_lang"] == "ko"
    words = rec["comment"].split()
    assert words and "네" in words, rec["comment"]       # the short directed word is recognized reliably
    # Credentials went with the request, .wav was asked for, and a 404 (still processing) was retried.
    assert [r["path"] for r in recordings.requests] == [recording_url[len(recordings.url):] + ".wav"] * 2
    assert all(r["auth"] == next(iter(recordings.accepted)) for r in recordings.requests)
    events = [e for _, e in redis.xrange(keys.EVENTS) if e.get("sid") == sid]
    assert "comment_transcribed" in [e["type"] for e in events]
    assert transcriber.done >= 1 and transcriber.failed == 0


@pytest.mark.speech
def test_a_recording_url_on_another_host_is_refused_and_nothing_is_sent_there(twilio, app, redis, recordings,
                                                                           comment_wav):
    sid = "CA" + "c2" * 16
    call = {"CallSid": sid, "From": "+15005550179"}
    twilio.post("/voice?lang=ko", call)
    transcriber = _transcriber(app)
    genuine = recordings.add_recording(comment_wav, processing=False)
    with Bystander() as elsewhere:
        # Same path, another host: the credentials must never leave for it.
        twilio.post("/voice/comment", dict(call, RecordingUrl=elsewhere.url + genuine[len(recordings.url):]))
        assert transcriber.wait(30)
        assert elsewhere.requests == []
    assert transcriber.refused == 1 and recordings.requests == []
    assert "comment" not in redis.hgetall(keys.call(sid))


@pytest.mark.speech
def test_retried_comment_webhook_transcribes_once(twilio, app, redis, recordings, comment_wav):
    sid = "CA" + "c1" * 16
    call = {"CallSid": sid, "From": "+15005550178"}
    twilio.post("/voice?lang=ko", call)
    transcriber = _transcriber(app)
    url = recordings.add_recording(comment_wav)
    for _ in range(2):
        twilio.post("/voice/comment", dict(call, RecordingUrl=url, RecordingDuration="4"))
    assert transcriber.wait(60)
    events = [e["type"] for _, e in redis.xrange(keys.EVENTS) if e.get("sid") == sid]
    assert events.count("comment_transcribed") == 1
    assert redis.hget(keys.call(sid), "comment")


@pytest.mark.speech
def test_language_without_model_stores_no_text_and_logs_once(twilio, app, redis, recordings, caplog):
    transcriber = _transcriber(app)
    caplog.set_level(logging.WARNING, logger="ivr.comments")
    sids = []
    for i in range(2):
        sid = f"CA{i:02d}" + "e" * 30
        call = {"CallSid": sid, "From": f"+1500555019{i}"}
        twilio.post("/voice", call)                            # English: no model here
        status, _ = twilio.post("/voice/comment", dict(call, RecordingUrl=recordings.add_recording(b"RIFF")))
        assert status == 200
        sids.append(sid)
    assert transcriber.wait(5)
    for sid in sids:
        rec = redis.hgetall(keys.call(sid))
        assert rec["comment_url"] and "comment" not in rec and "comment_asr" not in rec
    assert recordings.requests == []                           # nothing was downloaded
    warnings = [r for r in caplog.records if "no Vosk model for lang=en" in r.getMessage() and r.name == "ivr.comments"]
    assert len(warnings) == 1


@pytest.mark.slow                   # an app and a server each, about a second; nothing decoded
@pytest.mark.parametrize("where", ["other_host", "http_twilio", "lookalike"])
def test_recording_url_elsewhere_is_refused_and_nothing_is_sent(make_config, redis, recordings, where, caplog):
    """Production configuration (Twilio's HTTPS hosts only): a RecordingUrl naming any other host,
    here a local server standing in for an attacker's, is refused; not one request reaches it."""
    import redis as redis_lib

    from ivr import create_app
    from ivr.server import LoopbackServer
    from ivr.simulate.twilio_client import TwilioClient
    from tests.support import port_of

    cfg = make_config(twilio_account_sid=ACCOUNT_SID, twilio_auth_token=TOKEN)        # no origins: Twilio only
    app = create_app(cfg, redis=redis_lib.Redis.from_url(cfg.redis_url, decode_responses=True))
    url = {"other_host": f"{recordings.url}/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/RE{'1' * 32}",
           "http_twilio": f"http://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/RE1",
           "lookalike": f"https://api.twilio.com.{recordings.url[7:]}/Recordings/RE1"}[where]
    sid = "CA" + "c2" * 16
    call = {"CallSid": sid, "From": "+15005550179"}
    with LoopbackServer(app, port=port_of(cfg)) as srv:
        twilio = TwilioClient(srv.url, TOKEN)
        twilio.post("/voice?lang=ko", call)
        status, body = twilio.post("/voice/comment", dict(call, RecordingUrl=url, RecordingDuration="4"))
        transcriber = app.extensions["ivr"].transcriber
        assert status == 200 and "<Hangup" in body            # the caller still hears the goodbye
        assert transcriber.wait(10)
    assert recordings.requests == []                            # no request, so no credentials, went there
    assert transcriber.refused == 1 and transcriber.done == 0
    assert "comment_asr" not in redis.hgetall(keys.call(sid))
    assert any("not on Twilio's HTTPS hosts" in r.getMessage() for r in caplog.records)


def test_twilio_recording_hosts():
    from ivr.recordings import trusted_recording_url as ok

    assert ok("https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1")
    assert ok("https://api.dublin.ie1.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1")
    for bad in ("http://api.twilio.com/x", "https://api.twilio.com.evil.example/x", "https://evil.example/x",
                "https://user:pw@api.twilio.com/x", "https://api.twilio.com:8443/x", "ftp://api.twilio.com/x",
                "https://apiXtwilio.com/x", "https://twilio.com.evil/x"):
        assert not ok(bad), bad
