"""Templates in step configs: both spellings, raw values, env vars and their defaults."""

from __future__ import annotations

import pytest

from mimir_tui.pipelines import templates
from mimir_tui.pipelines.templates import MissingVariable, TemplateError, expand

SCOPE = {
    "api_result": {"status_code": 200, "body": {"items": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}},
    "initial_content": {"content": "Quantum computers use qubits."},
    "count": 3,
    "flag": True,
    "nothing": None,
}


def test_a_whole_string_template_yields_the_raw_value():
    items = expand("{{ api_result.body.items }}", SCOPE, {})
    assert items == SCOPE["api_result"]["body"]["items"]
    assert isinstance(items, list)
    assert expand("{{count}}", SCOPE, {}) == 3
    assert expand("  {{ flag }}  ".strip(), SCOPE, {}) is True
    assert expand("{{ nothing }}", SCOPE, {}) is None


def test_the_originals_dot_spelling():
    assert expand("{{.initial_content.content}}", SCOPE, {}) == "Quantum computers use qubits."
    assert expand("Please summarize: {{.initial_content.content}}", SCOPE, {}) == (
        "Please summarize: Quantum computers use qubits."
    )


def test_list_indexes_dotted_and_bracketed():
    assert expand("{{ api_result.body.items.1.name }}", SCOPE, {}) == "b"
    assert expand("{{ api_result.body.items[0].id }}", SCOPE, {}) == 1
    assert expand("{{ api_result.body.items.-1.id }}", SCOPE, {}) == 2


def test_embedded_templates_are_stringified():
    text = expand("got {{ count }} of {{ api_result.body.items.0 }}; ok={{ flag }}; none=[{{ nothing }}]", SCOPE, {})
    assert text == 'got 3 of {"id": 1, "name": "a"}; ok=true; none=[]'


def test_expansion_recurses_through_dicts_and_lists_and_leaves_the_input_alone():
    config = {
        "messages": [{"role": "user", "content": "Refine: {{.initial_content.content}}"}],
        "data": "{{ api_result.body.items }}",
        "n": 5,
    }
    out = expand(config, SCOPE, {})
    assert out["messages"][0]["content"] == "Refine: Quantum computers use qubits."
    assert out["data"] == SCOPE["api_result"]["body"]["items"]
    assert out["n"] == 5
    assert config["data"] == "{{ api_result.body.items }}"


def test_env_vars_with_and_without_defaults():
    env = {"TOKEN": "abc", "EMPTY": ""}
    assert expand("${TOKEN}", SCOPE, env) == "abc"
    assert expand("Bearer ${TOKEN}", SCOPE, env) == "Bearer abc"
    assert expand("${MISSING:-fallback}", SCOPE, env) == "fallback"
    assert expand("${EMPTY:-fallback}", SCOPE, env) == "fallback"
    assert expand("${EMPTY-fallback}", SCOPE, env) == ""
    assert expand("${MISSING-fallback}", SCOPE, env) == "fallback"
    assert expand("$${TOKEN}", SCOPE, env) == "${TOKEN}"
    assert expand("${URL:-http://127.0.0.1:8000/x}", SCOPE, env) == "http://127.0.0.1:8000/x"


def test_a_missing_env_var_names_the_variable():
    with pytest.raises(MissingVariable) as exc:
        expand({"api_key": "${OPENAI_API_KEY}"}, SCOPE, {})
    assert exc.value.name == "OPENAI_API_KEY"
    assert "OPENAI_API_KEY" in str(exc.value)


def test_substituted_values_are_not_expanded_again():
    scope = {"evil": {"text": "{{ count }} ${HOME}"}}
    assert expand("x {{ evil.text }}", scope, {}) == "x {{ count }} ${HOME}"


def test_missing_paths_name_what_is_missing():
    with pytest.raises(TemplateError, match=r"no output named 'nope'"):
        expand("{{ nope.x }}", SCOPE, {})
    with pytest.raises(TemplateError, match=r"api_result.body has no key 'missing'"):
        expand("{{ api_result.body.missing }}", SCOPE, {})
    with pytest.raises(TemplateError, match=r"index 9 out of range"):
        expand("{{ api_result.body.items.9 }}", SCOPE, {})


def test_referenced_outputs_and_syntax_checks():
    config = {"a": "{{ api_result.body }}", "b": ["x {{.summary.content}} {{ other[0] }}"], "c": "${KEY}"}
    assert templates.referenced_outputs(config) == {"api_result", "summary", "other"}
    assert templates.referenced_env(config) == {"KEY"}
    assert templates.has_template(config)
    assert not templates.has_template({"a": "plain", "b": "$${NOT}"})
    assert templates.check_syntax("{{ a b }}")
    assert templates.check_syntax("${1BAD}")
    assert templates.check_syntax("{{ }}")
    assert not templates.check_syntax("{{ a.b[0]['c d'] }} ${OK:-x}")
