"""`ivr simulate --url`: what stops a call against a server is one line with a hint, never a traceback."""
from __future__ import annotations

import http.server
import json
import threading

import pytest
from click.testing import CliRunner

from ivr.cli import main
from ivr.server import free_port


def simulate(*args):
    result = CliRunner().invoke(main, ["simulate", *args, "--press", "1"])
    return result.exit_code, result.output


def assert_one_line_and_a_hint(output):
    lines = output.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("ivr simulate: ") and lines[1].startswith("  hint: "), output
    assert "Traceback" not in output


def test_a_call_through_the_server(server, config):
    code, output = simulate("--url", server.url, "--token", config.twilio_auth_token)
    assert code == 0, output
    assert "-- outcome=" in output


def test_wrong_token_is_the_servers_refusal(server):
    code, output = simulate("--url", server.url, "--token", "not-the-token")
    assert code == 2
    assert_one_line_and_a_hint(output)
    assert "(403)" in output and "TWILIO_AUTH_TOKEN" in output


def test_nothing_listening():
    url = f"http://127.0.0.1:{free_port()}"
    code, output = simulate("--url", url, "--token", "t")
    assert code == 2
    assert_one_line_and_a_hint(output)
    assert "cannot reach" in output and "Connection refused" in output and "ivr serve" in output


@pytest.mark.parametrize("url", ["127.0.0.1:5000", "ftp://127.0.0.1/", "http://"])
def test_not_an_http_address(url):
    code, output = simulate("--url", url, "--token", "t")
    assert code == 2
    assert_one_line_and_a_hint(output)
    assert "not an http(s) address" in output


class _NotIvr(http.server.BaseHTTPRequestHandler):
    """Some other web server: answers every POST with a page, or with 404 under /missing."""

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, body = (404, b"not here") if self.path.startswith("/missing") else (200, b"<html>hello</html>")
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def other_server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotIvr)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_server_that_is_not_ivr(other_server):
    code, output = simulate("--url", other_server, "--token", "t")
    assert code == 2
    assert_one_line_and_a_hint(output)
    assert "did not answer with TwiML" in output


def test_a_url_with_a_path_that_is_not_there(other_server):
    code, output = simulate("--url", other_server + "/missing", "--token", "t")
    assert code == 2
    assert_one_line_and_a_hint(output)
    assert "(404)" in output


def test_an_agent_the_line_turns_away_is_said_and_no_bridge_is_pretended(server, config, redis):
    # The simulated agent's number is not registered on this server: nobody takes the caller.
    from ivr import keys
    from ivr.agents import Agents
    from ivr.simulate.call import AGENT_NUMBER
    Agents(redis).remove("sim")
    result = CliRunner().invoke(main, ["simulate", "--url", server.url, "--token", config.twilio_auth_token,
                                       "--press", "0", "--json"])
    assert result.exit_code == 0, result.output
    import json
    report = json.loads(result.output)
    assert report["agent_refused"] is True and report["agent_heard"]
    assert report["wait_seconds"] is None or report["status"] != "bridged"
    sid = report["call_sid"]
    assert redis.hget(keys.call(sid), "status") != "bridged"
    output = CliRunner().invoke(main, ["simulate", "--url", server.url, "--token", config.twilio_auth_token,
                                       "--press", "0"]).output
    assert "turned the simulated agent away" in output and AGENT_NUMBER in output



def test_the_callers_last_input_is_printed_once(server, config):
    result = CliRunner().invoke(main, ["simulate", "--url", server.url, "--token", config.twilio_auth_token,
                                       "--press", "1", "--press", "100234"])
    code, output = result.exit_code, result.output
    assert code == 0 and "is shipped on Monday" in output, output
    assert output.count("caller: press 100234") == 1, output


def test_why_prints_the_bot_s_reason_after_each_caller_turn(server, config):
    said = "is the shop by the train station open late tonight"
    args = ["simulate", "--url", server.url, "--token", config.twilio_auth_token, "--say", said, "--press", "0"]
    result = CliRunner().invoke(main, args + ["--why"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    i = lines.index(f"caller: {said}")
    assert lines[i + 1].startswith("why:    best opening_hours") and "another business's matter" in lines[i + 1]
    assert any(line.startswith("why:    ") and "key 0" in line for line in lines[i + 2:]), result.output
    # Without --why the conversation reads as before; the JSON report carries the reason either way.
    plain = CliRunner().invoke(main, args)
    assert "why:" not in plain.output
    report = json.loads(CliRunner().invoke(main, args + ["--json"]).output)
    assert "another business's matter" in report["turns"][1]["why"]
