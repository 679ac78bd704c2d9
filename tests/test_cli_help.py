"""`gsd-serve --help` and `gsd-watch --help`: every option says what it does and its default."""
from __future__ import annotations

import re

import pytest


def help_text(main, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


def option_entries(text: str) -> dict:
    """{'--port PORT': 'its help text', ...} from argparse's 'positional arguments' and 'options' sections."""
    entries, section, current = {}, False, None
    for line in text.splitlines():
        if line in ("positional arguments:", "options:", "optional arguments:"):
            section, current = True, None
        elif line and not line.startswith(" "):
            section, current = False, None       # the description, or another section
        elif section and re.match(r"^  \S", line):
            name, _, help_ = line[2:].partition("  ")
            current, entries[name.strip()] = name.strip(), help_.strip()
        elif section and current and line.strip():
            entries[current] = (entries[current] + " " + line.strip()).strip()
    return entries


def check(text: str, expected: set) -> None:
    entries = option_entries(text)
    flags = {k.split()[0].rstrip(",") for k in entries}
    assert expected <= flags, expected - flags
    for name, help_ in entries.items():
        if name.startswith("-h, --help"):
            continue
        assert help_, f"{name}: no help text"
        assert re.search(r"\(default[:;]? |default: ", help_), f"{name}: help does not give the default: {help_!r}"


def test_gsd_watch_help_gives_every_option_a_meaning_and_default(capsys):
    from reference_generator.watch import main
    text = help_text(main, capsys)
    check(text, {"url", "--world", "--steps", "--rate", "--out", "--reconnect", "--max-sh-degree", "--timeout",
                 "--every", "--json"})
    assert "Exit status" in text


def test_gsd_serve_help_gives_every_option_a_meaning_and_default(capsys):
    pytest.importorskip("torch")
    from reference_generator.server import main
    check(help_text(main, capsys),
          {"--host", "--port", "--seed", "--device", "--target-live", "--sh-degree", "--profile", "--tick-hz",
           "--window", "--max-sessions", "--admission", "--admit-max-busy", "--admit-max-wait-ms",
           "--admit-max-loop-lag-ms", "--admit-window", "--admit-min-sessions", "--retry-after", "--workers",
           "--idle-timeout", "--allow-origin", "--log-level"})


def test_option_entries_parses_wrapped_help():
    text = ("usage: x\n\noptions:\n  -h, --help  show help\n  --a-long-option {0,1,2,3}\n"
            "                        first line\n                        (default: 3)\n  --b B       b (default: 1)\n"
            "  --c\n")
    e = option_entries(text)
    assert e == {"-h, --help": "show help", "--a-long-option {0,1,2,3}": "first line (default: 3)",
                 "--b B": "b (default: 1)", "--c": ""}
