"""Offline speech for phone calls: Vosk models, recognition, endpointing, prompts, the stream session.

Nothing here knows about Flask: ivr.web.stream hands a media WebSocket's messages to a
StreamSession, whose dialogue (ivr.speech.dialogue) takes each turn through ivr.turn.
"""
