"""Secrets in clear (issue 9, item 6), in execution records and logs: masking must not depend on
step order. Every secret the pipeline refers to is known before the first step runs."""

from __future__ import annotations

import json
import sys
import textwrap

from mimir_tui.pipelines import templates
from mimir_tui.pipelines.spec import parse_text

PY = sys.executable
SECRET = "pw-0123456789-secret"


def spec_of(text: str):
    specs, issues = parse_text(textwrap.dedent(text).lstrip("\n"), "test.yaml")
    assert not issues, [str(i) for i in issues]
    return specs[0]


def everything_recorded(runner, record) -> str:
    """The record as returned and as stored, and the execution log."""
    stored = runner.backend.get_execution(record.id)
    return "\n".join(
        [
            json.dumps(record.steps),
            json.dumps(record.context),
            record.error or "",
            json.dumps(stored.steps),
            json.dumps(stored.context),
            stored.error or "",
            runner.log_path(record.id).read_text(),
        ]
    )


def test_a_secret_printed_by_an_earlier_step_is_masked_when_a_later_step_uses_it(runner, monkeypatch):
    """The attack: step 1's command prints the database password (it reads it from its
    environment, no template); only step 3 refers to it, under a secret key. It stayed in
    ``steps[0].output``, in ``steps[1].error`` and in the log."""
    monkeypatch.setenv("MIMIR_TEST_DB", SECRET)  # a name that does not look secret
    show = "import os; print('connecting with', os.environ['MIMIR_TEST_DB'])"
    fail = "import os, sys; sys.exit('refused: ' + os.environ['MIMIR_TEST_DB'])"
    spec = spec_of(f"""
        name: leaky
        steps:
          - name: prints it
            plugin: System.command
            config: {{command: ["{PY}", "-c", "{show}"]}}
            output: shown
          - name: fails with it
            plugin: System.command
            config: {{command: ["{PY}", "-c", "{fail}"]}}
            continue_on_error: true
          - name: uses it
            plugin: Test.echo
            config: {{value: public, api_key: "${{MIMIR_TEST_DB}}"}}
    """)
    record = runner.run(spec)
    assert record.status == "success", record.error
    steps = record.step_records()
    assert steps[0].output["stdout"] == "connecting with ***\n"
    assert steps[1].status == "failed" and steps[1].error.endswith("refused: ***")
    assert SECRET not in everything_recorded(runner, record)


def test_a_secret_looking_environment_variable_is_masked_wherever_it_is_used(runner, monkeypatch):
    """``${API_TOKEN}`` in an argv (no secret key around it) is a secret by its name."""
    monkeypatch.setenv("MIMIR_TEST_API_TOKEN", SECRET)
    spec = spec_of("""
        name: token
        steps:
          - name: echo
            plugin: System.command
            config: {command: [echo, "token ${MIMIR_TEST_API_TOKEN}"]}
    """)
    record = runner.run(spec)
    assert record.status == "success", record.error
    assert record.step_records()[0].output["stdout"] == "token ***\n"
    assert SECRET not in everything_recorded(runner, record)


def test_a_secret_a_template_brings_in_later_is_masked_in_earlier_records_by_the_end(runner):
    """A secret known only when a later step's ``{{ }}`` is expanded (step 1 fetched it): the
    stored record is masked all through."""
    spec = spec_of(f"""
        name: vault
        steps:
          - name: fetch
            plugin: System.command
            config: {{command: [printf, "%s", "{SECRET}"]}}
            output: vault
          - name: use
            plugin: Test.echo
            config: {{value: public, api_key: "{{{{ vault.stdout }}}}"}}
    """)
    record = runner.run(spec)
    assert record.status == "success", record.error
    assert record.step_records()[0].output["stdout"] == "***"
    stored = runner.backend.get_execution(record.id)
    assert SECRET not in json.dumps(stored.steps) + json.dumps(stored.context)


def test_referenced_secrets_are_gathered_from_every_step_before_the_run():
    env = {"TOKEN": "tok-1234", "DB_PASSWORD": "dbpw-5678", "PLAIN": "plain-value", "SHORT": "ab"}
    configs = [
        {"command": ["echo", "${DB_PASSWORD}", "${PLAIN}"]},
        {"headers": {"Authorization": "Bearer ${TOKEN}", "Accept": "${PLAIN}"}},
        {"password": "literal-pw", "api_key": "{{ earlier.key }} ${TOKEN}", "token": "${UNSET}"},
        {"secrets": ["listed-1", 12345]},
    ]
    assert templates.referenced_secrets(configs, env) == {
        "dbpw-5678",  # a secret-looking variable name, in any value
        "Bearer tok-1234",
        "tok-1234",
        "literal-pw",
        "listed-1",
        "12345",
    }
