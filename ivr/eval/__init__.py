"""`ivr eval`: run a labelled set of caller utterances through the real recognizer and flow engine.

dataset.py reads the set (YAML or CSV) and synthesizes missing audio; runner.py
recognizes each item with the grammar the live call would use at that step and
lets the flow engine decide; report.py writes the Markdown report and the chart.
Format and workflow: docs/quality.md.
"""
from .dataset import EvalItem, EvalSet, load_set
from .runner import EvalResult, evaluate
from .wer import cer, edit_distance, wer

__all__ = ["EvalItem", "EvalSet", "load_set", "EvalResult", "evaluate", "wer", "cer", "edit_distance"]
