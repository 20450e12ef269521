"""Place calls against an ivr server exactly as Twilio would: signed webhooks, TwiML followed."""
