"""Bad input, generated: every webhook answers with a clear status, never a crash,
and flow files either load or fail with file and line."""
import shutil
from collections import Counter

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ivr import keys
from ivr.config import ROOT
from ivr.flows.loader import FlowError, load_flow
from tests.support.fault_table import record

pytestmark = pytest.mark.slow      # hundreds of generated requests and flow files

PATHS = ["/voice", "/voice/gather?turn=1", "/voice/gather?turn=abc", "/voice/gather", "/voice/dial?turn=2",
         "/voice/dial?turn=emergency", "/voice/whisper?sid=CAx", "/voice/status", "/voice/queue/wait?queue=normal",
         "/voice/queue/wait?queue=bogus", "/voice/queue/result?turn=3", "/voice/queue/connect?queue=urgent",
         "/voice/queue/option?sid=CA1", "/voice/agent", "/voice/rating?after=bot", "/voice/comment",
         "/voice/voicemail", "/voice/fallback", "/voice/agent?pin=1", "/voice/agent/done", "/voice/closed?turn=2",
         "/voice/closed?turn=2&silent=2", f"/voice/callback/answer?sid={'CA' + '1' * 32}&attempt=1",
         f"/voice/callback/status?sid={'CA' + '1' * 32}&attempt=1", "/voice/callback/status?sid=CA1&attempt=x",
         f"/voice/callback/agent-wait?sid={'CA' + '1' * 32}&attempt=1",
         f"/voice/callback/dialed?sid={'CA' + '1' * 32}&attempt=1",
         f"/voice/callback/whisper?sid={'CA' + '1' * 32}&attempt=1",
         f"/voice/callback/connected?sid={'CA' + '1' * 32}&attempt=1&agent=x"]
NAMES = ["CallSid", "From", "To", "Digits", "SpeechResult", "Confidence", "DialCallStatus", "DialCallDuration",
         "QueueResult", "QueueTime", "QueuePosition", "AvgQueueTime", "CallStatus", "RecordingUrl"]
values = st.one_of(st.text(max_size=80), st.integers().map(str), st.just(""), st.just("0"),
                   st.sampled_from([":", "nan", "inf", "-1e999", "1e999", "-3"]),   # numbers that are not
                   st.text(alphabet="0123456789#*", max_size=40), st.just("x" * 5000))
params = st.dictionaries(st.one_of(st.sampled_from(NAMES), st.text(min_size=1, max_size=12)), values, max_size=8)


def test_webhooks_never_crash_and_the_server_then_serves_a_call(twilio, redis):
    seen = Counter()

    @settings(max_examples=120, deadline=None)
    @given(path=st.sampled_from(PATHS), form=params, signed=st.booleans())
    # Found by this test in CI: a QueueTime that is no number broke the agent's wait page (500).
    @example(path=f"/voice/callback/agent-wait?sid={'CA' + '1' * 32}&attempt=1", form={"QueueTime": ":"}, signed=True)
    @example(path="/voice/queue/wait?queue=normal", form={"QueueTime": "1e999", "QueuePosition": "nan"}, signed=True)
    def fuzz(path, form, signed):
        status, body = twilio.post(path, form, signature=None if signed else "bogus")
        if not signed:
            assert status == 403
        else:
            assert status in (200, 204, 400, 404, 413, 503), (status, body[:300])
        seen["requests"] += 1
        seen[f"status {status}"] += 1

    fuzz()
    # Both kinds were tried (a strategy that only produced unsigned requests would prove nothing).
    assert seen["status 403"] and seen["requests"] > seen["status 403"], seen
    # The same server, after all that, serves a normal call.
    call = {"CallSid": "CA" + "7" * 32, "From": "+15005550177"}
    twilio.post("/voice/gather?turn=1", dict(call, Digits="1" * 40))      # unknown call, odd digits
    status, body = twilio.post("/voice", call)
    assert status == 200 and "<Gather" in body
    assert redis.hget(keys.call(call["CallSid"]), "step") == "welcome"
    record("webhook_fuzz", what="Generated webhooks (hypothesis): missing, odd, oversized, duplicated params, "
           "bad turn numbers, signed and unsigned", tried=f"{seen['requests']} requests on 18 endpoints",
           outcome="unsigned: 403; signed: a clear status, never a 500; the server then served a normal call",
           crashes=0, **{k.replace(" ", "_"): v for k, v in seen.items() if k.startswith("status")})


ORIGINAL = (ROOT / "flows" / "hotline.yaml").read_text().splitlines()
edits = st.lists(st.tuples(st.sampled_from(["delete", "duplicate", "indent", "garble", "swap"]),
                           st.integers(min_value=0, max_value=len(ORIGINAL) - 1),
                           st.text(alphabet=" :-[]{}#'\"abc0\t", min_size=1, max_size=4)), min_size=1, max_size=4)


def test_mutated_flow_loads_or_reports_file_and_line(tmp_path_factory):
    seen = Counter()

    @settings(max_examples=150, deadline=None)
    @given(changes=edits)
    def mutate(changes):
        lines = list(ORIGINAL)
        for op, i, junk in changes:
            i %= len(lines)
            if op == "delete":
                del lines[i]
            elif op == "duplicate":
                lines.insert(i, lines[i])
            elif op == "indent":
                lines[i] = " " + lines[i]
            elif op == "garble":
                lines[i] = lines[i][: len(lines[i]) // 2] + junk
            else:
                j = (i + 1) % len(lines)
                lines[i], lines[j] = lines[j], lines[i]
            if not lines:
                lines = ["x"]
        folder = tmp_path_factory.mktemp("flow")
        for files in ("data", "training"):       # what the flow refers to, so only the mutation can fail it
            shutil.copytree(ROOT / "flows" / files, folder / files)
        path = folder / "hotline.yaml"
        path.write_text("\n".join(lines))
        try:
            load_flow(path)
            seen["loaded"] += 1
        except FlowError as exc:
            assert exc.problems
            for p in exc.problems:
                assert p.file == str(path) and 1 <= p.line <= len(lines) + 1 and p.message
            seen["rejected"] += 1

    mutate()
    # Some mutations are harmless (a duplicated comment, a swapped list item) and most are not: a run
    # that only ever loaded, or only ever rejected, would mean the mutations or the copy went wrong.
    assert seen["loaded"] and seen["rejected"], seen
    record("flow_fuzz", what="Mutated flow files (lines deleted, duplicated, indented, garbled, swapped)",
           tried=f"{seen['loaded'] + seen['rejected']} files",
           outcome="loaded, or rejected with file, line and problem; no other exception",
           rejected=seen["rejected"], loaded=seen["loaded"], crashes=0)
