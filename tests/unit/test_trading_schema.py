"""The published JSON Schema says what the decoder accepts: same types, fields, required fields, enums."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import msgspec
import pytest

from exporter.trading import tracker as trading

SCHEMA = json.loads((Path(trading.__file__).parent / "schemas" / "trading-event.schema.json").read_text())


@pytest.mark.parametrize("name", trading.EVENT_TYPES)
def test_schema_matches_the_event_struct(name):
    cls = trading.EVENT_CLASSES[name]
    definition = SCHEMA["$defs"][name]
    fields = {f.name: f for f in msgspec.structs.fields(cls)}
    assert set(definition["properties"]) == {"type", *fields}
    assert definition["properties"]["type"] == {"const": name}
    required = {"type", *(n for n, f in fields.items() if f.required)}
    assert set(definition["required"]) == required
    for field_name, f in fields.items():
        if typing.get_origin(f.type) is typing.Literal:
            assert set(definition["properties"][field_name]["enum"]) == set(typing.get_args(f.type))


def test_schema_lists_every_type_once():
    refs = [item["$ref"].rsplit("/", 1)[1] for item in SCHEMA["oneOf"]]
    assert sorted(refs) == sorted(trading.EVENT_TYPES)


def test_documented_examples_decode():
    """Every JSON example in docs/trading-events.md is accepted by the decoder."""
    doc = (Path(trading.__file__).resolve().parents[2] / "docs" / "trading-events.md").read_text()
    blocks = [b.split("```", 1)[0] for b in doc.split("```json\n")[1:]]
    decoder, examples = json.JSONDecoder(), []
    for block in blocks:  # one or more objects per block, each possibly over several lines
        position = 0
        while block[position:].strip():
            position += len(block[position:]) - len(block[position:].lstrip())
            example, position = decoder.raw_decode(block, position)
            examples.append(example)
    assert {e["type"] for e in examples} == set(trading.EVENT_TYPES)
    for example in examples:
        event = trading.decode_event(json.dumps(example).encode())
        assert trading.check_event(event) is None, example
