"""Voicemail an operator can play: left through the real webhooks, fetched from a local stand-in for
Twilio's media URLs (credentials checked, 404 while processing), stored 0600 under the data folder,
transcribed by the real Korean model, served to logged-in operators only, handled like a call back."""
import io
import os
import stat
import subprocess
import time
import wave

import pytest

from ivr import keys
from ivr.voicemail import audio_path
from tests.support.dashboard import add_operator, csrf_from, login
from tests.support.hotline import caller, enqueued, leave_voicemail, said
from tests.support.twilio_api import ACCOUNT_SID, Bystander, TwilioStandIn

TOKEN = "test-token-" + "x" * 20


def tone_wav(seconds=1.5) -> bytes:
    """A recording as Twilio serves it: 8 kHz mono 16-bit PCM WAV (a tone: no words in it)."""
    import math
    frames = b""
    for i in range(int(8000 * seconds)):
        v = int(8000 * math.sin(2 * math.pi * 440 * i / 8000))
        frames += v.to_bytes(2, "little", signed=True)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(frames)
    return buf.getvalue()


@pytest.fixture
def media():
    with TwilioStandIn(TOKEN) as srv:
        yield srv


@pytest.fixture
def hotline(serve, media):
    def start(**overrides):
        return serve(**dict(dict(twilio_account_sid=ACCOUNT_SID, twilio_api_url=media.url, callback_after=60),
                            **overrides))
    return start


def worker(client):
    w = client.app.extensions["ivr"].transcriber
    w.retry_wait = 0.1
    return w


def operator(client, redis):
    add_operator(redis)
    web = client.app.test_client()
    login(web)
    return web


def test_voicemail_is_fetched_stored_and_played_to_operators_only(hotline, media, redis):
    client = hotline()
    data_dir = client.app.extensions["ivr"].config.data_dir
    call = caller(1, "+14155550101")
    audio = tone_wav()
    url = media.add_recording(audio)
    bye = leave_voicemail(client, call, enqueued(client, call, "0"), url)
    assert "Goodbye" in said(bye)
    assert worker(client).wait(20)
    sid = call["CallSid"]

    path = audio_path(data_dir, sid)
    assert path.read_bytes() == audio
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [r["path"] for r in media.requests] == [url[len(media.url):] + ".wav"] * 2    # 404 first, then the file
    assert all(r["auth"] in media.accepted for r in media.requests)
    rec = redis.hgetall(keys.call(sid))
    assert rec["voicemail_state"] == "new" and rec["voicemail_stored_at"] and "voicemail_text" not in rec

    anonymous = client.app.test_client()
    assert anonymous.get(f"/dashboard/calls/{sid}/voicemail.wav").status_code == 401
    web = operator(client, redis)
    [row] = web.get("/dashboard/api/live").get_json()["voicemails"]
    assert row["sid"] == sid and row["number"] == "+14155550101" and row["stored"] is True
    resp = web.get(f"/dashboard/calls/{sid}/voicemail.wav")
    assert resp.status_code == 200 and resp.mimetype == "audio/wav" and resp.data == audio
    assert resp.headers["Cache-Control"].startswith("no-store")
    part = web.get(f"/dashboard/calls/{sid}/voicemail.wav", headers={"Range": "bytes=0-43"})
    assert part.status_code == 206 and len(part.data) == 44                 # the player can seek
    page = web.get(f"/dashboard/calls/{sid}").get_data(as_text=True)
    assert f'src="/dashboard/calls/{sid}/voicemail.wav"' in page and "tel:+14155550101" in page

    token = csrf_from(page)
    web.post(f"/dashboard/calls/{sid}/voicemail/handled", data={"csrf_token": token})
    assert web.get("/dashboard/api/live").get_json()["voicemails"] == []
    page = web.get(f"/dashboard/calls/{sid}").get_data(as_text=True)
    assert "alice: marked the voicemail handled" in page and "tel:" not in page
    assert redis.zscore(keys.VOICEMAILS, sid) is None


def test_a_voicemail_url_on_another_host_is_refused(hotline, media, redis):
    client = hotline()
    call = caller(2)
    genuine = media.add_recording(tone_wav(), processing=False)
    with Bystander() as elsewhere:
        leave_voicemail(client, call, enqueued(client, call, "0"), elsewhere.url + genuine[len(media.url):])
        assert worker(client).wait(20)
        assert elsewhere.requests == []                  # no request, so no credentials either
    assert media.requests == [] and worker(client).refused == 1
    data_dir = client.app.extensions["ivr"].config.data_dir
    assert not audio_path(data_dir, call["CallSid"]).exists()
    assert redis.hget(keys.call(call["CallSid"]), "voicemail_state") == "new"   # still listed, to ring back


def test_deleted_at_twilio_once_stored_when_configured(hotline, media, redis):
    client = hotline(voicemail_delete_remote=True)
    call = caller(3)
    url = media.add_recording(tone_wav(), processing=False)
    leave_voicemail(client, call, enqueued(client, call, "0"), url)
    assert worker(client).wait(20)
    assert media.deleted == [url.rsplit("/", 1)[1]]
    assert media.requests[-1]["method"] == "DELETE" and media.requests[-1]["auth"] in media.accepted
    assert redis.hget(keys.call(call["CallSid"]), "voicemail_deleted_remote") == "1"


def test_stored_voicemails_go_with_the_recording_retention(hotline, media, redis):
    client = hotline(recording_retention_seconds=3600)
    data_dir = client.app.extensions["ivr"].config.data_dir
    old = audio_path(data_dir, "CA" + "0" * 32)
    old.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    old.write_bytes(b"RIFF")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    call = caller(4)
    leave_voicemail(client, call, enqueued(client, call, "0"), media.add_recording(tone_wav(), processing=False))
    assert worker(client).wait(20)
    assert not old.exists() and audio_path(data_dir, call["CallSid"]).exists()


@pytest.fixture(scope="module")
def spoken_wav(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("voicemail")
    raw, out = tmp / "raw.wav", tmp / "vm.wav"
    subprocess.run(["espeak-ng", "-v", "ko", "-w", str(raw), "네"], check=True, capture_output=True)
    subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", str(out)],
                   check=True, capture_output=True)
    return out.read_bytes()


@pytest.mark.speech
def test_a_korean_voicemail_is_transcribed(hotline, media, redis, ko_model, spoken_wav):
    client = hotline(speech=False)      # a keypad call in Korean: the transcript still uses the model
    call = caller(5)
    client.post("/voice?lang=ko", call)
    enqueue = enqueued(client, call, "0")
    leave_voicemail(client, call, enqueue, media.add_recording(spoken_wav))
    assert worker(client).wait(60)
    rec = redis.hgetall(keys.call(call["CallSid"]))
    assert rec["voicemail_asr"] == "vosk" and "네" in rec["voicemail_text"].split(), rec.get("voicemail_text")
    web = operator(client, redis)
    assert "네" in web.get(f"/dashboard/calls/{call['CallSid']}").get_data(as_text=True)
