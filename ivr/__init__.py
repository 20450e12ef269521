"""ivr: a self-hosted voice bot for telephone hotlines (Twilio, Vosk, Redis)."""
__version__ = "0.1.0"


def create_app(*args, **kwargs):
    from .app import create_app as _create
    return _create(*args, **kwargs)
