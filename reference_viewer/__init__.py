"""The reference viewer as a Python package: its static files (index.html, app/, decoder/, render/,
vendor/) ship as package data, and ``serve`` adds ``gsd view FILE`` (the viewer on 127.0.0.1 with one
scene) to the ``gsd`` command through the ``gsd.commands`` entry point group."""
from pathlib import Path

VIEWER_DIR = Path(__file__).resolve().parent
