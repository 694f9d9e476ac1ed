"""Data_Processing.transform on real-shaped data."""

from __future__ import annotations

import copy

import pytest
from pydantic import ValidationError

from mimir_tui.pipelines.plugins.transform import Transform
from mimir_tui.pipelines.registry import PluginError

# What an Input.api step leaves in the context for a typical JSON API.
API_RESULT = {
    "url": "http://127.0.0.1/api/repos",
    "status_code": 200,
    "headers": {"content-type": "application/json"},
    "timestamp": "2025-06-01T00:00:00+00:00",
    "body": {
        "total": 5,
        "items": [
            {
                "id": 1,
                "name": "mimir",
                "owner": {"login": "ada"},
                "stars": 120,
                "language": "Python",
                "topics": ["ai", "cron"],
                "archived": False,
            },
            {
                "id": 2,
                "name": "odin",
                "owner": {"login": "linus"},
                "stars": "45",
                "language": "Go",
                "topics": ["cli"],
                "archived": False,
            },
            {
                "id": 3,
                "name": "freya",
                "owner": {"login": "ada"},
                "stars": 8,
                "language": "Python",
                "topics": [],
                "archived": True,
            },
            {
                "id": 4,
                "name": "thor",
                "owner": {"login": "grace"},
                "stars": 300,
                "language": None,
                "topics": ["ai"],
                "archived": False,
            },
            {
                "id": 5,
                "name": "loki",
                "owner": {"login": "linus"},
                "stars": 45,
                "language": "Go",
                "topics": ["ai", "chaos"],
                "archived": False,
            },
        ],
    },
}


@pytest.fixture
def context():
    return {"api_result": copy.deepcopy(API_RESULT), "text": "alpha beta  gamma\ndelta"}


async def test_api_response_to_records(run_plugin, context):
    records = await run_plugin(
        Transform,
        {
            "input": "api_result.body.items",
            "operations": [
                {"operation": "filter", "field": "archived", "op": "eq", "value": False},
                {"operation": "select", "fields": {"repo": "name", "owner": "owner.login", "stars": "stars"}},
                {"operation": "sort", "by": "stars", "reverse": True},
                {"operation": "limit", "limit": 3},
            ],
        },
        context,
    )
    assert records == [
        {"repo": "thor", "owner": "grace", "stars": 300},
        {"repo": "mimir", "owner": "ada", "stars": 120},
        {"repo": "odin", "owner": "linus", "stars": "45"},  # "45" sorts as a number
    ]
    assert context == {"api_result": API_RESULT, "text": context["text"]}  # the context is not changed


async def test_select_list_of_paths_and_single_dict(run_plugin, context):
    out = await run_plugin(
        Transform, {"operation": "select", "input": "api_result.body.items", "fields": ["name", "owner.login"]}, context
    )
    assert out[0] == {"name": "mimir", "owner.login": "ada"}
    one = await run_plugin(
        Transform, {"operation": "select", "input": "api_result", "fields": ["status_code", "body.total"]}, context
    )
    assert one == {"status_code": 200, "body.total": 5}


async def test_select_unknown_field_names_it(run_plugin, context):
    with pytest.raises(PluginError, match=r"select: field 'nmae' is not in any record \(fields: id, name, owner"):
        await run_plugin(
            Transform, {"operation": "select", "input": "api_result.body.items", "fields": ["nmae"]}, context
        )


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("eq", "Python", [1, 3]),
        ("==", "Python", [1, 3]),
        ("ne", "Python", [2, 4, 5]),
        ("gt", 45, [1, 4]),
        ("ge", 45, [1, 2, 4, 5]),
        ("lt", "45", [3]),
        ("le", 45, [2, 3, 5]),
        ("in", ["Go", "Rust"], [2, 5]),
        ("not_in", ["Go"], [1, 3, 4]),
        ("regex", "^(mi|lo)", [1, 5]),
        ("startswith", "fr", [3]),
        ("endswith", "r", [1, 4]),
        ("lt", "100", [2, 3, 5]),
    ],
)
async def test_filter_ops(run_plugin, context, op, value, expected):
    field = {
        "gt": "stars",
        "ge": "stars",
        "lt": "stars",
        "le": "stars",
        "regex": "name",
        "startswith": "name",
        "endswith": "name",
    }.get(op, "language")
    out = await run_plugin(
        Transform,
        {"operation": "filter", "input": "api_result.body.items", "field": field, "op": op, "value": value},
        context,
    )
    assert [r["id"] for r in out] == expected


async def test_filter_contains_exists_and_ignore_case(run_plugin, context):
    items = "api_result.body.items"
    out = await run_plugin(
        Transform, {"operation": "filter", "input": items, "field": "topics", "op": "contains", "value": "ai"}, context
    )
    assert [r["id"] for r in out] == [1, 4, 5]
    out = await run_plugin(
        Transform, {"operation": "filter", "input": items, "field": "language", "op": "exists"}, context
    )
    assert [r["id"] for r in out] == [1, 2, 3, 5]
    out = await run_plugin(
        Transform, {"operation": "filter", "input": items, "field": "language"}, context
    )  # no op, no value: exists
    assert [r["id"] for r in out] == [1, 2, 3, 5]
    out = await run_plugin(
        Transform,
        {"operation": "filter", "input": items, "field": "owner.login", "value": "ADA", "ignore_case": True},
        context,
    )
    assert [r["id"] for r in out] == [1, 3]
    out = await run_plugin(
        Transform,
        {"operation": "filter", "input": items, "field": "name", "op": "contains", "value": "OR", "ignore_case": True},
        context,
    )
    assert [r["id"] for r in out] == [4]


async def test_filter_errors(run_plugin, context):
    with pytest.raises(ValidationError, match="'eq', 'ne'"):
        Transform.Config.model_validate({"operation": "filter", "field": "a", "op": "approx", "value": 1})
    with pytest.raises(PluginError, match=r"filter: field 'lang' is not in any record"):
        await run_plugin(
            Transform,
            {"operation": "filter", "input": "api_result.body.items", "field": "lang", "value": "Go"},
            context,
        )
    with pytest.raises(PluginError, match=r"filter expects a list, got object.*lists under: items.*input: <key>.items"):
        await run_plugin(
            Transform, {"operation": "filter", "input": "api_result.body", "field": "x", "value": 1}, context
        )
    with pytest.raises(ValidationError, match="needs 'field'"):
        Transform.Config.model_validate({"operation": "filter", "value": 1})
    with pytest.raises(ValidationError, match="needs 'value' to be a list"):
        Transform.Config.model_validate({"operation": "filter", "field": "a", "op": "in", "value": 3})


async def test_map_and_rename(run_plugin, context):
    out = await run_plugin(
        Transform,
        {
            "operation": "rename",
            "input": "api_result.body.items",
            "mapping": {"name": "repo", "owner.login": "owner_login"},
        },
        context,
    )
    assert out[0]["repo"] == "mimir" and "name" not in out[0] and out[0]["owner_login"] == "ada"
    assert list(out[0])[:2] == ["id", "repo"]  # renamed keys stay in place
    out = await run_plugin(
        Transform, {"operation": "map", "data": {"a": 1, "b": 2}, "mapping": {"a": "x"}, "keep": False}, context
    )
    assert out == {"x": 1}
    with pytest.raises(PluginError, match="key 'nope' is not in any record"):
        await run_plugin(Transform, {"operation": "map", "data": [{"a": 1}], "mapping": {"nope": "x"}}, context)


async def test_split_and_join(run_plugin, context):
    assert await run_plugin(Transform, {"operation": "split", "input": "text"}, context) == [
        "alpha",
        "beta",
        "gamma",
        "delta",
    ]
    assert await run_plugin(Transform, {"operation": "split", "input": "text", "separator": "\n"}, context) == [
        "alpha beta  gamma",
        "delta",
    ]
    assert (
        await run_plugin(Transform, {"operation": "join", "data": ["a", 1, None, {"k": 2}], "separator": "|"}, context)
        == 'a|1||{"k": 2}'
    )
    assert (
        await run_plugin(Transform, {"operation": "join", "input": "api_result.body.items", "field": "name"}, context)
        == "mimir, odin, freya, thor, loki"
    )
    records = await run_plugin(
        Transform,
        {
            "operation": "split",
            "data": [{"tags": "a,b"}, {"tags": "c"}],
            "field": "tags",
            "separator": ",",
            "as": "tag_list",
        },
        context,
    )
    assert records == [{"tags": "a,b", "tag_list": ["a", "b"]}, {"tags": "c", "tag_list": ["c"]}]
    with pytest.raises(PluginError, match="split works on text"):
        await run_plugin(Transform, {"operation": "split", "input": "api_result.body"}, context)


async def test_regex_extract(run_plugin):
    log = "2025-06-01 ERROR disk full\n2025-06-01 INFO ok\n2025-06-02 ERROR cpu hot"
    assert await run_plugin(Transform, {"operation": "regex", "data": log, "pattern": r"ERROR (.+)"}) == [
        "disk full",
        "cpu hot",
    ]
    assert (
        await run_plugin(Transform, {"operation": "extract", "data": log, "pattern": r"ERROR (.+)", "all": False})
        == "disk full"
    )
    assert await run_plugin(Transform, {"operation": "extract", "data": log, "pattern": r"xyz", "all": False}) is None
    named = await run_plugin(
        Transform, {"operation": "regex", "data": log, "pattern": r"(?P<day>\S+) (?P<level>[A-Z]+)"}
    )
    assert named[0] == {"day": "2025-06-01", "level": "ERROR"} and len(named) == 3
    groups = await run_plugin(
        Transform, {"operation": "regex", "data": log, "pattern": r"(\S+) (ERROR) (.+)", "groups": [1, 3]}
    )
    assert groups == [["2025-06-01", "disk full"], ["2025-06-02", "cpu hot"]]
    assert await run_plugin(Transform, {"operation": "regex", "data": ["a1b22", "c333"], "pattern": r"\d+"}) == [
        ["1", "22"],
        ["333"],
    ]
    assert await run_plugin(
        Transform, {"operation": "regex", "data": "Mimir mimir", "pattern": "MIMIR", "ignore_case": True}
    ) == ["Mimir", "mimir"]
    records = await run_plugin(
        Transform,
        {
            "operation": "extract",
            "data": [{"title": "v1.2 released"}, {"title": "news"}],
            "field": "title",
            "pattern": r"v(\d+\.\d+)",
            "all": False,
            "target": "version",
        },
    )
    assert records == [{"title": "v1.2 released", "version": "1.2"}, {"title": "news", "version": None}]
    with pytest.raises(ValidationError, match="group 2 is not in pattern"):
        Transform.Config.model_validate({"operation": "regex", "pattern": "(a)", "group": 2})
    with pytest.raises(ValidationError, match="invalid regular expression"):
        Transform.Config.model_validate({"operation": "regex", "pattern": "(a"})


async def test_replace_and_case(run_plugin):
    assert (
        await run_plugin(Transform, {"operation": "replace", "data": "a-b_c", "pattern": "[-_]", "replacement": " "})
        == "a b c"
    )
    assert await run_plugin(Transform, {"operation": "uppercase", "data": ["a", "b"]}) == ["A", "B"]
    assert await run_plugin(Transform, {"operation": "trim", "data": "  x  "}) == "x"
    assert await run_plugin(Transform, {"operation": "lower", "data": [{"n": "ABC"}], "field": "n"}) == [{"n": "abc"}]


async def test_count_and_aggregate(run_plugin, context):
    items = "api_result.body.items"
    assert await run_plugin(Transform, {"operation": "count", "input": items}, context) == 5
    assert await run_plugin(Transform, {"operation": "count", "input": items, "field": "language"}, context) == 4
    assert await run_plugin(Transform, {"operation": "count", "input": "api_result.body"}, context) == 2
    by_lang = await run_plugin(Transform, {"operation": "count", "input": items, "group_by": "language"}, context)
    assert by_lang == [
        {"language": "Python", "count": 2},
        {"language": "Go", "count": 2},
        {"language": None, "count": 1},
    ]
    assert (
        await run_plugin(
            Transform, {"operation": "aggregate", "input": items, "function": "sum", "field": "stars"}, context
        )
        == 518
    )
    assert await run_plugin(
        Transform, {"operation": "aggregate", "input": items, "function": "avg", "field": "stars"}, context
    ) == pytest.approx(103.6)
    assert (
        await run_plugin(
            Transform, {"operation": "aggregate", "input": items, "function": "max", "field": "stars"}, context
        )
        == 300
    )
    assert (
        await run_plugin(
            Transform, {"operation": "aggregate", "input": items, "function": "min", "field": "name"}, context
        )
        == "freya"
    )
    grouped = await run_plugin(
        Transform,
        {"operation": "aggregate", "input": items, "function": "sum", "field": "stars", "group_by": "owner.login"},
        context,
    )
    assert grouped == [
        {"owner.login": "ada", "count": 2, "sum": 128},
        {"owner.login": "linus", "count": 2, "sum": 90},
        {"owner.login": "grace", "count": 1, "sum": 300},
    ]
    with pytest.raises(PluginError, match="field 'name' has a value that is not a number: 'mimir'"):
        await run_plugin(
            Transform, {"operation": "aggregate", "input": items, "function": "sum", "field": "name"}, context
        )
    with pytest.raises(ValidationError, match="needs 'function'"):
        Transform.Config.model_validate({"operation": "aggregate", "field": "x"})


async def test_sort_limit_unique_flatten(run_plugin):
    rows = [{"n": "b", "v": 2}, {"n": "a"}, {"n": "c", "v": 10}, {"n": "d", "v": None}]
    out = await run_plugin(Transform, {"operation": "sort", "data": rows, "by": "v"})
    assert [r["n"] for r in out] == ["b", "c", "a", "d"]  # missing values last
    out = await run_plugin(Transform, {"operation": "sort", "data": rows, "field": "v", "reverse": True})
    assert [r["n"] for r in out] == ["c", "b", "a", "d"]  # still last when reversed
    assert await run_plugin(Transform, {"operation": "sort", "data": [3, 1, 2]}) == [1, 2, 3]
    assert await run_plugin(Transform, {"operation": "limit", "data": [1, 2, 3, 4], "limit": 2, "offset": 1}) == [2, 3]
    assert await run_plugin(Transform, {"operation": "unique", "data": [1, 2, 1, 3, 2]}) == [1, 2, 3]
    assert await run_plugin(Transform, {"operation": "unique", "data": rows + [{"n": "b", "v": 5}], "by": "n"}) == rows
    assert await run_plugin(Transform, {"operation": "flatten", "data": [[1, 2], [3], 4]}) == [1, 2, 3, 4]
    with pytest.raises(PluginError, match="sort: by 'weight' is not in any record"):
        await run_plugin(Transform, {"operation": "sort", "data": rows, "by": "weight"})


async def test_input_errors(run_plugin, context):
    with pytest.raises(PluginError, match=r"input 'nothing': no such key in the context \(keys: api_result, text\)"):
        await run_plugin(Transform, {"operation": "count", "input": "nothing"}, context)
    with pytest.raises(PluginError, match="input 'api_result.body.nope': path not found in 'api_result'"):
        await run_plugin(Transform, {"operation": "count", "input": "api_result.body.nope"}, context)
    with pytest.raises(PluginError, match="give either 'input'"):
        await run_plugin(Transform, {"operation": "count"}, context)
    # The original's ".key.path" spelling works for input too.
    assert await run_plugin(Transform, {"operation": "count", "input": ".api_result.body.items"}, context) == 5
    assert await run_plugin(Transform, {"operation": "count", "input": "api_result.body.items.0.topics"}, context) == 2


def test_operations_config_errors():
    with pytest.raises(ValidationError, match="give 'operation'"):
        Transform.Config.model_validate({"data": []})
    with pytest.raises(ValidationError, match="with 'operations', put field inside an operation"):
        Transform.Config.model_validate({"data": [], "field": "x", "operations": [{"operation": "count"}]})
    with pytest.raises(ValidationError, match=r"separator does not apply to operation 'sort'"):
        Transform.Config.model_validate({"operation": "sort", "separator": ","})
    with pytest.raises(ValidationError, match=r"operations\.1"):
        Transform.Config.model_validate({"operations": [{"operation": "count"}, {"operation": "limit"}]})
    with pytest.raises(ValidationError, match="'input' or 'data', not both"):
        Transform.Config.model_validate({"operation": "count", "input": "a", "data": [1]})


async def test_error_in_a_sequence_names_the_operation(run_plugin):
    with pytest.raises(PluginError, match=r"operations\[1\] \(select\): select: field 'x'"):
        await run_plugin(
            Transform,
            {
                "data": [{"a": 1}],
                "operations": [{"operation": "limit", "limit": 5}, {"operation": "select", "fields": ["x"]}],
            },
        )


async def test_csv_text_numbers_compare_as_numbers(run_plugin):
    rows = [{"n": "120"}, {"n": "45"}, {"n": "9"}]
    out = await run_plugin(Transform, {"operation": "filter", "data": rows, "field": "n", "op": "gt", "value": "50"})
    assert out == [{"n": "120"}]
    out = await run_plugin(Transform, {"operation": "filter", "data": rows, "field": "n", "op": ">=", "value": 45})
    assert out == [{"n": "120"}, {"n": "45"}]
    # Equality of two texts stays textual: "007" is not "7".
    assert (
        await run_plugin(Transform, {"operation": "filter", "data": [{"z": "007"}], "field": "z", "value": "7"}) == []
    )
    assert await run_plugin(Transform, {"operation": "sort", "data": rows, "by": "n"}) == [
        {"n": "9"},
        {"n": "45"},
        {"n": "120"},
    ]
    assert await run_plugin(Transform, {"operation": "aggregate", "data": rows, "function": "sum", "field": "n"}) == 174


async def test_sums_of_decimals_are_exact(run_plugin):
    rows = [{"amount": "0.10"}, {"amount": 0.2}, {"amount": "1250.00"}]
    assert (
        await run_plugin(Transform, {"operation": "aggregate", "data": rows, "function": "sum", "field": "amount"})
        == 1250.3
    )
    assert (
        await run_plugin(Transform, {"operation": "aggregate", "data": rows[:2], "function": "avg", "field": "amount"})
        == 0.15
    )
    assert await run_plugin(Transform, {"operation": "aggregate", "data": [], "function": "sum", "field": "x"}) == 0
