"""Every Redis key ivr uses, in one place.

All call state lives in Redis so any server process can take any webhook;
these names are the contract between processes (and the dashboard).

  ivr:call:{sid}            hash   call record: from, to, flow, flow_version, lang, step, state (engine JSON),
                                   started_at, ended_at, status, outcome, transfers, queue, reason,
                                   handoff_at, answered_at, wait_seconds, dial_status, boost, answered,
                                   announcements, waiting_seen_at (the last wait page Twilio asked for),
                                   queue_restored_at (a failover lost the write that queued the caller)
  ivr:call:{sid}:turns      list   transcript, one JSON object per bot or caller turn
  ivr:call:{sid}:replies    hash   turn number -> TwiML already returned; makes retried webhooks
                                   return the same answer and change nothing
  ivr:call:{sid}:once       set    markers of one-time effects (dial result recorded, call closed)
  ivr:caller:{hmac(from)}   hash   last_call_at, last_sid, transferred; expires after 24 h.
                                   Keyed hash (HMAC with the server secret's hash key, ivr/keyring.py), so
                                   phone numbers appear neither in key names nor in a guessable form.
                                   Never read or written for a withheld number (calls.withheld).
  ivr:calls:active          zset   sid -> started_at, calls not yet closed
  ivr:calls:recent          zset   sid -> started_at, every call within retention
  ivr:queue:{name}          zset   callers waiting in queue `name` (urgent, normal): sid -> order score
                                   (enqueue time, minus a head start for repeat/transferred callers)
  ivr:waits                 zset   "{sid}|{wait_seconds}|{queue}" -> answered_at, one member per caller
                                   who reached a person; rolling average/p90 read a time window
  ivr:abandoned             zset   "{sid}|{queue}" -> time, callers who hung up while waiting
  ivr:callbacks             zset   sid -> place: callers waiting for a call back (ivr.callbacks), scored by
                                   the moment they first joined the queue (or asked, out of hours), so a
                                   callback keeps the caller's place against callers who came later
  ivr:callbacks:failed      zset   sid -> failed_at: callbacks given up after the last failed attempt; they
                                   stay in sight until an operator closes them
  ivr:voicemails            zset   sid -> left_at: voicemails nobody has handled yet (ivr.voicemail)
  ivr:agents                hash   agent name -> JSON {number, pin (argon2 hash or ""), added_at}: who may use
                                   the agent line (ivr.agents); kept until removed, like operator accounts
  ivr:agents:seen           zset   agent name -> last time the agent line heard from them (idle agents poll)
  ivr:agents:calls          hash   caller sid -> JSON {agent, since, agent_call}: agents on a call now
  ivr:agent_line:{CallSid}  hash   name, admitted_at, pin_failures, refused (why; it stays refused), turn (the
                                   number of the request the call may make next; each turn takes at most
                                   one caller): one agent-line call; expires 12 h after its last request
  ivr:agent_pin_failures:{name}  string  PIN attempts of one agent, across calls, since their last right
                                   PIN; at the limit their PIN entry is locked. Expires a lock period after
                                   the last attempt
  ivr:counts:{YYYY-MM-DD}   hash   event -> count that day (agent_line_refused ...); kept 400 days
  ivr:audit                 stream operator actions that reveal personal data (CSV with numbers): who,
                                   when, what; capped at AUDIT_MAXLEN entries, kept 400 days
  ivr:unanswered:{flow}:{lang}       zset  normalized caller utterance -> times the bot did not
                                   understand it (clarification or handoff for low confidence)
  ivr:unanswered_last:{flow}:{lang}  hash  utterance -> last time heard
  ivr:ratings:{YYYY-MM-DD}  hash   "{intent}:sum" / "{intent}:count" of caller ratings (1-5) that day,
                                   plus "all:*"; kept 400 days
  ivr:events                stream every state change (call_started, turn, handoff, dial_result,
                                   call_ended), capped at EVENTS_MAXLEN entries
  ivr:operators             set    names of dashboard operator accounts
  ivr:operator:{name}       hash   password (argon2 hash), created_at, last_login_at
  ivr:session:{sha256(token)}  hash  operator, created_at, ip: one dashboard login; expires with the
                                   session, deleted on logout; gone = logged out everywhere. The key holds
                                   the token's hash: the dump alone gives no usable cookie
  ivr:login_failures:{kind}:{hmac(who)}  string  dashboard login attempts not yet succeeded, per
                                   account and address pair (kind=pair) and per client address (kind=ip);
                                   keyed hashes; expires a lock period after the last attempt
  ivr:secret_key            string server secret shared by all processes when IVR_SECRET_KEY is unset:
                                   signs dashboard sessions; keys derived from it sign stream credentials
                                   and key the hashes above (ivr/keyring.py)
  ivr:queue_sweep           string set (NX, expiring) by the process that swept the queue mirror last
                                   (ivr.queues: ghosts after a failover); its life is the sweep period
  ivr:flows:reload          string JSON {version, at}: the flows version an operator asked every process
                                   to load (`ivr reload`, SIGHUP); each process reads it every 2 s
                                   (ivr.flow_versions)
  ivr:flows:serving:{process}  string  JSON {version, at, token, error?}: what one process serves, for
                                   `ivr reload` to report; expires 30 s after the process last renewed it
Every per-call key expires after the configured retention period.
"""
import hashlib
import hmac

PREFIX = "ivr"
EVENTS = f"{PREFIX}:events"
EVENTS_MAXLEN = 100_000
ACTIVE = f"{PREFIX}:calls:active"
RECENT = f"{PREFIX}:calls:recent"
CALLER_TTL = 24 * 3600
WAITS = f"{PREFIX}:waits"
ABANDONED = f"{PREFIX}:abandoned"
CALLBACKS = f"{PREFIX}:callbacks"
CALLBACKS_FAILED = f"{PREFIX}:callbacks:failed"
VOICEMAILS = f"{PREFIX}:voicemails"
AGENTS = f"{PREFIX}:agents"
AGENTS_SEEN = f"{PREFIX}:agents:seen"
AGENTS_CALLS = f"{PREFIX}:agents:calls"
AUDIT = f"{PREFIX}:audit"
AUDIT_MAXLEN = 10_000
LONG_TTL = 400 * 86400
QUEUES = ("urgent", "normal")
QUEUE_SWEEP = f"{PREFIX}:queue_sweep"
FLOWS_RELOAD = f"{PREFIX}:flows:reload"
FLOWS_SERVING_MATCH = f"{PREFIX}:flows:serving:*"


def flows_serving(process: str) -> str:
    return f"{PREFIX}:flows:serving:{process}"


def unanswered(flow: str, lang: str) -> str:
    return f"{PREFIX}:unanswered:{flow}:{lang}"


def unanswered_last(flow: str, lang: str) -> str:
    return f"{PREFIX}:unanswered_last:{flow}:{lang}"


def ratings(day: str) -> str:
    return f"{PREFIX}:ratings:{day}"


def agent_line(call_sid: str) -> str:
    return f"{PREFIX}:agent_line:{call_sid}"


def agent_pin_failures(name: str) -> str:
    return f"{PREFIX}:agent_pin_failures:{name}"


def counts(day: str) -> str:
    return f"{PREFIX}:counts:{day}"


def queue(name: str) -> str:
    return f"{PREFIX}:queue:{name}"


# The call record's key is this prefix plus the CallSid; Lua that walks sids takes it as an argument.
CALL_PREFIX = f"{PREFIX}:call:"


def call(sid: str) -> str:
    return CALL_PREFIX + sid


def turns(sid: str) -> str:
    return f"{PREFIX}:call:{sid}:turns"


def replies(sid: str) -> str:
    return f"{PREFIX}:call:{sid}:replies"


def once(sid: str) -> str:
    return f"{PREFIX}:call:{sid}:once"


def _keyed(hash_key: bytes, value: str) -> str:
    return hmac.new(hash_key, (value or "").encode(), hashlib.sha256).hexdigest()[:32]


def caller(number: str, hash_key: bytes) -> str:
    """`hash_key`: Keyring.hash_key. Without the server secret the number cannot be tried against it."""
    return f"{PREFIX}:caller:" + _keyed(hash_key, number)


OPERATORS = f"{PREFIX}:operators"
SECRET_KEY = f"{PREFIX}:secret_key"


def operator(name: str) -> str:
    return f"{PREFIX}:operator:{name}"


SESSIONS_MATCH = f"{PREFIX}:session:*"


def session(token: str) -> str:
    """The session a cookie's token names; stored under the token's SHA-256, never the token."""
    return f"{PREFIX}:session:" + hashlib.sha256(token.encode()).hexdigest()


def login_failures(kind: str, who: str, hash_key: bytes) -> str:
    """kind is "pair" (who = account and address) or "ip" (who = address); keyed hashes, like callers."""
    return f"{PREFIX}:login_failures:{kind}:" + _keyed(hash_key, who)


def call_keys(sid: str) -> list:
    return [call(sid), turns(sid), replies(sid), once(sid)]
