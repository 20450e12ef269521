"""Offline speech for phone calls: Vosk models, recognition, endpointing, prompts.

Nothing here knows about Twilio or Flask; ivr.web.media wires it to the
media stream and the flow engine.
"""
