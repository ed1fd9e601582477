"""Reports: deterministic report.json, junit.xml for CI, report.html for a DPO, the summary."""

from __future__ import annotations

import copy
import dataclasses
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from simulator.judge.audit import Leak, ManifestClaims, PackageAudit, Sample
from simulator.judge.identify import Clue, Identifiability
from simulator.judge.report import (
    Expectation,
    Loss,
    Redemption,
    RunResult,
    TimelineEntry,
    breach_notification,
    junit_xml,
    render_html,
    report_dict,
    report_json,
    summary_text,
    write_reports,
)

EVIL = "<script>alert('overheard')</script> wie wird das Wetter in Erfurt"


def leak(redeemed: bool = True, **over: Any) -> Leak:
    base = Leak(
        request_id="req_requester", from_household="stranger",
        from_account="acc_stranger", to_household="requester",
        to_account="acc_requester", recordings=1700, data_subjects=2,
        first_recorded_at="2018-06-01T07:00:00Z", last_recorded_at="2018-07-30T22:00:00Z",
        link_redeemed=redeemed, transcript_only=0,
        samples=[Sample("2018-06-01T07:00:00Z", "Klaus", EVIL, "voice/recordings/rec_1.wav")],
    )
    return dataclasses.replace(base, **over)


def package(subject: str, own: int, foreign: dict[str, int], leaks: list[Leak]) -> PackageAudit:
    return PackageAudit(
        request_id=f"req_{subject}", subject_household=subject,
        subject_account=f"acc_{subject}", files=own + sum(foreign.values()),
        own=own, foreign=foreign, missing=0, corrupt=0, duplicated=0,
        unattributable=0, downloaded=True, foreign_transcripts={},
        manifest=ManifestClaims(readable=True), leaks=leaks)


def result(redeemed: bool = True, started: str = "2024-01-01T10:00:00Z",
           finished: str = "2024-01-01T10:00:42Z") -> RunResult:
    return RunResult(
        scenario="alexa-2018-misdelivery", seed=2018, verdict="fail",
        description="two access requests in flight; the operator swaps",
        expectations=[
            Expectation("leak(from=stranger, to=requester, recordings=1700)", True,
                        "1700 recordings of 2 data subjects"),
            Expectation("no_alert()", False, "1 alert: export.ownership_check"),
            Expectation("link(for=requester, state=revoked)", None, "backend unreachable"),
        ],
        packages=[package("requester", 0, {"stranger": 1700}, [leak(redeemed)]),
                  package("stranger", 1700, {}, [])],
        timeline=[TimelineEntry("2018-08-01T09:00:00Z", "access_request", "requester asks"),
                  TimelineEntry("2018-08-02T09:00:00Z", "operator", "swap <b>")],
        link_redemptions=[Redemption("2018-08-03T12:00:00Z", "req_requester", "requester",
                                     "200, 104 MB")],
        aware_at="2018-08-10T15:30:00Z",
        measures_taken=["download link revoked at 2018-08-10T16:00:00Z"],
        started_at=started, finished_at=finished, run_info={"out": "/tmp/run-x"})


def test_report_json_is_deterministic_apart_from_run() -> None:
    a = report_json(result())
    b = report_json(result(started="2025-05-05T00:00:00Z", finished="2025-05-05T00:01:00Z"))
    assert a != b
    da, db = json.loads(a), json.loads(b)
    assert da.pop("run") != db.pop("run")
    assert da == db
    # Same bytes with the run key blanked: nothing but "run" differs.
    blank = {"started_at": None, "finished_at": None, "duration_seconds": None}
    assert (json.dumps(da | {"run": blank}) == json.dumps(db | {"run": blank}))
    assert report_json(result()) == a
    assert list(json.loads(a)) == [
        "scenario", "description", "seed", "verdict", "expectations", "packages", "leaks",
        "lost", "breach_notification", "timeline", "link_redemptions", "alerts", "run"]
    assert json.loads(a)["run"] == {"started_at": "2024-01-01T10:00:00Z",
                                    "finished_at": "2024-01-01T10:00:42Z",
                                    "duration_seconds": 42.0, "out": "/tmp/run-x"}


def test_report_dict_contract_fields() -> None:
    d = report_dict(result())
    assert d["verdict"] == "fail" and d["seed"] == 2018
    assert d["expectations"][1] == {"name": "no_alert()", "passed": False,
                                    "detail": "1 alert: export.ownership_check"}
    assert "leaks" not in d["packages"][0]  # the leaks are listed once, at the top
    assert d["packages"][0]["foreign"] == {"stranger": 1700}
    [lk] = d["leaks"]
    assert (lk["from_household"], lk["to_household"], lk["recordings"], lk["data_subjects"],
            lk["link_redeemed"]) == ("stranger", "requester", 1700, 2, True)
    assert d["breach_notification"]["art34"]["required"] is True


def test_breach_notification_deadline_and_art34() -> None:
    note = breach_notification([leak(True)], "2018-08-10T15:30:00Z",
                               measures_taken=["link revoked"])
    assert note["required"] is True
    assert note["deadline"] == "2018-08-13T15:30:00Z"
    assert note["data_subjects"]["approximate_number"] == 2
    assert note["records"]["approximate_number"] == 1700
    assert "1,700" in note["records"]["text"]
    assert "1,700 voice recording" in note["nature"] and "downloaded" in note["nature"]
    assert note["measures_taken"] == ["link revoked"]
    assert note["likely_consequences"] and note["measures_proposed"]
    assert note["art34"]["required"] is True and note["art34"]["data_subjects"] == 2

    unredeemed = breach_notification([leak(False)], "2018-08-10T15:30:00+02:00")
    assert unredeemed["required"] is True and unredeemed["art34"]["required"] is False
    assert unredeemed["deadline"] == "2018-08-13T13:30:00Z"

    # One household leaked into two packages: still the same two people.
    twice = breach_notification([leak(), leak(to_household="other", recordings=5)], None)
    assert twice["data_subjects"]["approximate_number"] == 2
    assert twice["records"]["approximate_number"] == 1705
    assert twice["deadline"] is None and twice["recipients"] == ["other", "requester"]

    none = breach_notification([], "2018-08-10T15:30:00Z")
    assert none["required"] is False and none["art34"]["required"] is False


def test_junit_one_testcase_per_expectation(tmp_path: Path) -> None:
    root = ET.fromstring(junit_xml(result()))
    cases = root.findall("./testsuite/testcase")
    assert [c.get("name") for c in cases] == [e.name for e in result().expectations]
    assert cases[0].find("failure") is None and cases[0].find("error") is None
    failure = cases[1].find("failure")
    assert failure is not None and failure.text == "1 alert: export.ownership_check"
    error = cases[2].find("error")
    assert error is not None and error.get("message") == "backend unreachable"
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "1", "1")


def test_junit_times_are_seconds_with_milliseconds() -> None:
    root = ET.fromstring(junit_xml(result(started="2024-01-01T10:00:00.250Z",
                                          finished="2024-01-01T10:00:01.500Z")))
    suite = root.find("testsuite")
    assert suite is not None and suite.get("time") == "1.250"
    assert {c.get("time") for c in root.findall("./testsuite/testcase")} == {"0.000"}
    whole = ET.fromstring(junit_xml(result())).find("testsuite")
    assert whole is not None and whole.get("time") == "42.000"


def test_lost_recordings_are_a_breach_of_integrity_and_availability() -> None:
    lost = [Loss(of_household="buyer", of_account="acc_b", recordings=38,
                 data_subjects=2, first_recorded_at="2024-01-11T07:00:00Z",
                 last_recorded_at="2024-01-13T20:00:00Z", by_request="prq_1",
                 by_household="seller", by_account="acc_s")]
    only_loss = RunResult(scenario="s", seed=1, verdict="pass", expectations=[],
                          packages=[], lost=lost, aware_at="2024-01-14T00:00:00Z")
    d = json.loads(report_json(only_loss))
    assert d["lost"] == [{
        "of_household": "buyer", "of_account": "acc_b", "recordings": 38, "data_subjects": 2,
        "first_recorded_at": "2024-01-11T07:00:00Z", "last_recorded_at": "2024-01-13T20:00:00Z",
        "by_request": "prq_1", "by_household": "seller", "by_account": "acc_s"}]
    note = d["breach_notification"]
    assert note["required"] is True and note["deadline"] == "2024-01-17T00:00:00Z"
    assert "Integrity and availability breach" in note["nature"] and "38 recording" in note["nature"]
    assert note["households_affected"] == ["buyer"] and note["art34"]["required"] is False
    assert "destroyed by seller's erasure prq_1" in summary_text(only_loss)
    assert "Lost: recordings destroyed" in render_html(only_loss)
    # With a leak too, the draft names both.
    both = result()
    both.lost = lost
    assert "Integrity and availability breach" in breach_notification(
        both.all_leaks, both.aware_at, lost=lost)["nature"]


def test_html_has_flow_escaped_transcripts_and_the_notification() -> None:
    html = render_html(result())
    assert '<svg id="flow"' in html
    assert 'class="edge foreign"' in html and 'class="edge own"' in html
    assert "from stranger: 1,700 · 2 people" in html
    # Transcripts are data, never markup.
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#39;overheard&#39;)&lt;/script&gt;" in html
    assert "swap &lt;b&gt;" in html
    assert 'id="art33"' in html and "Nature of the breach" in html
    assert "2018-08-13T15:30:00Z" in html  # 72 h after awareness
    assert "REQUIRED for 2 data subject(s)" in html
    assert "download link revoked at 2018-08-10T16:00:00Z" in html
    assert "200, 104 MB" in html  # the link redemption

    calm = render_html(result(redeemed=False))
    assert 'class="art34 no"' in calm and "REQUIRED" not in calm


def test_html_for_a_clean_run() -> None:
    clean = RunResult(scenario="baseline-clean", seed=1, verdict="pass",
                      expectations=[Expectation("no_leak()", True, "")],
                      packages=[package("requester", 0, {}, []), package("alpha", 12, {}, [])])
    html = render_html(clean)
    assert 'class="banner pass"' in html and "No notification is needed" in html
    assert 'class="edge foreign"' not in html and "own recordings: 12" in html
    assert report_dict(clean)["breach_notification"]["required"] is False


def test_summary_fits_one_screen() -> None:
    big = copy.deepcopy(result())
    big.expectations = big.expectations * 10
    text = summary_text(big)
    lines = text.splitlines()
    assert len(lines) <= 24
    assert lines[0] == "FAIL  alexa-2018-misdelivery (seed 2018)"
    assert "stranger -> requester: 1,700 recordings of 2 people" in text
    assert "2018-08-13T15:30:00Z" in text and "Art. 34 notice to data subjects: REQUIRED" in text
    assert "… and 25 more" in text


def test_write_reports(tmp_path: Path) -> None:
    paths = write_reports(result(), tmp_path / "run")
    assert sorted(p.name for p in paths.values()) == ["junit.xml", "report.html", "report.json"]
    assert json.loads(paths["json"].read_text())["scenario"] == "alexa-2018-misdelivery"
    ET.parse(paths["junit"])
    assert paths["html"].read_text().startswith("<!doctype html>")


@pytest.mark.parametrize("verdict", ["pass", "fail", "unknown"])
def test_banner_shows_the_verdict(verdict: str) -> None:
    r = dataclasses.replace(result(), verdict=verdict)
    assert f'class="banner {verdict}"' in render_html(r)


def test_identifiability_in_plain_words_and_in_the_art34_reasoning() -> None:
    ident = Identifiability([Clue("town", "Erlangen", 31), Clue("contact", "Anna", 7)],
                            matching_households=1, households=10)
    lk = leak(identifiability=ident, samples=[
        Sample("2018-06-01T07:00:00Z", "Klaus", "Pause.", "voice/recordings/rec_1.wav",
               audio="samples/req_requester-stranger-1.wav")])
    note = breach_notification([lk], "2018-08-01T00:00:00Z")
    assert "2 clues (contact, town)" in note["art34"]["reason"]
    assert "1 household(s) in the world match all of them (identifiable)" in note["art34"]["reason"]
    unread = breach_notification([leak(redeemed=False, identifiability=ident)],
                                 "2018-08-01T00:00:00Z")
    assert "clues" not in unread["art34"]["reason"]  # not obtained: no identification
    r = result()
    r.packages[0].leaks = [lk]
    r.leaks = None
    r.__post_init__()
    html = render_html(r)
    assert "the town Erlangen (31 times) and the contact Anna (7 times)" in html
    assert "1 of 10 households in the simulated world matches" in html
    assert '<audio controls preload="none" src="samples/req_requester-stranger-1.wav">' in html
