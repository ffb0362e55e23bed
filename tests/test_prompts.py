from __future__ import annotations

import pytest
from conftest import ROOT

from synth.errors import TemplateError
from synth.prompts import load_template


def test_the_bundled_template_renders_shots_as_json_lines():
    t = load_template(ROOT / "prompts" / "generate" / "classify.md.j2")
    text = t.render(
        label="card_arrival",
        label_description="",
        slice={"name": "default", "description": "", "is_default": True},
        shots=[{"text": 'it\'s "late" <b>', "label": "card_arrival"}],
        contrast=[],
        n=5,
        fields={"text": {}, "label": {}},
        text_field="text",
        label_field="label",
        answer_shape='{"examples": [{"text": "...", "label": "card_arrival"}, ...]}',
    )
    assert '{"text": "it\'s \\"late\\" <b>", "label": "card_arrival"}' in text
    assert "Write 5 new examples" in text
    assert text.rstrip().endswith('{"examples": [{"text": "...", "label": "card_arrival"}, ...]}')
    assert len(t.sha) == 64


def test_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "bad.md.j2"
    path.write_text("line one\nline two\n{% for x in shots %}\n{{ x }\n")
    with pytest.raises(TemplateError) as e:
        load_template(path, "prompts/bad.md.j2")
    assert e.value.where == "prompts/bad.md.j2:4"


def test_undefined_variable_names_file_and_line(tmp_path):
    path = tmp_path / "t.md.j2"
    path.write_text("Label {{ label }}\n\nWrite {{ count }} examples\n")
    t = load_template(path, "prompts/t.md.j2")
    with pytest.raises(TemplateError) as e:
        t.render(label="x")
    assert e.value.where == "prompts/t.md.j2:3"
    assert "count" in e.value.message


def test_seed_text_is_data_not_template_code(tmp_path):
    path = tmp_path / "t.md.j2"
    path.write_text("{% for s in shots %}{{ s.text }}{% endfor %}")
    t = load_template(path)
    assert t.render(shots=[{"text": "{{ 7 * 7 }}"}]) == "{{ 7 * 7 }}"


def test_sandbox_blocks_python_internals(tmp_path):
    path = tmp_path / "t.md.j2"
    path.write_text("{{ label.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(TemplateError):
        load_template(path).render(label="x")
