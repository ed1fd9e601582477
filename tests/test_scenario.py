"""Scenario files: the bundled ones load; bad ones fail with a message naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.scenario import (
    ScenarioError,
    bundled_dir,
    json_schema,
    load_scenario,
    parse_duration,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_bundled_scenarios_load() -> None:
    files = sorted(bundled_dir().glob("*.toml"))
    assert {"alexa-2018-misdelivery.toml", "alexa-2018-misdelivery-guarded.toml",
            "baseline-clean.toml"} <= {f.name for f in files}
    for f in files:
        s = load_scenario(f)
        assert s.name == f.stem
        assert s.expect, f"{f.name} checks nothing"


def test_2018_scenario_is_faithful() -> None:
    s = load_scenario(bundled_dir() / "alexa-2018-misdelivery.toml")
    requester = s.household_by_key("requester")
    stranger = s.household_by_key("stranger")
    assert requester.devices == 0
    assert (stranger.members, stranger.recordings) == (2, 1700)
    assert s.world.locale == "de_DE"
    assert s.faults["export.operator_voice_mixup"] == {"into": "requester", "from": "stranger"}
    leak = next(e.leak for e in s.expect if e.kind == "leak")
    assert (leak.from_, leak.to, leak.recordings, leak.data_subjects) == ("stranger", "requester", 1700, 2)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('name = "x"\nbogus = 1\n', "bogus: unknown key"),
        ('name = "x"\n[world]\nbackground_households = "many"\n', "world.background_households"),
        ('name = "x"\n[[step]]\ndo = "download"\nby = "ghost"\n', "unknown household 'ghost'"),
        ('name = "x"\n[[step]]\ndo = "fly"\n', "unknown step kind 'fly'"),
        ('name = "x"\n[faults]\n"export.nope" = {}\n', "unknown fault 'export.nope'"),
        ('name = "x"\n[[expect]]\n', "exactly one of"),
        ('name = "x"\n[[household]]\nkey = "a"\n[[household]]\nkey = "a"\n', "repeated: ['a']"),
        ('name = "x"\n[world]\nstart = 2018-06-01T00:00:00\n', "time zone"),
        ('name = \n', "not valid TOML"),
        ('name = "x"\n[[household]]\nkey = "a"\n[[step]]\ndo = "access_request"\nby = "a"\n'
         'via = "email"\ncontact = "a@example.org"\n', "contact goes with a signed-in request"),
        ('name = "x"\n[[expect]]\nremains = "ghost"\n', "unknown household 'ghost'"),
    ],
)
def test_bad_files_name_the_file_and_key(tmp_path: Path, text: str, needle: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert str(path) in str(err.value)
    assert needle in str(err.value)


def test_seed_override(tmp_path: Path) -> None:
    path = write(tmp_path, 'name = "x"\nseed = 3\n[[expect]]\nno_leak = true\n')
    assert load_scenario(path).seed == 3
    assert load_scenario(path, seed=99).seed == 99


def test_durations() -> None:
    assert parse_duration("3d") == 3 * 86400
    assert parse_duration("90m") == 5400
    assert parse_duration(12) == 12
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_json_schema_covers_steps_and_expectations() -> None:
    schema = json_schema()
    text = str(schema)
    for tag in ("traffic", "transfer_device", "access_request", "operator", "revoke",
                "contact", "remains"):
        assert tag in text
    assert schema["additionalProperties"] is False


def _keys(model: type) -> set[str]:
    from pydantic import BaseModel

    out: set[str] = set()
    for name, field in model.model_fields.items():
        out.add(field.alias or name)
        for arg in getattr(field.annotation, "__args__", (field.annotation,)):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                out |= _keys(arg)
    return out


def test_readme_documents_every_scenario_key() -> None:
    """The README's key table is the format's documentation: it must not fall behind."""
    from simulator import scenario as sc

    readme = (bundled_dir().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Scenario files"):readme.index("## report.json")]
    models = [sc.Scenario, sc.World, sc.Household, sc.BackendSettings, sc.Expect,
              sc.Traffic, sc.RegisterDevice, sc.TransferDevice, sc.AccessRequest,
              sc.ErasureRequest, sc.Operator, sc.Download, sc.AdvanceClock, sc.Revoke]
    keys = set().union(*(_keys(m) for m in models)) - {"do"}
    missing = sorted(k for k in keys if f"`{k}`" not in section and f"{k} =" not in section
                     and f"{{{k}" not in section and f" {k}," not in section and f" {k}}}" not in section
                     and f"[{k}]" not in section)
    assert not missing, f"README does not document: {missing}"
    for tag in ("traffic", "register_device", "transfer_device", "access_request",
                "erasure_request", "operator", "wait", "download", "advance_clock", "revoke"):
        assert f'do = "{tag}"' in section
