"""Every command bench/RESULTS.md cites still parses: its module imports and
knows each flag given, and its flagfiles exist.

Figures measured before a flag was renamed keep their command, so a rename
must update RESULTS.md (the 2026-11-28 figures once cited a flagfile and a
flag that no longer existed). Commands are taken from inline code and code
blocks; placeholders (`python -m bench.<name>`) and mentions of a beau_tf
command without flags (`python -m beau_tf.index`'s own path) are prose.
"""

import collections
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]

# Imports the module, then parses each argv in turn with its flags.
_PARSE = """
import json, sys
from absl import flags
import importlib
importlib.import_module(sys.argv[1])
for argv in json.loads(sys.argv[2]):
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["prog", *argv])
"""


def cited_commands() -> dict[str, list[list[str]]]:
    """`{module: [argv, ...]}` of the `python -m` commands with flags."""
    text = (REPO / "bench" / "RESULTS.md").read_text()
    blocks = re.findall(r"```\n(.*?)```", text, re.S)
    spans = [line for block in blocks for line in block.splitlines()]
    spans += re.findall(
        r"`([^`]+)`", re.sub(r"```.*?```", "", text, flags=re.S)
    )
    commands = collections.defaultdict(list)
    for span in spans:
        if "-m " not in span or "<" in span:  # prose or a placeholder
            continue
        words = shlex.split(" ".join(span.split()))
        if "-m" not in words:
            continue
        module, *argv = words[words.index("-m") + 1 :]
        if argv or module.startswith("bench."):
            commands[module].append(argv)
    return commands


COMMANDS = cited_commands()


def test_results_cite_commands():
    assert {"bench.grocery", "beau_tf.train"} <= set(COMMANDS)


@pytest.mark.slow
@pytest.mark.parametrize("module", sorted(COMMANDS))
def test_cited_command_parses(module):
    result = subprocess.run(
        [sys.executable, "-c", _PARSE, module, json.dumps(COMMANDS[module])],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    assert result.returncode == 0, (COMMANDS[module], result.stderr[-3000:])
