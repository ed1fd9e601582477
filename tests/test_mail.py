"""The emails' bodies come from templates: each renders its values, and none is orphaned."""

from __future__ import annotations

from pathlib import Path

import pytest
from jinja2 import UndefinedError

import backend.privacy.outbox as outbox

MAILS = {name: value for name, value in vars(outbox).items() if isinstance(value, outbox.Mail)}


def test_the_link_mail_names_the_expiry_only_when_there_is_one() -> None:
    with_expiry = outbox.LINK_READY.body(request_id="req_1", url="http://x/d/t", code=None,
                                         expires="2024-06-01T00:00:00.000Z")
    assert with_expiry == ("The copy of your data you asked for (request req_1) is ready:\n"
                           "http://x/d/t\nThe link works until 2024-06-01T00:00:00.000Z.\n"
                           "If you did not ask for this, do not open it and tell us.")
    without = outbox.LINK_READY.body(request_id="req_1", url="http://x/d/t", code=None,
                                     expires=None)
    assert without == ("The copy of your data you asked for (request req_1) is ready:\n"
                       "http://x/d/t\nIf you did not ask for this, do not open it and tell us.")


def test_the_code_and_erasure_mails_carry_their_values() -> None:
    code = outbox.VERIFICATION_CODE.body(request_id="req_2", code="123456", url=None, minutes=10)
    assert "(request req_2)" in code and "your code is 123456." in code
    assert "It works for 10 minutes." in code and not code.endswith("\n")
    erased = outbox.RECORDINGS_DELETED.body(request_id="req_3", code=None, url=None,
                                            recordings=17, packages=2)
    assert erased == ("As you asked (request req_3), we deleted 17 voice recordings and their "
                      "transcripts, and 2 download packages.")


def test_a_missing_value_is_an_error_not_a_blank() -> None:
    with pytest.raises(UndefinedError):
        outbox.RECORDINGS_DELETED.body(request_id="req_3", recordings=17)


def test_every_template_is_a_mail() -> None:
    folder = Path(outbox.__file__).parent / "templates" / "mail"
    assert sorted(p.name for p in folder.glob("*.j2")) == sorted(m.template for m in MAILS.values())
    assert len(MAILS) == 3
