"""``Input.file``: read text, JSON, JSON Lines, YAML or CSV from a path."""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Literal

import yaml
from pydantic import AliasChoices, Field, field_validator

from ...safeio import safe_load
from ..policy import Policy
from ..registry import Plugin, PluginConfig, PluginError, StepContext

FORMATS_BY_SUFFIX = {
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".csv": "csv",
    ".tsv": "csv",
}


class FileConfig(PluginConfig):
    path: str = Field(
        validation_alias=AliasChoices("path", "file", "file_path", "filename"),
        description="the file to read (relative: to the run's working folder)",
    )
    format: Literal["auto", "text", "json", "jsonl", "yaml", "csv"] = Field(
        "auto", description="auto picks by extension (.json .jsonl .yaml/.yml .csv/.tsv; anything else is text)"
    )
    encoding: str = "utf-8"
    delimiter: str | None = Field(None, description="CSV delimiter (default ',' or a tab for .tsv)")
    header: bool = Field(True, description="CSV: the first row names the columns (rows become dicts); false: lists")
    max_bytes: int | None = Field(
        None, gt=0, description="refuse files larger than this (at most plugins.max_file_bytes)"
    )

    @field_validator("format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            return {"yml": "yaml", "txt": "text", "ndjson": "jsonl", "tsv": "csv"}.get(value, value)
        return value

    @field_validator("delimiter")
    @classmethod
    def _delimiter(cls, value: str | None) -> str | None:
        if value is not None:
            value = {"\\t": "\t", "tab": "\t"}.get(value, value)
            if len(value) != 1:
                raise ValueError("the CSV delimiter must be one character")
        return value


def parse_text(text: str, fmt: str, *, source: str, delimiter: str = ",", header: bool = True) -> Any:
    if fmt == "text":
        return text
    if fmt == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise PluginError(f"{source}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    if fmt == "jsonl":
        records = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise PluginError(f"{source}:{number}:{exc.colno}: invalid JSON line: {exc.msg}") from None
        return records
    if fmt == "yaml":
        try:
            return safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise PluginError(f"{source}{where}: invalid YAML: {problem}") from None
    if fmt == "csv":
        try:
            if header:
                reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
                rows = [dict(row) for row in reader]
                # Short rows get None (DictReader's default); extra cells land under key None.
                for row in rows:
                    if None in row:
                        row["_extra"] = row.pop(None)
                return rows
            return [row for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)]
        except csv.Error as exc:
            raise PluginError(f"{source}: invalid CSV: {exc}") from None
    raise PluginError(f"unknown format {fmt!r}")  # pragma: no cover - Literal prevents it


class FileInput(Plugin):
    type = "Input"
    name = "file"
    description = (
        "Read a file: text, JSON, JSON Lines, YAML or CSV (rows as dicts). Result {path, format, bytes, data}."
    )
    Config = FileConfig

    def execute(self, config: FileConfig, ctx: StepContext) -> dict[str, Any]:
        policy = Policy.of(ctx.settings, ctx.base_dir)
        path = policy.readable(config.path)
        fmt: str = config.format
        if fmt == "auto":
            fmt = FORMATS_BY_SUFFIX.get(path.suffix.lower(), "text")
        delimiter = config.delimiter or ("\t" if path.suffix.lower() == ".tsv" else ",")
        raw = policy.read_bytes(path, config.max_bytes)
        try:
            text = raw.decode(config.encoding)
        except LookupError:
            raise PluginError(f"unknown encoding {config.encoding!r}") from None
        except UnicodeDecodeError as exc:
            raise PluginError(f"{path} is not valid {config.encoding} (byte {exc.start}); set 'encoding'") from None
        if text.startswith("\ufeff"):  # a BOM, as spreadsheet programs write
            text = text[1:]
        data = parse_text(text, fmt, source=str(path), delimiter=delimiter, header=config.header)
        ctx.log("DEBUG", f"read {path} ({len(raw)} bytes, {fmt})")
        return {"path": str(path), "format": fmt, "bytes": len(raw), "data": data}
