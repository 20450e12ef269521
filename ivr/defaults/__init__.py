"""What `pip install ivr` brings besides the code: the example hotline's flows and eval sets.

`flows` and `eval` here are links to the repository's own flows/ and eval/ folders, so the source
checkout and the installed wheel read the same files (setuptools copies them into the wheel as
package data). An installed server reads them when its IVR_HOME has no flows/ of its own, and
`ivr init DIR` copies them out to start a hotline folder; nothing is ever written here, since
site-packages may be read-only and is replaced on every upgrade.
"""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
FLOWS = HERE / "flows"
EVAL = HERE / "eval"
ENV_EXAMPLE = HERE / "ivr.env.example"
