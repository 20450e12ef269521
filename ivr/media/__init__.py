"""Twilio Media Streams: the wire protocol and mu-law audio, nothing about dialogue.

Kept apart from the flow engine and from speech recognition so the protocol
can be tested (and reused by the simulator, which plays Twilio's side) alone.
"""
