"""Twilio Media Streams messages and mu-law audio, without a server."""
import base64
import json

import pytest

from ivr.media import protocol
from ivr.media.audio import Reframer, WavRecorder, read_ulaw_wav, write_ulaw_wav

STREAM = protocol.TwilioStream("MZ" + "a" * 32, "CA" + "b" * 32)


def test_parses_every_twilio_event():
    assert isinstance(protocol.parse(STREAM.connected()), protocol.Connected)
    start = protocol.parse(STREAM.start({"flow": "hotline_ko", "lang": "ko"}))
    assert (start.stream_sid, start.call_sid, start.custom["lang"]) == (STREAM.stream_sid, STREAM.call_sid, "ko")
    assert (start.encoding, start.sample_rate, start.channels) == ("audio/x-mulaw", 8000, 1)
    media = protocol.parse(STREAM.media(b"\x01\x02\x03"))
    assert media.payload == b"\x01\x02\x03" and media.chunk == 1 and media.timestamp_ms == 0
    assert protocol.parse(STREAM.dtmf("7")) == protocol.Dtmf("7", "inbound_track")
    assert protocol.parse(STREAM.mark("p1")) == protocol.Mark("p1")
    assert protocol.parse(STREAM.stop()).call_sid == STREAM.call_sid


def test_sequence_numbers_chunks_and_timestamps_are_strings():
    s = protocol.TwilioStream("MZ1", "CA1")
    s.start({})
    first, second = json.loads(s.media(b"\xff" * 160)), json.loads(s.media(b"\xff" * 80))
    assert first["sequenceNumber"] == "2" and first["media"]["chunk"] == "1" and first["media"]["timestamp"] == "0"
    assert second["media"]["chunk"] == "2" and second["media"]["timestamp"] == "20"


def test_server_messages_have_twilios_shape():
    assert json.loads(protocol.media("MZ1", b"\x00\xff")) == {
        "event": "media", "streamSid": "MZ1", "media": {"payload": base64.b64encode(b"\x00\xff").decode()}}
    assert json.loads(protocol.mark("MZ1", "p3")) == {"event": "mark", "streamSid": "MZ1", "mark": {"name": "p3"}}
    assert json.loads(protocol.clear("MZ1")) == {"event": "clear", "streamSid": "MZ1"}


@pytest.mark.parametrize("bad", [
    "not json", "[1, 2]", json.dumps({"event": "party"}), json.dumps({"event": "media"}),
    json.dumps({"event": "media", "media": {"payload": "***not base64***"}}),
    json.dumps({"event": "media", "media": {"payload": "A" * 200_000}}),
    json.dumps({"event": "dtmf", "dtmf": {"digit": "x"}}), json.dumps({"event": "start", "start": {}}),
    b"\x00binary", "x" * 100_000,
])
def test_bad_messages_raise_protocol_error(bad):
    with pytest.raises(protocol.ProtocolError):
        protocol.parse(bad)


def test_reframer_turns_any_chunking_into_20ms_frames():
    data = bytes(range(256)) * 10
    r, out = Reframer(), []
    pos = 0
    for size in [7, 61, 160, 1, 999, 3] * 5:
        out += r.push(data[pos:pos + size])
        pos += size
        if pos >= len(data):
            break
    rest = r.flush()
    assert all(len(f) == 160 for f in out)
    assert b"".join(out) + rest == data[:pos]


def test_mulaw_wav_round_trip_is_byte_exact(tmp_path):
    data = bytes(range(256)) * 3          # includes both mu-law zeros (0x7f and 0xff)
    write_ulaw_wav(tmp_path / "a.wav", data)
    assert read_ulaw_wav(tmp_path / "a.wav") == data
    rec = WavRecorder(tmp_path / "b.wav")
    rec.write(data[:100])
    rec.write(data[100:])
    rec.close()
    assert read_ulaw_wav(tmp_path / "b.wav") == data
