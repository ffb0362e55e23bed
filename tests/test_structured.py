"""Reading replies in the shapes models write them: the examples found, what was
mended, and a one-line reason when nothing can be read. The shapes are the ones
SmolLM2 wrote against llama.cpp's server in json_object and none modes."""

from __future__ import annotations

import json

import pytest

from synth.llm.structured import ReplyError, read_examples, read_object

A = {"text": "my card has not arrived", "label": "card_arrival"}
B = {"text": "where is my new card", "label": "card_arrival"}


@pytest.mark.parametrize(
    ("content", "items", "repairs"),
    [
        ('{"examples": [%s, %s]}', [A, B], ()),
        ("[%s, %s]", [A, B], ("bare_list",)),
        ("%s", [A], ("single_example",)),
        ('{"examples": %s}', [A], ("single_example",)),
        ('{"data": {"examples": [%s, %s]}}', [A, B], ("wrapper:data",)),
        ('{"result": [%s], "count": 1}', [A], ("wrapper:result", "extra_keys")),
        ('{"examples": [%s], "note": "done"}', [A], ("extra_keys",)),
        ('{"example1": %s, "example2": %s}', [A, B], ("keyed_examples",)),
        ("%s\n%s", [A, B], ("json_lines",)),
        ('```json\n{"examples": [%s, %s]}\n```', [A, B], ("code_fence",)),
        (
            "Here you are:\n```\n[%s]\n```\nI hope these help!",
            [A],
            ("code_fence", "text_around_json", "bare_list"),
        ),
        ('{"examples": [%s, %s],}', [A, B], ("broken_json",)),
        ('{examples": [%s, %s]}', [A, B], ("broken_json",)),
        ('{"examples": [%s, %s, {"text": "cut he', [A, B], ("broken_json",)),
        ('{"examples": ["a", %s]}', [A], ("non_objects",)),
        ('{"examples": [%s, %s]', [A, B], ("broken_json",)),
        ('{"examples": [%s, %s],', [A, B], ("broken_json",)),
        (
            '{"examples": [%s]}\nAnd another: {"examples": [%s]}',
            [A, B],
            ("text_around_json", "several_values"),
        ),
    ],
)
def test_examples_are_read_from_every_shape_and_the_mending_is_named(content, items, repairs):
    filled = content % tuple(json.dumps(x) for x in items[: content.count("%s")])
    found = read_examples(filled)
    assert found.items == items
    assert found.repairs == repairs


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("", "empty reply"),
        ("   \n", "empty reply"),
        ('{"examples": []}', "the reply's examples list is empty"),
        ("I'm sorry, I can't help with that.", "no JSON in the reply, which begins \"I'm sorry"),
        ('{"name": "x", "tags": ["a", "b"], "more": {"k": 1}}', "no examples in the reply"),
        ('"just a string"', "no examples in the reply: a JSON string"),
        ("see [1] and [2]", "no examples in the reply: a JSON list of 1 non-objects"),
    ],
)
def test_a_reply_with_no_examples_says_why_in_one_line(content, reason):
    with pytest.raises(ReplyError) as caught:
        read_examples(content)
    assert str(caught.value).startswith(reason)
    assert "\n" not in str(caught.value)


def test_unquoted_keys_are_quoted_but_never_inside_a_string():
    found = read_examples('{examples: [{text: "when: soon, please", label: "card_arrival"}]}')
    assert found.items == [{"text": "when: soon, please", "label": "card_arrival"}]
    assert found.repairs == ("broken_json",)


def test_the_same_content_gives_the_same_examples():
    content = 'Sure:\n{"text": "a b c", "label": "x"}\n{"text": "d e f", "label": "x"}\nDone.'
    assert read_examples(content) == read_examples(content)


GRADE = {
    "realism": {"score": 4, "rationale": "ok"},
    "label_fidelity": {"score": 5, "rationale": "y"},
}
KEYS = ["realism", "label_fidelity"]


@pytest.mark.parametrize(
    ("template", "repairs"),
    [
        ("%s", ()),
        ('{"grades": %s}', ("wrapper:grades",)),
        ("```json\n%s\n```", ("code_fence",)),
        ("Here is my grading: %s Thanks.", ("text_around_json",)),
        ('{"x": 1}\n%s', ("several_values",)),
    ],
)
def test_a_judge_object_is_found_where_the_model_put_it(template, repairs):
    found = read_object(template % json.dumps(GRADE), KEYS)
    assert found.value == GRADE
    assert found.repairs == repairs


def test_a_judge_reply_without_an_object_says_so():
    with pytest.raises(ReplyError, match="no JSON in the reply"):
        read_object("The candidate is realistic.", KEYS)
    with pytest.raises(ReplyError, match="no JSON object in the reply"):
        read_object("[1, 2]", KEYS)


def _bundled(**llm):
    from conftest import ROOT

    from synth.config import load_config

    return load_config(ROOT / "config.toml").with_llm(**llm)


def test_every_constraint_of_a_field_goes_into_the_schema_sent():
    from synth.llm.structured import examples_format

    config = _bundled(base_url="http://127.0.0.1:8080/v1")
    fmt = examples_format(config, "card_arrival", 3)
    examples = fmt["json_schema"]["schema"]["properties"]["examples"]
    assert examples["minItems"] == examples["maxItems"] == 3
    props = examples["items"]["properties"]
    assert props["text"] == {
        "type": "string",
        "minLength": 8,
        "maxLength": 400,
        "description": "the customer's message",
    }
    assert props["label"] == {"type": "string", "enum": ["card_arrival"]}


def test_a_field_constraint_added_to_the_config_must_be_sent_too():
    """``item_schema`` maps each of these; a new one would be checked by the schema
    filter and never asked of the server until it is mapped there too."""
    from synth.config import FieldSpec

    assert set(FieldSpec.model_fields) == {"type", "description", "min_length", "max_length"}


@pytest.mark.parametrize(
    ("base_url", "setting", "sent"),
    [
        ("http://127.0.0.1:8080/v1", "auto", True),
        ("https://api.openai.com/v1", "auto", False),  # strict mode refuses them
        ("https://api.openai.com/v1", "always", True),
        ("http://127.0.0.1:8080/v1", "never", False),
    ],
)
def test_string_lengths_go_where_the_endpoint_takes_them(base_url, setting, sent):
    from synth.llm.structured import item_schema

    config = _bundled(base_url=base_url, schema_lengths=setting)
    text = item_schema(config, "card_arrival")["properties"]["text"]
    assert ("maxLength" in text) is sent and ("minLength" in text) is sent
