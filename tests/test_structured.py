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
