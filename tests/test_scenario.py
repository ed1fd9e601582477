"""Scenario files: the bundled ones load; bad ones fail with a message naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.scenario.model import (
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
    from simulator.scenario import model as sc

    readme = (bundled_dir().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Scenario files"):readme.index("## report.json")]
    models = [sc.Scenario, sc.WorldSection, sc.HouseholdSection, sc.BackendSettings, sc.Expect,
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


# -- the broken-file corpus: every input error exits 2, never a traceback -----------------
BASE = '''name = "corpus"
seed = 1
[world]
background_households = 1
[[household]]
key = "a"
[[household]]
key = "b"
devices = 0
[[step]]
do = "traffic"
days = 1
[[expect]]
no_leak = true
'''

CORPUS: dict[str, str] = {
    "empty file": "",
    "not toml": "name = \n",
    "name of the wrong type": BASE.replace('name = "corpus"', "name = 3"),
    "name with a space": BASE.replace('name = "corpus"', 'name = "a b"'),
    "negative seed": BASE.replace("seed = 1", "seed = -1"),
    "seed as text": BASE.replace("seed = 1", 'seed = "one"'),
    "unknown top-level key": BASE + "colour = 1\n",
    "unknown locale": BASE.replace("[world]", '[world]\nlocale = "xx_XX"'),
    "negative background": BASE.replace("background_households = 1", "background_households = -1"),
    "naive start": BASE.replace("[world]", "[world]\nstart = 2018-06-01T00:00:00"),
    "start as number": BASE.replace("[world]", "[world]\nstart = 5"),
    "unknown world key": BASE.replace("[world]", "[world]\nsize = 3"),
    "bad household key": BASE.replace('key = "a"', 'key = "A!"'),
    "zero members": BASE.replace('key = "a"', 'key = "a"\nmembers = 0'),
    "devices as text": BASE.replace('key = "a"', 'key = "a"\ndevices = "two"'),
    "negative recordings": BASE.replace('key = "a"', 'key = "a"\nrecordings = -5'),
    "household email not an address": BASE.replace('key = "a"', 'key = "a"\nemail = "nobody"'),
    "household name with a control character": BASE.replace('key = "a"', 'key = "a"\nname = "x\\u0001"'),
    "lookalike of nobody": BASE.replace('key = "a"', 'key = "a"\nlookalike_of = "zz"'),
    "duplicate household": BASE + '[[household]]\nkey = "a"\n',
    "household as a table": BASE.replace("[[household]]\nkey = \"b\"", "[household.b]\nkey = \"b\"", 1),
    "manual review of an unknown kind": BASE + '[backend]\nmanual_review = ["rectify"]\n',
    "link_ttl with a sign": BASE + '[backend]\nlink_ttl = "-3d"\n',
    "link_ttl in an unknown unit": BASE + '[backend]\nlink_ttl = "3x"\n',
    "link_ttl as a boolean": BASE + '[backend]\nlink_ttl = true\n',
    "zero export workers": BASE + "[backend]\nexport_workers = 0\n",
    "unknown backend key": BASE + "[backend]\nturbo = true\n",
    "unknown fault": BASE + '[faults]\n"export.nope" = {}\n',
    "fault as a string": BASE + '[faults]\n"export.operator_swap" = "on"\n',
    "unknown fault parameter": BASE + '[faults]\n"export.operator_swap" = { with = ["a", "b"] }\n',
    "swap between an unknown household": BASE + '[faults]\n"export.operator_swap" = { between = ["a", "ghost"] }\n',
    "swap between one household": BASE + '[faults]\n"export.operator_swap" = { between = ["a"] }\n',
    "misaddressed to an unknown household": BASE + '[faults]\n"delivery.misaddressed_email" = { to = "email:ghost" }\n',
    "misaddressed to a non-address": BASE + '[faults]\n"delivery.misaddressed_email" = { to = "nowhere" }\n',
    "shared staging with zero jobs": BASE + '[faults]\n"export.shared_staging" = { jobs = 0 }\n',
    "shared staging wait as text": BASE + '[faults]\n"export.shared_staging" = { wait_seconds = "long" }\n',
    "unknown guard": BASE + '[guards]\n"export.nope" = {}\n',
    "guard with a parameter": BASE + '[guards]\n"export.ownership_check" = { strict = true }\n',
    "unknown step kind": BASE + '[[step]]\ndo = "fly"\n',
    "step without do": BASE + "[[step]]\ndays = 1\n",
    "negative offset": BASE + '[[step]]\ndo = "wait"\nat = "-3d"\n',
    "offset in an unknown unit": BASE + '[[step]]\ndo = "wait"\nat = "3x"\n',
    "offset as a list": BASE + '[[step]]\ndo = "wait"\nat = [1]\n',
    "advance by a bad duration": BASE + '[[step]]\ndo = "advance_clock"\nby = "3x"\n',
    "advance by a negative number": BASE + '[[step]]\ndo = "advance_clock"\nby = -60\n',
    "advance by more than ten years": BASE + '[[step]]\ndo = "advance_clock"\nby = "600w"\n',
    "revoke after a negative time": BASE + '[[step]]\ndo = "revoke"\nafter = "-1h"\n',
    "zero days of traffic": BASE + '[[step]]\ndo = "traffic"\ndays = 0\n',
    "traffic of an unknown household": BASE + '[[step]]\ndo = "traffic"\nhouseholds = ["ghost"]\n',
    "register for an unknown household": BASE + '[[step]]\ndo = "register_device"\nhousehold = "ghost"\n',
    "reuse the serial of a household without devices": BASE + '[[step]]\ndo = "register_device"\nhousehold = "a"\nserial = "b"\n',
    "bad serial": BASE + '[[step]]\ndo = "register_device"\nhousehold = "a"\nserial = "-x y"\n',
    "transfer a device that is not there": BASE + '[[step]]\ndo = "transfer_device"\nhousehold = "a"\nto = "b"\ndevice = 1\n',
    "transfer from a household without devices": BASE + '[[step]]\ndo = "transfer_device"\nhousehold = "b"\nto = "a"\n',
    "access request by nobody": BASE + '[[step]]\ndo = "access_request"\nby = "ghost"\n',
    "access request via fax": BASE + '[[step]]\ndo = "access_request"\nby = "a"\nvia = "fax"\n',
    "access request with a bad email": BASE + '[[step]]\ndo = "access_request"\nby = "a"\nemail = "a@"\n',
    "erasure by a number": BASE + '[[step]]\ndo = "erasure_request"\nby = 3\n',
    "operator with an unknown reason": BASE + '[[step]]\ndo = "operator"\naction = "deny"\nreason = "bored"\n',
    "download by nobody": BASE + '[[step]]\ndo = "download"\nby = "ghost"\n',
    "download of nobody's link": BASE + '[[step]]\ndo = "download"\nby = "a"\nlink_of = "ghost"\n',
    "guess_next as text": BASE + '[[step]]\ndo = "download"\nby = "a"\nguess_next = "yes"\n',
    "no expectation": BASE.replace("[[expect]]\nno_leak = true\n", ""),
    "two kinds in one expectation": BASE + "[[expect]]\nno_leak = true\nart34 = true\n",
    "empty expectation": BASE + "[[expect]]\n",
    "unknown expectation": BASE + "[[expect]]\nsunny = true\n",
    "leak from nobody": BASE + '[[expect]]\nleak = { from = "ghost", to = "a" }\n',
    "negative leak count": BASE + '[[expect]]\nleak = { from = "a", to = "b", recordings = -1 }\n',
    "no_leak filter from nobody": BASE + '[[expect]]\nno_leak = { from = "ghost" }\n',
    "complete for nobody": BASE + '[[expect]]\ncomplete = { for = "ghost" }\n',
    "link in an unknown state": BASE + '[[expect]]\nlink = { for = "a", state = "lost" }\n',
    "alert of an unknown guard": BASE + '[[expect]]\nalert = { guard = "nope" }\n',
    "erased of nobody": BASE + '[[expect]]\nerased = "ghost"\n',
    "request in an unknown status": BASE + '[[expect]]\nrequest = { for = "a", status = "done" }\n',
    "request with an unknown reason": BASE + '[[expect]]\nrequest = { for = "a", status = "denied", reason = "bored" }\n',
    "lost of nobody": BASE + '[[expect]]\nlost = { of = "ghost" }\n',
    "lost by nobody": BASE + '[[expect]]\nlost = { of = "a", by = "ghost" }\n',
    "art34 as text": BASE + '[[expect]]\nart34 = "yes"\n',
}


def test_the_corpus_base_is_valid(tmp_path: Path) -> None:
    assert load_scenario(write(tmp_path, BASE)).name == "corpus"


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_broken_file_exits_2_naming_the_file(tmp_path: Path, case: str) -> None:
    from click.testing import CliRunner

    from simulator.cli.run import run

    path = tmp_path / "broken.toml"
    path.write_text(CORPUS[case], encoding="utf-8")
    res = CliRunner().invoke(run, [str(path), "--out", str(tmp_path / "out"), "-q"])
    assert res.exit_code == 2, (case, res.output, res.exception)
    assert isinstance(res.exception, SystemExit), res.exception
    assert str(path) in res.output and "Traceback" not in res.output
    assert not (tmp_path / "out").exists()  # nothing ran


def test_a_file_that_is_not_utf8_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(BASE.replace("corpus", "caf\xe9").encode("latin-1"))
    with pytest.raises(ScenarioError, match="not UTF-8"):
        load_scenario(path)


def test_a_directory_exits_2_without_a_traceback(tmp_path: Path) -> None:
    """A real process: what a CI job sees for ``overheard run DIR``."""
    import subprocess
    import sys

    empty = tmp_path / "scenarios"
    empty.mkdir()
    proc = subprocess.run([sys.executable, "-m", "simulator.cli", "run", str(empty), "-q"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert str(empty) in proc.stderr and "Traceback" not in proc.stderr + proc.stdout


def test_every_expectation_kind_has_one_checker() -> None:
    from simulator.scenario.model import Expect
    from simulator.scenario.runner import CHECKERS

    assert set(CHECKERS) == set(Expect.model_fields)
