"""Shell injection through templates (issue 9, item 2): with ``System.command`` and
``shell: true``, every value a template brings in reaches the shell quoted as one word, unless
the step says ``raw_templates: true``; ``pipelines validate`` warns about both."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from mimir_tui.cli import main as cli_main
from mimir_tui.pipelines import templates
from mimir_tui.pipelines.plugins.system_command import Command, shell_context
from mimir_tui.pipelines.registry import StepContext
from mimir_tui.pipelines.spec import parse_text

ATTACK = "hello; touch owned; echo $(id)"


def spec_of(text: str, source: str = "test.yaml"):
    specs, issues = parse_text(textwrap.dedent(text).lstrip("\n"), source)
    assert not issues, [str(i) for i in issues]
    return specs[0]


def injected(folder: Path, command: str, *extra: str) -> str:
    """A pipeline: Input.file reads ``folder/input.txt`` into ``f``; System.command runs
    ``command`` in ``folder``."""
    lines = "".join(f"\n              {line}" for line in extra)
    return f"""
        name: inject
        steps:
          - name: read
            plugin: Input.file
            config: {{path: "{folder / "input.txt"}", format: text}}
            output: f
          - name: run
            plugin: System.command
            config:
              shell: true
              cwd: "{folder}"
              command: {json.dumps(command)}{lines}
            output: out
    """


@pytest.fixture
def attack_file(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "input.txt").write_text(ATTACK)
    return folder


@pytest.mark.parametrize(
    "command",
    [
        "echo {{ f.data }}",
        "echo '{{ f.data }}'",  # quoting in the template was escaped by the data
        'echo "{{ f.data }}"',
        "echo {{ f.data }} && echo done",
    ],
    ids=["bare", "single-quoted", "double-quoted", "in-a-longer-command"],
)
def test_file_content_with_shell_code_is_echoed_not_run(runner, attack_file, command):
    """The attack of the issue: the file holds ``hello; touch owned; echo $(id)``; it reached
    the shell through ``{{ f.data }}`` and ran."""
    record = runner.run(spec_of(injected(attack_file, command)))
    assert record.status == "success", record.error
    assert not (attack_file / "owned").exists()
    stdout = record.context["out"]["stdout"]
    assert stdout.splitlines()[0] == ATTACK  # the literal text, $(id) not run


def test_a_command_that_is_one_template_is_one_word(runner, attack_file):
    """``command: "{{ f.data }}"``: the whole value is one word, a program name that does not
    exist: nothing of it runs."""
    record = runner.run(spec_of(injected(attack_file, "{{ f.data }}")))
    assert record.status == "failed"
    assert "exited with 127" in (record.error or "")
    assert not (attack_file / "owned").exists()


def test_environment_values_are_quoted_too(runner, attack_file, monkeypatch):
    monkeypatch.setenv("MIMIR_TEST_SUBJECT", ATTACK)
    record = runner.run(spec_of(injected(attack_file, "echo ${MIMIR_TEST_SUBJECT}")))
    assert record.status == "success", record.error
    assert not (attack_file / "owned").exists()
    assert record.context["out"]["stdout"] == ATTACK + "\n"


def test_the_argv_form_stays_safe_and_unquoted(runner, attack_file):
    text = injected(attack_file, "unused").replace("shell: true", "shell: false")
    text = text.replace('command: "unused"', 'command: ["echo", "{{ f.data }}", "${MIMIR_TEST_UNSET:-a b}"]')
    record = runner.run(spec_of(text))
    assert record.status == "success", record.error
    assert not (attack_file / "owned").exists()
    assert record.context["out"]["stdout"] == ATTACK + " a b\n"  # argv words are passed as they are


def test_raw_templates_is_the_explicit_opt_out(runner, attack_file):
    """A pipeline that builds shell code from values it trusts says so; then the value runs."""
    (attack_file / "input.txt").write_text("echo one; touch made-by-raw")
    record = runner.run(spec_of(injected(attack_file, "{{ f.data }}", "raw_templates: true")))
    assert record.status == "success", record.error
    assert (attack_file / "made-by-raw").exists()
    assert record.context["out"]["stdout"] == "one\n"


def test_expand_hands_each_value_and_the_text_before_it_to_quote():
    scope = {"a": {"x": "it's; rm -rf /"}, "n": None, "l": [1, 2]}
    seen: list[tuple[str, str]] = []

    def quote(value: str, before: str) -> str:
        seen.append((value, before))
        return f"<{len(seen)}>"

    text = "run {{ a.x }} '{{ n }}' ${V} $${literal} \"{{ l }}"
    assert templates.expand_string(text, scope, {"V": "$(id)"}, quote) == "run <1> '<2>' <3> ${literal} \"<4>"
    assert seen == [
        ("it's; rm -rf /", "run "),
        ("", "run  '"),
        ("$(id)", "run  '' "),
        ("[1, 2]", "run  ''  ${literal} \""),
    ]
    assert templates.expand_string("{{ l }}", scope, {}, quote) == "<5>"  # one template: quoted too
    assert templates.expand_string("{{ l }}", scope, {}) == [1, 2]  # no quote: the raw value


@pytest.mark.parametrize(
    "before, context",
    [
        ("echo ", ""),
        ("echo '", "'"),
        ('echo "', '"'),
        ("echo 'a' \"b\" ", ""),
        ('echo "it\'s \\" x', '"'),  # a single quote inside double quotes opens nothing
        ("echo \\' ", ""),  # an escaped quote
        ("# don't\necho ", ""),  # a quote in a comment
        ("echo a#'", "'"),  # "#" inside a word is no comment
    ],
)
def test_shell_context(before, context):
    assert shell_context(before) == context


@pytest.mark.parametrize(
    "command, shown",
    [
        ("printf %s {{ v }}", True),
        ("printf %s '{{ v }}'", True),
        ('printf %s "{{ v }}"', True),
        ("printf %s x{{ v }}x", True),
        ("# it's a comment\nprintf %s {{ v }}", True),
        ("cat <<EOF\n{{ v }}\nEOF", True),  # a here-document: expanded (its quotes show), not run
        ("printf %s \"$(printf %s '{{ v }}')\"", False),  # nesting the context check does not follow
    ],
)
def test_no_value_runs_wherever_the_template_stands(tmp_path, command, shown):
    """Every quoting context, those the context check knows and those it does not: the value
    is never code (where the check cannot tell, the reference may show instead)."""
    value = "a'b\"c; touch owned; `touch owned2` $(touch owned3) \\"
    work = tmp_path / "work"
    work.mkdir()
    config = Command.expand_config({"shell": True, "cwd": str(work), "command": command}, {"v": value}, {})
    ctx = StepContext(execution_id="x", pipeline="p", step_name="s", context={})
    result = Command().execute(Command.Config.model_validate(config), ctx)
    assert list(work.iterdir()) == []
    assert (value in result["stdout"]) is shown


# -- pipelines validate ----------------------------------------------------------------------


def validate(capsys, path: Path, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli_main(["pipelines", "validate", str(path), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_validate_warns_about_shell_mode_with_templates(tmp_path, capsys):
    folder = tmp_path / "work"
    path = tmp_path / "shell.yaml"
    path.write_text(textwrap.dedent(injected(folder, "echo {{ f.data }}")).lstrip("\n"))
    code, out, err = validate(capsys, path)
    assert code == 0
    assert f"ok  {path}: 1 pipeline(s): inject" in out
    assert err.splitlines() == [
        f"warning: {path}:12: pipeline 'inject', step 'run', key 'config.command': shell: true with templates: "
        "each template value reaches the shell as one quoted word, never as code; an argv list needs no shell"
    ]
    code, out, _ = validate(capsys, path, "--json")
    report = json.loads(out)[0]
    assert code == 0 and report["ok"] is True and report["errors"] == []
    assert [w["key"] for w in report["warnings"]] == ["config.command"]

    path.write_text(textwrap.dedent(injected(folder, "echo {{ f.data }}", "raw_templates: true")).lstrip("\n"))
    code, _, err = validate(capsys, path)
    assert code == 0
    assert len(err.splitlines()) == 1 and "raw_templates: true: template values reach the shell unquoted" in err


def test_validate_does_not_warn_without_templates_or_without_a_shell(tmp_path, capsys):
    plain = tmp_path / "plain.yaml"
    plain.write_text(textwrap.dedent(injected(tmp_path, "echo hello")).lstrip("\n"))
    argv = tmp_path / "argv.yaml"
    text = injected(tmp_path, "unused").replace("shell: true", "shell: false")
    argv.write_text(textwrap.dedent(text.replace('command: "unused"', 'command: [echo, "{{ f.data }}"]')).lstrip())
    for path in (plain, argv):
        code, _, err = validate(capsys, path)
        assert (code, err) == (0, ""), path
