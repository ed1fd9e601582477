"""Scenario files (TOML): parsed by pydantic into typed objects, unknown keys are errors.

A scenario names a seed, a world (locale, background households, named households that
steps refer to), faults and guards for the backend, a timeline of steps and the
expectations the auditor's findings are checked against. Every problem is reported as a
:class:`ScenarioError` naming the file, the key and what was expected; the JSON Schema of the
format (``overheard scenarios --schema``) is generated from the same models.
"""

from __future__ import annotations

import importlib.resources
import re
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from backend.crashpoints import Point
from backend.faults import FAULTS, GUARDS
from backend.settings import BackendSettings, Duration
from backend.settings import parse_duration as parse_duration  # where the simulator imports it
from simulator.scenario.errors import ScenarioError as ScenarioError  # where callers import it
from simulator.world.households import HouseholdSpec
from simulator.world.phrasebook import LOCALES as LOCALES  # where the generator imports it
from simulator.world.phrasebook import Locale

# The backend's own rules for what it stores: checked here so a scenario fails at load,
# naming the key, instead of halfway through a run.
EMAIL = r"^[^@\s\x00-\x1f\x7f-\x9f]+@[^@\s\x00-\x1f\x7f-\x9f.]+(?:\.[^@\s\x00-\x1f\x7f-\x9f.]+)+$"
TEXT = r"^[^\x00-\x1f\x7f]+$"
SERIAL = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
StatusName = Literal["identity_unverified", "pending", "approved", "in_processing", "complete",
                     "denied", "canceled", "error"]
"""A privacy request's status, as the API names it."""
DenyReason = Literal["no_match", "insuf_verification", "suspected_fraud", "too_many_requests"]
"""Why an operator denied a request, as the API names it."""


class Model(BaseModel):
    # Strict: "yes" is not a boolean and "3" is not a number; TOML has both types.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class WorldSection(Model):
    """The population beyond the named households."""

    locale: Locale = "de_DE"
    background_households: int = Field(0, ge=0, le=5000)
    start: datetime = Field(datetime(2018, 6, 1, tzinfo=UTC), strict=False,
                            description="simulated start of the world's clock (RFC 3339)")

    @field_validator("start", mode="before")
    @classmethod
    def _time_or_text(cls, v: Any) -> Any:
        if not isinstance(v, datetime | str):
            raise ValueError("an RFC 3339 date-time with a zone, e.g. 2018-06-01T00:00:00Z")
        return v

    @field_validator("start")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("start needs a time zone, e.g. 2018-06-01T00:00:00Z")
        return v.astimezone(UTC)


class HouseholdSection(Model):
    """A household the steps and expectations refer to by ``key``."""

    key: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,39}$")
    members: int = Field(1, ge=1, le=12)
    devices: int = Field(1, ge=0, le=20)
    recordings: int | None = Field(None, ge=0, le=100_000,
                                   description="exact recordings over the traffic; default from the rate")
    locale: Locale | None = None
    name: str | None = Field(None, max_length=200, pattern=TEXT,
                             description="account holder's name (default: from Faker)")
    email: str | None = Field(None, max_length=254, pattern=EMAIL,
                              description="account holder's email (default: from Faker)")
    lookalike_of: str | None = Field(
        None, description="key of a household whose holder's name this one shares (search look-alike)")

    def spec(self) -> HouseholdSpec:
        """The world's request for this household."""
        return HouseholdSpec(self.key, self.members, self.devices, self.recordings, self.locale,
                             self.name, self.email, self.lookalike_of)


# -- steps -------------------------------------------------------------------------------
class _Step(Model):
    at: Duration | None = Field(None, description="advance the clock by this much before the step")


class Traffic(_Step):
    do: Literal["traffic"]
    days: float = Field(7, gt=0, le=3650)
    households: list[str] | None = Field(None, description="default: every household with devices")


class RegisterDevice(_Step):
    do: Literal["register_device"]
    household: str
    serial: str | None = Field(None, pattern=SERIAL,
                               description="reuse this serial, or a household key for that "
                                           "household's first serial: a collision")
    model: str = Field("Echo Dot", max_length=100, pattern=TEXT)
    room: str = Field("kitchen", max_length=100, pattern=TEXT)


class TransferDevice(_Step):
    do: Literal["transfer_device"]
    household: str = Field(description="current owner")
    to: str = Field(description="new owner (resale)")
    device: int = Field(0, ge=0, description="index of the seller's device")


class AccessRequest(_Step):
    do: Literal["access_request"]
    by: str | list[str]
    via: Literal["account", "email"] = "account"
    email_of: str | None = Field(
        None, description="name this household's email (and holder's name) in the form (impersonation)")
    email: str | None = Field(None, max_length=254, pattern=EMAIL,
                              description="type this address into the form (the email path)")
    contact: str | None = Field(
        None, max_length=254, pattern=EMAIL,
        description="signed in, type this contact address into the form too (a typo or "
                    "stale address; where a misaddressed link goes)")

    @model_validator(mode="after")
    def _contact_signed_in(self) -> AccessRequest:
        if self.contact is not None and (self.via == "email" or self.email or self.email_of):
            raise ValueError("contact goes with a signed-in request (via = \"account\"), "
                             "not with email, email_of or via = \"email\"")
        return self


class ErasureRequest(_Step):
    do: Literal["erasure_request"]
    by: str | list[str]
    via: Literal["account", "email"] = "account"


class Operator(_Step):
    do: Literal["operator"]
    name: str = Field("Operator A", min_length=1, max_length=200, pattern=TEXT)
    action: Literal["process", "deny"] = "process"
    reason: Literal["no_match", "insuf_verification", "suspected_fraud", "too_many_requests"] | None = None
    second: str | None = Field(None, min_length=1, max_length=200, pattern=TEXT,
                               description="a second operator who confirms held assignments")


class Download(_Step):
    do: Literal["download"]
    by: str
    link_of: str | None = Field(None, description="use this household's link (a forwarded or guessed link)")
    guess_next: bool = Field(False, description="try the neighbouring link token (enumeration)")


class AdvanceClock(_Step):
    do: Literal["advance_clock"]
    by: Duration


class Revoke(_Step):
    do: Literal["revoke"]
    link_of: str | None = Field(None, description="whose link; default: every active link")
    after: Duration | None = None


class WaitRequests(_Step):
    do: Literal["wait"]


class Crash(_Step):
    """The backend is killed (SIGKILL) at the ``nth`` pass of a crash point from this step
    on, and restarted on the same data dir; the steps after it go on and must pass the point."""

    do: Literal["crash"]
    point: Point = Field(
        description="ingest.upgraded, ingest.mid_utterance, ingest.after_commit (passed by "
                    "traffic), export.mid_build, export.before_release (by an access request's "
                    "export)")
    nth: int = Field(1, ge=1, le=100_000, description="which pass of the point, counted from this step")


Step = Annotated[
    Traffic | RegisterDevice | TransferDevice | AccessRequest | ErasureRequest | Operator
    | Download | AdvanceClock | Revoke | WaitRequests | Crash,
    Field(discriminator="do"),
]


# -- expectations ------------------------------------------------------------------------
class LeakExpect(Model):
    from_: str = Field(alias="from")
    to: str
    recordings: int | None = Field(None, ge=0)
    data_subjects: int | None = Field(None, ge=0)
    min_recordings: int | None = Field(None, ge=0)


class NoLeakExpect(Model):
    to: str | None = None
    from_: str | None = Field(None, alias="from")


class ForHousehold(Model):
    for_: str = Field(alias="for")


class LinkExpect(Model):
    for_: str = Field(alias="for")
    state: Literal["active", "expired", "revoked", "used"]


class RedeemedExpect(Model):
    by: str
    redeemed: bool = True


class AlertExpect(Model):
    guard: str
    count: int | None = Field(None, ge=0)


class StatusExpect(Model):
    for_: str = Field(alias="for")
    status: StatusName
    reason: DenyReason | None = None


class LostExpect(Model):
    """Recordings of ``of`` destroyed by someone else's request (``by``, optional)."""

    of: str
    by: str | None = None
    recordings: int | None = Field(None, ge=0, description="exactly this many (0: none lost)")
    min_recordings: int | None = Field(None, ge=0)


class Expect(Model):
    """Exactly one of the keys per ``[[expect]]``."""

    leak: LeakExpect | None = None
    no_leak: bool | NoLeakExpect | None = None
    complete: ForHousehold | None = None
    link: LinkExpect | None = None
    link_redeemed: RedeemedExpect | None = None
    alert: AlertExpect | None = None
    no_alert: bool | None = None
    erased: str | None = Field(None, description="household whose data must be gone")
    remains: str | None = Field(
        None, description="household whose data is still found in the backend's files "
                          "(an erasure that left data behind)")
    request: StatusExpect | None = None
    lost: LostExpect | None = Field(
        None, description="recordings of a household destroyed by another's erasure")
    art34: bool | None = Field(None, description="whether Art. 34 notice to data subjects is owed")
    invariant: Literal["no_foreign_data", "no_foreign_recipient", "complete", "erasure_total",
                       "no_collateral_loss", "acked_durable", "guard_alerts"] | None = Field(
        None, description="an invariant that must hold over the whole run (as overheard explore "
                          "checks it)")

    @model_validator(mode="after")
    def _exactly_one(self) -> Expect:
        set_keys = [k for k in type(self).model_fields if getattr(self, k) is not None]
        if len(set_keys) != 1:
            raise ValueError(
                f"each [[expect]] takes exactly one of {', '.join(type(self).model_fields)}; got "
                f"{', '.join(set_keys) or 'none'}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in type(self).model_fields if getattr(self, k) is not None)

    def describe(self) -> str:
        value = getattr(self, self.kind)
        if isinstance(value, BaseModel):
            parts = [f"{k.rstrip('_')}={v}" for k, v in value.model_dump().items() if v is not None]
            return f"{self.kind}({', '.join(parts)})"
        return f"{self.kind}({value})"


class Scenario(Model):
    """One scenario file."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,79}$")
    description: str = ""
    seed: int = Field(0, ge=0, le=2**63 - 1)
    world: WorldSection = WorldSection()
    household: list[HouseholdSection] = Field(default_factory=list)
    backend: BackendSettings = BackendSettings()
    faults: dict[str, dict[str, Any]] = Field(default_factory=dict)
    guards: dict[str, dict[str, Any]] = Field(default_factory=dict)
    step: list[Step] = Field(default_factory=list)
    expect: list[Expect] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> Scenario:
        keys = [h.key for h in self.household]
        dupes = {k for k in keys if keys.count(k) > 1}
        if dupes:
            raise ValueError(f"household keys must be unique; repeated: {sorted(dupes)}")
        self._check_faults_and_guards(set(keys))
        check = _reference_check(keys)
        for h in self.household:
            check(f"household[{h.key}].lookalike_of", h.lookalike_of)
        self._check_step_references(check)
        self._check_devices()
        self._check_expect_references(check)
        if not self.expect:
            raise ValueError("no [[expect]]: a scenario must say what has to hold, or it "
                             "would pass whatever happened")
        return self

    def _check_faults_and_guards(self, known: set[str]) -> None:
        for name in self.faults:
            if name not in FAULTS:
                raise ValueError(f"faults: unknown fault {name!r} (known: {', '.join(FAULTS)})")
            unknown = set(self.faults[name]) - set(FAULTS[name].params)
            if unknown:
                raise ValueError(f"faults.{name}: unknown parameter(s) {sorted(unknown)}")
            for param, value in self.faults[name].items():
                _check_param(f"faults.{name}.{param}", name, param, value, known)
        for name in self.guards:
            if name not in GUARDS:
                raise ValueError(f"guards: unknown guard {name!r} (known: {', '.join(GUARDS)})")
            unknown = set(self.guards[name]) - set(GUARDS[name].params)
            if unknown:
                raise ValueError(f"guards.{name}: unknown parameter(s) {sorted(unknown)}")

    def _check_step_references(self, check: Callable[[str, str | None], None]) -> None:
        for i, st in enumerate(self.step):
            where = f"step[{i}] ({st.do})"
            for field_name in ("household", "to", "email_of", "link_of"):
                check(f"{where}.{field_name}", getattr(st, field_name, None))
            if isinstance(st, AccessRequest | ErasureRequest | Download):
                for k in [st.by] if isinstance(st.by, str) else st.by:
                    check(f"{where}.by", k)
            if isinstance(st, Traffic):
                for k in st.households or []:
                    check(f"{where}.households", k)

    def _check_expect_references(self, check: Callable[[str, str | None], None]) -> None:
        for i, ex in enumerate(self.expect):
            where = f"expect[{i}].{ex.kind}"
            v = getattr(ex, ex.kind)
            for attr in ("from_", "to", "for_", "by", "of"):
                check(where + "." + attr.rstrip("_"), getattr(v, attr, None))
            if ex.kind in ("erased", "remains"):
                check(where, v)
            if ex.kind == "alert" and v.guard not in GUARDS:
                raise ValueError(f"{where}.guard: unknown guard {v.guard!r}")

    def _check_devices(self) -> None:
        """Device indexes and serials the steps name exist when the step runs."""
        devices = {h.key: h.devices for h in self.household}
        for i, st in enumerate(self.step):
            where = f"step[{i}] ({st.do})"
            if isinstance(st, RegisterDevice):
                if st.serial in devices and devices[st.serial] == 0:
                    raise ValueError(f"{where}.serial: household {st.serial!r} has no device "
                                     "whose serial could be reused")
                devices[st.household] += 1
            elif isinstance(st, TransferDevice):
                if st.device >= devices[st.household]:
                    raise ValueError(f"{where}.device: {st.household!r} has "
                                     f"{devices[st.household]} device(s) at this step; "
                                     f"index {st.device} does not exist")
                devices[st.household] -= 1
                devices[st.to] += 1

    def household_by_key(self, key: str) -> HouseholdSection:
        return next(h for h in self.household if h.key == key)


def _reference_check(keys: list[str]) -> Callable[[str, str | None], None]:
    """A check that ``key`` (where given) names one of the scenario's households."""
    known = set(keys)

    def check(where: str, key: str | None) -> None:
        if key is not None and key not in known:
            raise ValueError(f"{where}: unknown household {key!r} (known: {', '.join(keys) or 'none'})")

    return check


def _check_param(where: str, fault: str, param: str, value: Any, known: set[str]) -> None:
    """Fault parameters: a household reference must name a household of the scenario."""
    checker = _PARAM_CHECKS.get(param)
    if checker is None:
        raise ValueError(f"{where}: {fault} takes no parameter {param!r} in a scenario")
    checker(where, value, known)


def _household_param(where: str, value: Any, known: set[str]) -> None:
    if not isinstance(value, str) or value not in known:
        raise ValueError(f"{where}: {value!r} is not a household of this scenario "
                         f"(known: {', '.join(sorted(known)) or 'none'})")


def _between_param(where: str, value: Any, known: set[str]) -> None:
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError(f"{where}: a list of two household keys, got {value!r}")
    for v in value:
        _household_param(where, v, known)


def _to_param(where: str, value: Any, known: set[str]) -> None:
    if isinstance(value, str) and value.startswith("email:"):
        _household_param(where, value[6:], known)
    elif not (isinstance(value, str) and re.fullmatch(EMAIL, value)):
        raise ValueError(f"{where}: an email address or \"email:KEY\", got {value!r}")


def _jobs_param(where: str, value: Any, known: set[str]) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 16:
        raise ValueError(f"{where}: a whole number from 1 to 16, got {value!r}")


def _wait_seconds_param(where: str, value: Any, known: set[str]) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 3600:
        raise ValueError(f"{where}: seconds from 0 to 3600, got {value!r}")


_PARAM_CHECKS: dict[str, Callable[[str, Any, set[str]], None]] = {
    "between": _between_param, "into": _household_param, "from": _household_param,
    "to": _to_param, "jobs": _jobs_param, "wait_seconds": _wait_seconds_param,
}


def _loc(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for p in loc:
        if isinstance(p, int):
            parts[-1:] = [f"{parts[-1]}[{p}]"] if parts else [f"[{p}]"]
        elif p in {"traffic", "register_device", "transfer_device", "access_request",
                   "erasure_request", "operator", "download", "advance_clock", "revoke", "wait",
                   "crash"}:
            continue  # the discriminator's tag says nothing the index doesn't
        else:
            parts.append(str(p).rstrip("_"))
    return ".".join(parts) or "(top level)"


def load_scenario(path: Path | str, *, seed: int | None = None) -> Scenario:
    """Read and validate a scenario file; ``seed`` overrides the file's."""
    path = Path(path)
    if path.is_dir():
        raise ScenarioError(f"{path}: is a directory; give a scenario file")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such file") from None
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    if seed is not None:
        raw["seed"] = seed
    try:
        return Scenario.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors()[:5]:
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            elif err["type"] == "union_tag_invalid":
                msg = f"unknown step kind {err['ctx'].get('tag')!r}; expected one of {err['ctx']['expected_tags']}"
            lines.append(f"{path}: {_loc(err['loc'])}: {msg}")
        more = len(exc.errors()) - 5
        if more > 0:
            lines.append(f"{path}: ... and {more} more problem(s)")
        raise ScenarioError("\n".join(lines)) from None


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the scenario format, generated from the models above."""
    schema = Scenario.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "overheard scenario"
    return schema


def bundled_dir() -> Path:
    """Where the bundled scenarios live: the package ``simulator.scenarios`` (the checkout's
    ``fixtures/scenarios``, installed as package data), or the checkout's folder when the
    package is not installed (the code run straight from a source tree)."""
    try:
        where = importlib.resources.files("simulator.scenarios")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "fixtures" / "scenarios"
    return Path(str(where))


def bundled_scenario(name: str) -> Path | None:
    """The bundled scenario file called ``name`` (with or without ``.toml``), if there is one."""
    stem = name.removesuffix(".toml")
    if not stem or "/" in stem or "\\" in stem:
        return None
    path = bundled_dir() / f"{stem}.toml"
    return path if path.is_file() else None
