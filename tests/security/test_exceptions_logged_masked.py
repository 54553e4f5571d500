"""Finding 3: a traceback, a stack or a log argument never prints a card number or e-mail.

The process log (``bot.logs``) had the PII filter on its handler, but its formatter printed
``exc_info`` itself and ignored the masked ``exc_text``: an exception whose message held a
card number was logged in the clear. The attacks log, through the production formatter,
an exception carrying a PAN and an e-mail (also chained, and through ``exc_text`` someone
pre-filled), a stack (``stack_info``) whose source line holds a PAN, and PANs passed as
arguments and extras — once with the production handler (formatter + filter, as
``configure_logging`` builds it) and once with the formatter alone (a handler added by a
library or a test). Positive control: the rest of the record is still there.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from skills.pii import PiiLogFilter
from switchboard.logs import LogfmtFormatter

PAN = "4111 1111 1111 1111"
DOTTED = "5555.5555.5555.4444"
EMAIL = "jane.doe@example.com"


@pytest.fixture(params=["formatter+filter", "formatter only"])
def logged(request: pytest.FixtureRequest) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    logger = logging.getLogger(f"tests.security.logs.{request.param}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(LogfmtFormatter())
    if request.param == "formatter+filter":
        handler.addFilter(PiiLogFilter())
    logger.addHandler(handler)
    yield logger, stream
    logger.removeHandler(handler)
    logger.propagate = True


def _clean(output: str) -> None:
    assert "1111 1111" not in output and "5555.5555" not in output
    assert EMAIL not in output


def test_traceback_with_a_card_number_and_an_email(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = logged
    try:
        try:
            raise KeyError(f"no customer {EMAIL}")
        except KeyError as inner:
            raise ValueError(f"charge on {PAN} for {EMAIL} failed") from inner
    except ValueError:
        logger.exception("refund failed ref=%s", "abc123")

    output = stream.getvalue()
    _clean(output)
    assert "refund failed ref=abc123" in output  # positive control
    assert "ValueError: charge on [card ****1111] for [email ***@example.com] failed" in output
    assert "KeyError" in output and "raise ValueError" in output


def test_pre_rendered_exc_text_is_masked(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = logged
    record = logger.makeRecord(
        logger.name, logging.ERROR, __file__, 1, "worker crashed", None, None
    )
    record.exc_text = f"Traceback (most recent call last):\nRuntimeError: card {DOTTED}"
    logger.handle(record)

    output = stream.getvalue()
    _clean(output)
    assert "RuntimeError: card [card ****4444]" in output


def test_stack_info_is_masked(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = logged

    logger.warning("slow charge", stack_info=True)  # card 4111 1111 1111 1111 jane.doe@example.com

    output = stream.getvalue()
    _clean(output)
    assert "stack=" in output and "[card ****1111]" in output


def test_arguments_and_extras_are_masked(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = logged

    logger.info("card %s mail %s", DOTTED, EMAIL, extra={"customer": {"pan": PAN}})

    output = stream.getvalue()
    _clean(output)
    assert "card [card ****4444] mail [email ***@example.com]" in output
    assert "customer=" in output and "[card ****1111]" in output
