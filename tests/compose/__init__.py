"""The compose stack on a real Docker engine (``make compose-test``; see run.py)."""
