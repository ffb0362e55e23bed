from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner
from conftest import DATA, SEEDS, write_jsonl

from synth.cli import cli
from synth.errors import SeedError
from synth.seeds import read_seeds


def _import(project, path, *args):
    result = CliRunner().invoke(
        cli, ["--config", str(project.config_path), "seeds", "import", str(path), *args]
    )
    return result


def test_import_stores_real_rows_and_assigns_slices(project):
    rows = [
        *SEEDS,
        {"text": "HELP my card is gone!!", "label": "lost_or_stolen_card", "tone": "urgent"},
    ]
    write_jsonl(project.seeds, rows)
    result = _import(project, project.seeds)
    assert result.exit_code == 0, result.output
    assert f"{len(rows)} added" in result.output
    with project.store() as store:
        seeds = store.examples.seeds()
        assert len(seeds) == len(rows)
        assert {s["slice"] for s in seeds} == {"default", "urgent"}
        assert store.examples.statuses() == {"accepted": len(rows)}
        counts = store.examples.cell_counts()
    assert all(real > 0 and synthetic == 0 for real, synthetic in counts.values())


def test_reimport_adds_nothing(project):
    assert _import(project, project.seeds).exit_code == 0
    again = _import(project, project.seeds)
    assert again.exit_code == 0
    assert "0 added" in again.output and f"{len(SEEDS)} already stored" in again.output
    with project.store() as store:
        assert store.count("examples") == len(SEEDS)


def test_malformed_line_names_file_and_line_and_stores_nothing(project):
    lines = (
        [json.dumps(r) for r in SEEDS[:3]]
        + ['{"text": "broken", "label": ']
        + [json.dumps(SEEDS[3])]
    )
    project.seeds.write_text("\n".join(lines) + "\n")
    result = _import(project, project.seeds)
    assert result.exit_code != 0
    assert f"{project.seeds}:4: invalid JSON" in result.output
    with project.store() as store:
        assert store.count("examples") == 0


def test_skip_invalid_imports_the_rest_and_lists_what_it_skipped(project):
    rows = [*SEEDS[:2], {"text": "", "label": "card_arrival"}, {"label": "x"}, SEEDS[2]]
    write_jsonl(project.seeds, rows)
    result = _import(project, project.seeds, "--skip-invalid")
    assert result.exit_code == 0, result.output
    assert f"{project.seeds}:3: missing field 'text'" in result.output
    assert f"{project.seeds}:4: missing field 'text'" in result.output
    assert "3 added" in result.output and "2 skipped" in result.output


def test_csv_with_header_and_bad_row(project, tmp_path):
    path = tmp_path / "seeds.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerow(["card, has not arrived", "card_arrival"])
        w.writerow(["only one field"])
    with pytest.raises(SeedError) as e:
        read_seeds(path, project.config())
    assert e.value.where == f"{path}:3"
    assert "fewer fields" in e.value.message


def test_banking77_csv_imports_whole(project):
    parsed = read_seeds(DATA / "banking77" / "train.csv", _banking(project))
    assert len(parsed.seeds) == 10003
    assert parsed.seeds[0].origin.endswith("train.csv:2")


def _banking(project):
    project.write_config(
        base_url="http://127.0.0.1:9/v1",
    )
    text = project.config_path.read_text().replace('text = "text"', 'text = "text"', 1)
    text = text.replace('label = "label"\nfields.text', 'label = "category"\nfields.text')
    text = text.replace("fields.label = { type", "fields.category = { type")
    project.config_path.write_text(text)
    return project.config()


def test_alpaca_libre_malformed_lines_are_reported_by_line(project):
    path = DATA / "alpaca-libre" / "alpaca_libre_tasks_v2.jsonl"
    text = project.config_path.read_text()
    text = text.replace('text = "text"\nlabel = "label"', 'text = "instruction"\nlabel = "status"')
    text = text.replace("fields.text = {", "fields.instruction = {").replace(
        "fields.label = {", "fields.status = {"
    )
    project.config_path.write_text(text)
    with pytest.raises(SeedError) as e:
        read_seeds(path, project.config())
    assert e.value.where == f"{path}:2279"
    parsed = read_seeds(path, project.config(), skip_invalid=True)
    bad_lines = [int(p.split(":")[1]) for p in parsed.problems if "invalid JSON" in p]
    assert bad_lines == [2279, *range(2281, 2292), 2293, 2294]


def test_origin_is_relative_to_the_project_when_the_file_is_inside_it(project, tmp_path_factory):
    config = project.config()
    inside = read_seeds(project.seeds.resolve(), config)
    assert inside.seeds[0].origin == "seeds.jsonl:1"
    elsewhere = tmp_path_factory.mktemp("other") / "more.jsonl"
    write_jsonl(elsewhere, SEEDS[:1])
    assert read_seeds(elsewhere, config).seeds[0].origin == f"{elsewhere}:1"
    with pytest.raises(SeedError) as e:
        write_jsonl(elsewhere, [{"text": "no label here"}])
        read_seeds(elsewhere, config)
    assert e.value.where == f"{elsewhere}:1"  # errors name the file as it was given


def test_seed_lengths_are_held_to_the_schema_row_by_row(project):
    text = project.config_path.read_text().replace(
        'fields.text = { type = "string", min_length = 3 }',
        'fields.text = { type = "string", min_length = 12, max_length = 60 }',
    )
    project.config_path.write_text(text)
    rows = [
        SEEDS[0],
        {"text": "lost card", "label": "lost_or_stolen_card"},
        {"text": "x" * 61, "label": "card_arrival"},
    ]
    write_jsonl(project.seeds, rows)
    result = _import(project, project.seeds)
    assert result.exit_code == 1
    assert (
        f"{project.seeds}:2: field 'text' has 9 characters, fewer than"
        " schema.fields.text.min_length = 12"
    ) in result.output
    skipped = _import(project, project.seeds, "--skip-invalid")
    assert skipped.exit_code == 0
    assert (
        f"{project.seeds}:3: field 'text' has 61 characters, more than"
        " schema.fields.text.max_length = 60"
    ) in skipped.output
    assert "1 added" in skipped.output and "2 skipped" in skipped.output


@pytest.mark.parametrize("name", ["empty.jsonl", "empty.csv", "header-only.csv"])
def test_an_empty_seed_file_is_an_error(project, tmp_path, name):
    path = tmp_path / name
    path.write_text({"empty.jsonl": "\n", "empty.csv": ""}.get(name, "text,label\n"))
    result = _import(project, path)
    assert result.exit_code == 1
    assert result.output == f"Error: {path}: the file has no rows: there is nothing to import\n"


@pytest.mark.parametrize("flag", [(), ("--skip-invalid",)])
def test_a_csv_without_the_label_column_is_one_header_error(project, tmp_path, flag):
    path = tmp_path / "seeds.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "intent"])
        w.writerows([[r["text"], r["label"]] for r in SEEDS])
    result = _import(project, path, *flag)
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {path}:1: the header has no column 'label' (it has text, intent);"
        " [schema] fields need one each\n"
    )
    with project.store() as store:
        assert store.count("examples") == 0
