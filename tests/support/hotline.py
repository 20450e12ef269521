"""Drive the real webhooks the way Twilio would, step by step, to put calls where a test needs them.

Nothing here writes Redis: every state (waiting in a queue, with an agent, waiting for a call back,
a voicemail left, out of hours) is reached by posting the signed requests Twilio posts and
following the TwiML that comes back. The tests hold the caller at any step simply by not posting
the next request yet.
"""
from __future__ import annotations

from ivr.simulate.call import AGENT_NUMBER
from ivr.simulate.twilio_client import parse_twiml

HOTLINE = "+15005550100"


def caller(n: int, number: str | None = None) -> dict:
    return {"CallSid": f"CA{n:032d}", "From": number or f"+1415555{n:04d}", "To": HOTLINE}


def agent_sid(n: int) -> str:
    return f"CA{900000 + n:032d}"


def post(client, url, params) -> object:
    status, body = client.post(url, params)
    assert status == 200, (url, status, body)
    return parse_twiml(body)


def start(client, call, *inputs, lang=None):
    """A call comes in and the caller presses keys (digits) or says things (text); the last TwiML."""
    root = post(client, "/voice" + (f"?lang={lang}" if lang else ""), call)
    for i, inp in enumerate(inputs, 1):
        params = dict(call, Digits=inp) if inp.isdigit() else dict(call, SpeechResult=inp, Confidence="0.9")
        root = post(client, f"/voice/gather?turn={i}", params)
    return root


def verb(root, tag):
    return next((v for v in root if v.tag == tag), None)


def said(root) -> str:
    """Every <Say> of a TwiML document, in order, inner ones (in <Gather>) included."""
    return " ".join(s.text or "" for s in root.iter("Say"))


def enqueued(client, call, *inputs):
    """A caller who asked for a person and now waits in a queue: the <Enqueue> verb."""
    enqueue = verb(start(client, call, *inputs), "Enqueue")
    assert enqueue is not None, "the caller was not queued"
    return enqueue


def wait_round(client, call, enqueue, queue_time, position=1):
    return post(client, enqueue.get("waitUrl"), dict(call, QueuePosition=str(position), QueueTime=str(queue_time),
                                                     AvgQueueTime="60", CurrentQueueSize="1"))


def choose_in_queue(client, call, enqueue, digit, queue_time=130):
    """After the callback offer, the caller presses 1 (call back) or 2 (voicemail); Twilio's <Leave>
    then ends the <Enqueue> with QueueResult=leave. Returns the TwiML that follows."""
    offer = verb(wait_round(client, call, enqueue, queue_time), "Gather")
    assert offer is not None, "no callback offer after waiting"
    assert verb(post(client, offer.get("action"), dict(call, Digits=digit)), "Leave") is not None
    return post(client, enqueue.get("action"), dict(call, QueueResult="leave", QueueTime=str(queue_time)))


def ask_callback(client, call, enqueue, queue_time=130):
    return choose_in_queue(client, call, enqueue, "1", queue_time)


def leave_voicemail(client, call, enqueue, recording_url, queue_time=130, seconds="6"):
    record = verb(choose_in_queue(client, call, enqueue, "2", queue_time), "Record")
    assert record is not None, "no <Record> after choosing voicemail"
    return post(client, record.get("action"), dict(call, RecordingUrl=recording_url, RecordingDuration=seconds))


def agent_line(client, n, number=AGENT_NUMBER, url="/voice/agent", **extra):
    """An agent (or anyone) calls the agent line: the TwiML they get."""
    return post(client, url, {"CallSid": agent_sid(n), "From": number, "To": "+15005550001", **extra})


def dial_queue(root):
    """The <Queue> an agent-line answer bridges to, or None."""
    return next((q for d in root if d.tag == "Dial" for q in d if q.tag == "Queue"), None)


def agent_takes(client, n, call, queue_time=20):
    """The agent line hands agent `n` the next caller and Twilio bridges `call` to them."""
    root = agent_line(client, n)
    queue = dial_queue(root)
    assert queue is not None, said(root)
    post(client, queue.get("url"), dict(call, QueueTime=str(queue_time), DequeingCallSid=agent_sid(n)))
    return root


def end_call(client, call, duration="60"):
    status, _ = client.post("/voice/status", dict(call, CallStatus="completed", CallDuration=duration))
    assert status == 204


def week_of_calls(client, clock, now, per_day=(6, 9, 7, 11, 8, 10, 5)):
    """A believable week behind the live view, made through the webhooks by a server whose clock
    the test moves (`client` serves with `clock`): answered by the bot and rated, handed off and
    answered after a wait, hung up while waiting. Returns the number of calls placed."""
    n = 0
    for day, count in enumerate(per_day):
        base = now - (6 - day) * 86400 - 3 * 3600
        for i in range(count):
            n += 1
            clock.t = base - i * 700
            call = caller(5000 + n, f"+1212555{1000 + n:04d}")
            kind = i % 6
            if kind in (0, 1, 2):                                # the bot answers: opening hours, rated
                root = start(client, call, "3", "2")
                rating = verb(root, "Gather")
                if rating is not None:
                    post(client, rating.get("action"), dict(call, Digits=str(3 + (i + day) % 3)))
            elif kind in (3, 4):                                 # a person, after a wait
                enqueue = enqueued(client, call, ("0", "9", "7")[(i + day) % 3])
                clock.t += 8 + (i * 7 + day * 5) % 40
                agent_takes(client, 100 + n, call, queue_time=8 + (i * 7 + day * 5) % 40)
                clock.t += 120
                post(client, enqueue.get("action"), dict(call, QueueResult="bridged", QueueTime="30"))
            else:                                                # hung up while waiting
                enqueue = enqueued(client, call, "0")
                clock.t += 50
                post(client, enqueue.get("action"), dict(call, QueueResult="hangup", QueueTime="50"))
            clock.t += 30
            end_call(client, call)
    return n
