"""Issue 10, items 6 and 7: ``executions show`` prints an excerpt of each step's output, escaped
for the terminal (only ``--json`` had them); ``pipelines run`` numbers a step in its progress
lines as the run's error does (a step that failed before it started was ``step 0/N``)."""

from __future__ import annotations

import json
from pathlib import Path

from mimir_tui.cli import main

OUTPUTS = """
name: outputs
steps:
  - name: say
    plugin: System.command
    config: {{command: ["printf", "hello\\\\nworld\\\\n"]}}
  - name: read
    plugin: Input.file
    config: {{path: "{doc}", format: text}}
  - name: evil
    plugin: Data_Processing.transform
    config: {{data: ["x\\e[2J\\x9b31m"], operation: join}}
"""

EARLY_FAILURES = """
name: early
steps:
  - name: first
    plugin: Data_Processing.transform
    continue_on_error: true
    config: {data: ["{{ run.nope }}"], operation: join}
  - name: second
    plugin: Data_Processing.transform
    config: {data: ["{{ run.nothing }}"], operation: join}
"""


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_show_prints_an_excerpt_of_each_steps_output_escaped(capsys, tmp_path):
    """A command's stdout, a read document's size; a step whose output holds ESC and a C1 CSI
    (a terminal injection) is shown escaped."""
    doc = tmp_path / "doc.txt"
    doc.write_text("some document\n" * 10)
    path = Path("outputs.yaml")
    path.write_text(OUTPUTS.format(doc=doc))
    code, out, err = cli(capsys, "pipelines", "run", str(path), "--json")
    assert code == 0, err
    execution_id = json.loads(out)["id"]

    code, out, err = cli(capsys, "executions", "show", execution_id)
    assert code == 0, err
    outputs = [line.strip() for line in out.splitlines() if line.startswith("     output: ")]
    assert len(outputs) == 3, out
    assert outputs[0].startswith('output: command=[2 item(s)], stdout="hello\\nworld\\n", stderr="", exit_code=0')
    assert f"bytes={len(doc.read_text())}" in outputs[1] and 'format="text"' in outputs[1]
    assert outputs[2] == 'output: "x\\u001b[2J\\x9b31m"'
    assert "\x1b" not in out and "\x9b" not in out


def test_progress_lines_number_steps_as_the_error_does(capsys):
    Path("early.yaml").write_text(EARLY_FAILURES)
    code, out, _ = cli(capsys, "pipelines", "run", "early.yaml")
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith("step 1/2  first  failed  ") and "run has no key 'nope'" in lines[0]
    assert lines[1].startswith("step 2/2  second  failed  ")
    assert lines[3].startswith("error: step 2 (second) failed: template {{ run.nothing }}")
