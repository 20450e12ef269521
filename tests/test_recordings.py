"""Recording downloads go to Twilio only: the allow-list, and no credentials on a redirect."""
import pytest

from ivr.recordings import RecordingRefused, Recordings
from tests.support.twilio_api import ACCOUNT_SID, Bystander, TwilioStandIn

TOKEN = "token-" + "z" * 20
REC = "RE" + "0f" * 16
PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{REC}"


@pytest.mark.parametrize("url", [
    f"https://api.twilio.com{PATH}", f"https://api.twilio.com{PATH}.wav", f"https://api.dublin.ie1.twilio.com{PATH}",
])
def test_twilio_hosts_are_allowed(url):
    assert Recordings(account_sid=ACCOUNT_SID).check(url) == url.removesuffix(".wav")


@pytest.mark.parametrize("url, why", [
    (f"http://api.twilio.com{PATH}", "not on Twilio's HTTPS hosts"),                 # not HTTPS
    (f"https://api.twilio.com.example.net{PATH}", "not on Twilio's HTTPS hosts"),
    (f"https://evil.example{PATH}", "not on Twilio's HTTPS hosts"),
    (f"https://user:pw@api.twilio.com{PATH}", "not on Twilio's HTTPS hosts"),
    (f"https://twilio.com{PATH}", "not on Twilio's HTTPS hosts"),
    (f"https://api.twilio.com/2010-04-01/Accounts/AC{'9' * 32}/Recordings/{REC}", "another account"),
    (f"https://api.twilio.com{PATH}?x=1", "not /2010-04-01"),
    ("https://api.twilio.com/fake/RE0", "not /2010-04-01"),
    ("", "not on Twilio's HTTPS hosts"),
])
def test_anything_else_is_refused(url, why):
    with pytest.raises(RecordingRefused, match=why):
        Recordings(account_sid=ACCOUNT_SID).check(url)


def test_the_configured_api_origin_is_allowed_and_nothing_else_on_that_host():
    with TwilioStandIn(TOKEN) as twilio, Bystander() as other:
        source = Recordings(twilio.url, ACCOUNT_SID, (ACCOUNT_SID, TOKEN))
        url = twilio.add_recording(b"RIFF-audio", processing=False)
        assert source.download(url) == b"RIFF-audio"
        assert twilio.requests[-1]["auth"] is not None
        with pytest.raises(RecordingRefused):
            source.download(other.url + url[len(twilio.url):], retries=0)
        assert other.requests == []


def test_a_redirect_away_from_twilio_is_not_followed_with_or_without_credentials():
    with TwilioStandIn(TOKEN) as twilio, Bystander() as cdn:
        source = Recordings(twilio.url, ACCOUNT_SID, (ACCOUNT_SID, TOKEN))
        url = twilio.add_recording(b"RIFF", processing=False)
        twilio.redirects[url.rsplit("/", 1)[1]] = cdn.url + "/media/x.wav"    # plain http elsewhere
        with pytest.raises(RecordingRefused, match="redirect"):
            source.download(url, retries=0)
        assert cdn.requests == []
