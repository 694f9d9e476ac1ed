"""Pipeline files: the original's format read unchanged, and every validation error named by
file:line, pipeline, step and key."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mimir_tui.errors import BadInput
from mimir_tui.pipelines.spec import (
    PipelineError,
    PipelineSpec,
    load_file,
    parse_text,
    validate_files,
    validate_pipeline,
)

COMPAT = Path("/work/shared/compat/mimir-aip")
if not COMPAT.is_dir():  # CI lays shared/ beside the clone
    COMPAT = Path(__file__).resolve().parents[3] / "shared" / "compat" / "mimir-aip"
needs_compat = pytest.mark.skipif(not COMPAT.is_dir(), reason="shared/compat/mimir-aip is not beside the repository")


def issues_of(path: Path, registry) -> list[str]:
    return [str(i) for r in validate_files([path], registry) for i in r.issues]


# -- the format -----------------------------------------------------------------------------


def test_a_single_pipeline_and_a_pipelines_list(write_yaml, registry):
    single = write_yaml(
        "one.yaml",
        """
        name: single
        steps:
          - name: a
            plugin: Test.echo
            output: a
    """,
    )
    listed = write_yaml(
        "many.yaml",
        """
        pipelines:
          - name: first
            enabled: false
            description: "the first"
            steps: [{name: a, plugin: Test.echo, output: x}]
          - name: second
            timeout: 30
            steps: [{name: b, plugin: Test.echo, config: {value: 1}, output: y, timeout: 2.5}]
    """,
    )
    (spec,) = load_file(single, registry)
    assert spec.name == "single" and spec.enabled is True and spec.description == ""
    first, second = load_file(listed, registry)
    assert first.enabled is False and first.description == "the first"
    assert second.timeout == 30 and second.steps[0].timeout == 2.5 and second.steps[0].config == {"value": 1}
    assert first.line() == 2 and second.steps[0].line() == 8
    assert first.source_path == str(listed)


def test_spec_round_trips_through_the_database_json():
    specs, issues = parse_text(
        "name: p\nsteps:\n  - {name: a, plugin: Input.api, config: {url: 'http://x'}, output: r}\n"
    )
    assert not issues
    again = PipelineSpec.from_config(specs[0].to_json())
    assert again.model_dump() == specs[0].model_dump()
    assert again.checksum() == specs[0].checksum()
    assert json.loads(specs[0].to_json()) == {
        "name": "p",
        "steps": [{"name": "a", "plugin": "Input.api", "config": {"url": "http://x"}, "output": "r"}],
    }


@needs_compat
@pytest.mark.parametrize("name", ["test_pipeline.yaml", "llm_chain_example.yaml"])
def test_the_originals_files_validate_unchanged(name, tmp_path):
    from mimir_tui.pipelines.registry import default_registry

    copy = tmp_path / name
    shutil.copyfile(COMPAT / name, copy)
    reports = validate_files([copy], default_registry())
    assert [str(i) for r in reports for i in r.issues] == []
    assert copy.read_bytes() == (COMPAT / name).read_bytes()


@needs_compat
def test_storage_demo_validates(registry):
    assert issues_of(COMPAT / "storage_demo.yaml", registry) == []


# -- YAML errors ----------------------------------------------------------------------------


def test_a_yaml_error_gives_file_line_and_column(write_yaml, registry):
    path = write_yaml(
        "broken.yaml",
        """
        name: p
        steps:
          - name: a
            plugin: [Input.api
            output: r
    """,
    )
    (problem,) = issues_of(path, registry)
    assert problem.startswith(f"{path}:5:")
    assert problem.split(":")[2].isdigit()  # a column
    assert "invalid YAML" in problem
    with pytest.raises(PipelineError) as exc:
        load_file(path, registry)
    assert isinstance(exc.value, BadInput) and exc.value.exit_code == 2


def test_a_duplicate_yaml_key_is_an_error_at_its_line(write_yaml, registry):
    path = write_yaml(
        "dup.yaml",
        """
        name: p
        steps:
          - name: a
            plugin: Test.echo
            plugin: Test.boom
    """,
    )
    (problem,) = issues_of(path, registry)
    assert problem.startswith(f"{path}:5:") and "duplicate key 'plugin'" in problem


# -- validation errors ----------------------------------------------------------------------


def test_unknown_plugin_names_the_step_and_lists_known_ones(write_yaml, registry):
    path = write_yaml(
        "p.yaml",
        """
        name: p
        steps:
          - name: fetch
            plugin: Input.nope
    """,
    )
    (problem,) = issues_of(path, registry)
    assert problem.startswith(f"{path}:4: pipeline 'p', step 'fetch', key 'plugin': unknown plugin 'Input.nope'")
    assert "Input.api" in problem and "Output.json" in problem


def test_missing_and_unknown_and_mistyped_config_keys(write_yaml, registry):
    path = write_yaml(
        "p.yaml",
        """
        name: p
        steps:
          - name: fetch
            plugin: Input.api
            config:
              methd: GET
              timeout: soon
          - name: save
            plugin: Output.json
            config:
              pretty: true
    """,
    )
    problems = issues_of(path, registry)
    assert f"{path}:5: pipeline 'p', step 'fetch', key 'config.url': required key is missing" in problems
    assert any(p.startswith(f"{path}:6: pipeline 'p', step 'fetch', key 'config.methd': unknown key") for p in problems)
    assert any(p.startswith(f"{path}:7: pipeline 'p', step 'fetch', key 'config.timeout':") for p in problems)
    assert f"{path}:10: pipeline 'p', step 'save', key 'config.file': required key is missing" in problems


def test_templated_values_are_not_type_checked_but_keys_still_are(write_yaml, registry):
    path = write_yaml(
        "p.yaml",
        """
        name: p
        steps:
          - name: first
            plugin: Test.echo
            output: first
          - name: fetch
            plugin: Input.api
            config:
              url: "${API_URL}"
              timeout: "{{ first.count }}"
              headers: "{{ first.value }}"
              colour: red
    """,
    )
    problems = issues_of(path, registry)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}:12: pipeline 'p', step 'fetch', key 'config.colour': unknown key")


def test_a_template_must_refer_to_an_earlier_output(write_yaml, registry):
    path = write_yaml(
        "p.yaml",
        """
        name: p
        steps:
          - name: one
            plugin: Test.echo
            config:
              value: "{{ later.value }}"
            output: first
          - name: two
            plugin: Test.echo
            config:
              value: "x {{.first.value}} {{ first.count }}"
            output: later
          - name: three
            plugin: Output.json
            config: {file: out.json, input: "missing.body"}
    """,
    )
    problems = issues_of(path, registry)
    assert len(problems) == 2, problems
    assert problems[0].startswith(
        f"{path}:6: pipeline 'p', step 'one', key 'config.value': template {{{{ later.value }}}}"
    )
    assert "no earlier step produces (earlier outputs: none)" in problems[0]
    assert problems[1].startswith(
        f"{path}:15: pipeline 'p', step 'three', key 'config.input': refers to output 'missing'"
    )


def test_a_bad_template_is_an_error(write_yaml, registry):
    path = write_yaml(
        "p.yaml",
        """
        name: p
        steps:
          - name: one
            plugin: Test.echo
            config: {value: "{{ a b }}"}
    """,
    )
    (problem,) = issues_of(path, registry)
    assert problem.startswith(f"{path}:5: pipeline 'p', step 'one', key 'config.value': cannot parse template")


def test_env_vars_are_not_checked_against_the_environment(write_yaml, registry, monkeypatch):
    monkeypatch.delenv("SURELY_NOT_SET_ANYWHERE", raising=False)
    path = write_yaml(
        "p.yaml",
        """
        name: p
        steps:
          - {name: one, plugin: Test.echo, config: {api_key: "${SURELY_NOT_SET_ANYWHERE}"}}
    """,
    )
    assert issues_of(path, registry) == []


def test_duplicate_step_names(write_yaml, registry):
    path = write_yaml(
        "p.yaml",
        """
        name: p
        steps:
          - name: same
            plugin: Test.echo
          - name: same
            plugin: Test.echo
    """,
    )
    (problem,) = issues_of(path, registry)
    assert problem == f"{path}:5: pipeline 'p', step 'same': duplicate step name (first at line 3)"


def test_duplicate_pipeline_names_within_and_across_files(write_yaml, registry):
    a = write_yaml(
        "a.yaml",
        """
        pipelines:
          - name: twice
            steps: [{name: s, plugin: Test.echo}]
          - name: twice
            steps: [{name: s, plugin: Test.echo}]
    """,
    )
    b = write_yaml(
        "b.yaml",
        """
        name: twice
        steps: [{name: s, plugin: Test.echo}]
    """,
    )
    problems = issues_of(a.parent, registry)
    assert problems == [
        f"{a}:4: pipeline 'twice': duplicate pipeline name (already defined at {a}:2)",
        f"{b}:1: pipeline 'twice': duplicate pipeline name (already defined at {a}:2)",
    ]


def test_missing_name_and_missing_or_empty_steps(write_yaml, registry):
    path = write_yaml(
        "p.yaml",
        """
        pipelines:
          - description: nameless
            steps: [{name: s, plugin: Test.echo}]
          - name: stepless
          - name: empty
            steps: []
          - name: step without name
            steps:
              - plugin: Test.echo
    """,
    )
    problems = issues_of(path, registry)
    assert f"{path}:2: key 'name': the pipeline has no name" in problems
    assert f"{path}:4: pipeline 'stepless', key 'steps': has no steps (the 'steps' key is missing)" in problems
    assert f"{path}:6: pipeline 'empty', key 'steps': has no steps" in problems
    assert f"{path}:9: pipeline 'step without name', step '#1', key 'name': required key is missing" in problems


def test_a_malformed_plugin_name_and_an_unknown_step_key(write_yaml, registry):
    path = write_yaml(
        "p.yaml",
        """
        name: p
        steps:
          - name: s
            plugin: api
            outptu: x
    """,
    )
    problems = issues_of(path, registry)
    assert any(
        p.startswith(f"{path}:4: pipeline 'p', step 's', key 'plugin': plugin must be written") for p in problems
    )
    assert f"{path}:5: pipeline 'p', step 's', key 'outptu': unknown key" in problems


def test_an_empty_file_and_a_missing_file(write_yaml, registry, tmp_path):
    empty = write_yaml("empty.yaml", "# nothing here\n")
    assert issues_of(empty, registry) == [f"{empty}:1: no pipeline in this file"]
    missing = tmp_path / "nope.yaml"
    (problem,) = issues_of(missing, registry)
    assert problem.startswith(f"{missing}: cannot read")


def test_validate_pipeline_from_the_database_has_no_lines(registry):
    spec = PipelineSpec.model_validate({"name": "db", "steps": [{"name": "s", "plugin": "Nope.x"}]})
    (issue,) = validate_pipeline(spec, registry)
    assert str(issue).startswith("pipeline 'db', step 's', key 'plugin': unknown plugin 'Nope.x'")
