"""Detection, masking, pseudonyms, the token vault, sealers and the log filter."""

from __future__ import annotations

import hashlib
import hmac
import io
import itertools
import json
import logging
import re
from collections.abc import Iterator

import pytest

from skills.pii import (
    CipherSealer,
    InMemorySealer,
    PiiLogFilter,
    PiiMatch,
    PiiVault,
    find_pii,
    install_log_filter,
    luhn_valid,
    mask_obj,
    mask_text,
    pseudonym,
    seal_entries,
    strip_token_ids,
    unseal_entries,
)

KEY = b"test-key-0123456789abcdef-0123456"


def fmt(pan: str, groups: tuple[int, ...], sep: str) -> str:
    """``pan`` split into groups of the given sizes (the last group takes the rest)."""
    parts, pos = [], 0
    for size in groups:
        parts.append(pan[pos : pos + size])
        pos += size
    if pos < len(pan):
        parts.append(pan[pos:])
    return sep.join(parts)


def squeeze(text: str) -> str:
    """Text without the separators a card number may be written with."""
    return re.sub(r"[\s\-\u2010-\u2013]", "", text)


# (card as written, digits) — test numbers of every major scheme, in many groupings.
VISA, VISA13, VISA19 = "4111111111111111", "4222222222222", "4000000000000000006"
MC, MC2 = "5555555555554444", "2223003122003222"
AMEX, AMEX2 = "378282246310005", "371449635398431"
DISCOVER = "6011000990139424"
DINERS, DINERS2 = "30569309025904", "36227206271667"
JCB = "3530111333300000"
UNIONPAY19, UNIONPAY = "6205500000000000004", "6250941006528599"
MAESTRO = "6759649826438453"

CARD_FORMATS: list[tuple[str, str]] = [
    (VISA, VISA),
    (fmt(VISA, (4, 4, 4, 4), " "), VISA),
    (fmt(VISA, (4, 4, 4, 4), "-"), VISA),
    (fmt("4012888888881881", (4, 4, 4, 4), " "), "4012888888881881"),
    (fmt("4242424242424242", (4, 4, 4, 4), "-"), "4242424242424242"),
    (VISA13, VISA13),
    (fmt(VISA13, (4, 3, 3, 3), " "), VISA13),
    (VISA19, VISA19),
    (fmt(VISA19, (4, 4, 4, 4, 3), " "), VISA19),
    (MC, MC),
    (fmt(MC, (4, 4, 4, 4), " "), MC),
    (fmt(MC, (4, 4, 4, 4), "-"), MC),
    (fmt("5105105105105100", (8, 8), " "), "5105105105105100"),
    (fmt(MC2, (4, 4, 4, 4), " "), MC2),
    (fmt(MC, (4, 4, 4, 4), "\u00a0"), MC),
    (fmt(MC, (4, 4, 4, 4), "\u2013"), MC),
    (AMEX, AMEX),
    (fmt(AMEX, (4, 6, 5), " "), AMEX),
    (fmt(AMEX, (4, 6, 5), "-"), AMEX),
    (fmt(AMEX2, (4, 6, 5), " "), AMEX2),
    (fmt("378734493671000", (4, 4, 4, 3), " "), "378734493671000"),
    (DISCOVER, DISCOVER),
    (fmt(DISCOVER, (4, 4, 4, 4), " "), DISCOVER),
    (fmt("6011111111111117", (4, 4, 4, 4), "-"), "6011111111111117"),
    (DINERS, DINERS),
    (fmt(DINERS, (4, 6, 4), " "), DINERS),
    (fmt(DINERS2, (4, 6, 4), "-"), DINERS2),
    (fmt("38520000023237", (4, 4, 4, 2), " "), "38520000023237"),
    (JCB, JCB),
    (fmt(JCB, (4, 4, 4, 4), " "), JCB),
    (fmt("3566002020360505", (4, 4, 4, 4), "-"), "3566002020360505"),
    (UNIONPAY, UNIONPAY),
    (fmt(UNIONPAY, (4, 4, 4, 4), " "), UNIONPAY),
    (UNIONPAY19, UNIONPAY19),
    (fmt(UNIONPAY19, (4, 4, 4, 4, 3), " "), UNIONPAY19),
    (fmt(UNIONPAY19, (6, 13), " "), UNIONPAY19),
    (fmt(UNIONPAY19, (4, 4, 4, 4, 3), "-"), UNIONPAY19),
    (fmt(MAESTRO, (4, 4, 4, 4), " "), MAESTRO),
    (fmt("6011981111111113", (4, 4, 4, 4), " "), "6011981111111113"),
    (fmt(VISA, (2, 2, 2, 2, 2, 2, 2, 2), " "), VISA),
    (fmt(VISA, (4, 4, 4, 4), " ").replace(" ", "-", 1), VISA),  # mixed separators
]

CONTEXTS = [
    "Customer card {} was declined.",
    '{{"pan": "{}", "amount": 12.5}}',
    "https://pay.example/cards?pan={}&currency=AED",
    "({})",
    "card:{};",
    "*{}*",
    "`{}`",
    "<https://pay.example/c/{}|card>",
    "> {}\nthanks",
    "'{}', please",
]


def corpus() -> Iterator[tuple[str, str]]:
    for index, (written, digits) in enumerate(CARD_FORMATS):
        yield CONTEXTS[index % len(CONTEXTS)].format(written), digits
    for context in CONTEXTS:
        yield context.format(fmt(AMEX, (4, 6, 5), " ")), AMEX


CORPUS = list(corpus())


def test_corpus_is_large_and_all_luhn_valid() -> None:
    assert len(CORPUS) >= 50
    assert all(luhn_valid(digits) and 13 <= len(digits) <= 19 for _, digits in CORPUS)


@pytest.mark.parametrize(("text", "pan"), CORPUS)
def test_every_card_format_is_masked_with_its_last_four(text: str, pan: str) -> None:
    masked = mask_text(text)

    assert pan not in squeeze(masked)
    assert f"[card ****{pan[-4:]}]" in masked


@pytest.mark.parametrize(("text", "pan"), CORPUS)
def test_card_in_json_tool_result_is_masked(text: str, pan: str) -> None:
    result = json.loads(json.dumps({"note": text, "items": [{"pan": pan}], "pan_number": int(pan)}))

    masked = json.dumps(mask_obj(result))

    assert pan not in squeeze(masked)


def test_two_cards_and_a_card_followed_by_a_year_are_found_separately() -> None:
    text = f"old {VISA} {MC} new, expiry {fmt(AMEX, (4, 6, 5), '-')} 2027"

    matches = find_pii(text)

    assert [m.kind for m in matches] == ["card", "card", "card"]
    assert [squeeze(m.value) for m in matches] == [VISA, MC, AMEX]
    assert mask_text(text).endswith("[card ****0005] 2027")


@pytest.mark.parametrize(
    "text",
    [
        "order 4111111111111112 shipped",  # 16 digits, fails Luhn
        "order id 1234-5678-9012-3456",  # grouped like a card, fails Luhn
        "ref 424242424242",  # Luhn-valid but only 12 digits
        "batch 41111111111111110000",  # a card inside a longer unbroken run
        "ts 1712345678.123456 in C0PAYMENTS",  # Slack message timestamp
        "on 2024-01-15 at 10:30:15, 15/01/2024",
        "amount $1,234,567.89 and 12 500.00 AED",
        "version 1.2.3, build 20240115",
        "trace 550e8400-e29b-41d4-a716-446655440000",
    ],
)
def test_ordinary_numbers_are_left_alone(text: str) -> None:
    assert find_pii(text) == []
    assert mask_text(text) == text


# --------------------------------------------------------------------------- IBANs

VALID_IBANS = [
    ("GB82 WEST 1234 5698 7654 32", "GB", "5432"),
    ("GB82WEST12345698765432", "GB", "5432"),
    ("DE89 3704 0044 0532 0130 00", "DE", "3000"),
    ("DE89370400440532013000", "DE", "3000"),
    ("FR14 2004 1010 0505 0001 3M02 606", "FR", "2606"),
    ("NL91ABNA0417164300", "NL", "4300"),
    ("AE07 0331 2345 6789 0123 456", "AE", "3456"),
    ("CH93 0076 2011 6238 5295 7", "CH", "2957"),
    ("NO9386011117947", "NO", "7947"),
    ("SA03 8000 0000 6080 1016 7519", "SA", "7519"),
    ("MT84MALT011000012345MTLCAST001S", "MT", "001S"),
    ("gb82 west 1234 5698 7654 32", "GB", "5432"),
]


@pytest.mark.parametrize(("iban", "country", "last4"), VALID_IBANS)
def test_valid_iban_is_masked_with_country_and_last_four(
    iban: str, country: str, last4: str
) -> None:
    text = f"Please pay to {iban}, thanks"

    masked = mask_text(text)

    assert masked == f"Please pay to [iban {country}** ****{last4}], thanks"


@pytest.mark.parametrize(
    "text",
    [
        "GB82 WEST 1234 5698 7654 33",  # checksum off by one
        "DE88370400440532013000",  # wrong check digits
        "DE89 3704 0044 0532 0130",  # too short for DE
        "XX82WEST12345698765432",  # not a country
        "GB82WEST12345698765432X",  # glued to more text
    ],
)
def test_invalid_iban_is_left_alone(text: str) -> None:
    assert [m for m in find_pii(text) if m.kind == "iban"] == []


def test_iban_is_reported_once_not_as_a_card_inside_it() -> None:
    text = "DE89 3704 0044 0532 0130 00 and 4111 1111 1111 1111"

    assert [m.kind for m in find_pii(text)] == ["iban", "card"]


# --------------------------------------------------------------------------- e-mails, phones


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail jane.doe+refunds@example.co.uk now", "mail [email ***@example.co.uk] now"),
        (
            "<mailto:J.Smith@Bank.AE|J.Smith@Bank.AE>",
            "<mailto:[email ***@bank.ae]|[email ***@bank.ae]>",
        ),
        ("(ops_team-1@pay.example)", "([email ***@pay.example])"),
    ],
)
def test_email_is_masked_without_its_local_part(text: str, expected: str) -> None:
    assert mask_text(text) == expected


@pytest.mark.parametrize(
    ("phone", "last2"),
    [
        ("+971 50 123 4567", "67"),
        ("+971501234567", "67"),
        ("+1 (415) 555-0100", "00"),
        ("+1-415-555-0199", "99"),
        ("(415) 555-0142", "42"),
        ("415-555-0123", "23"),
        ("415.555.0177", "77"),
        ("+44 20 7946 0958", "58"),
        ("050 123 4567", "67"),
    ],
)
def test_phone_number_is_masked_to_last_two_digits(phone: str, last2: str) -> None:
    assert mask_text(f"call {phone} today") == f"call [phone ***{last2}] today"


@pytest.mark.parametrize(
    "text",
    [
        "order 4155550100 and 971501234567",  # plain digit strings
        "thread 1712345678.123456",
        "2024-01-15 10:30",
        "server 192.168.100.200",
        "+1 555",  # too few digits
        "refund 123-45-6789",
    ],
)
def test_non_phones_are_left_alone(text: str) -> None:
    assert [m for m in find_pii(text) if m.kind == "phone"] == []


def test_find_pii_is_sorted_and_non_overlapping() -> None:
    text = f"{MC} jane@x.io +971 50 123 4567 GB82WEST12345698765432 {VISA}"

    matches = find_pii(text)

    assert [m.kind for m in matches] == ["card", "email", "phone", "iban", "card"]
    assert all(a.end <= b.start for a, b in itertools.pairwise(matches))
    assert all(text[m.start : m.end] == m.value for m in matches)
    assert matches[0] == PiiMatch("card", 0, 16, MC)


def test_mask_obj_recurses_and_keeps_other_values() -> None:
    obj = {
        "customer": {"email": "a@b.co", "cards": [VISA, ("x", MC)]},
        VISA: True,
        "count": 3,
        "order": 4111111111111112,
        "pan": 4111111111111111,
        "none": None,
    }

    masked = mask_obj(obj)

    assert masked == {
        "customer": {
            "email": "[email ***@b.co]",
            "cards": ["[card ****1111]", ("x", "[card ****4444]")],
        },
        "[card ****1111]": True,
        "count": 3,
        "order": 4111111111111112,
        "pan": "[card ****1111]",
        "none": None,
    }


def test_mask_text_is_idempotent() -> None:
    text = f"{VISA} GB82WEST12345698765432 jane@x.io +1 (415) 555-0100"
    once = mask_text(text)
    assert mask_text(once) == once


# --------------------------------------------------------------------------- pseudonyms


def test_pseudonym_is_keyed_hmac_sha256() -> None:
    value = VISA
    expected = hmac.new(KEY, value.encode(), hashlib.sha256).hexdigest()

    assert pseudonym(value, key=KEY) == expected
    assert pseudonym(value, key=KEY) != hashlib.sha256(value.encode()).hexdigest()
    assert pseudonym(value, key=KEY[::-1]) != expected


def test_pseudonym_refuses_a_short_key() -> None:
    with pytest.raises(ValueError, match="16"):
        pseudonym(VISA, key=b"short")


# --------------------------------------------------------------------------- vault


def test_vault_round_trip_restores_originals_in_tool_args() -> None:
    vault = PiiVault(key=KEY)
    text = f"refund {fmt(VISA, (4, 4, 4, 4), ' ')} to jane@x.io via GB82 WEST 1234 5698 7654 32"

    tokenized = vault.tokenize(text)
    args = {"card": re.findall(r"\[card [^\]]+\]", tokenized)[0], "note": [tokenized]}

    assert VISA not in squeeze(tokenized)
    assert "jane@x.io" not in tokenized
    assert re.search(r"\[card \*\*\*\*1111 #pii:[0-9a-f]{8}\]", tokenized)
    assert vault.detokenize(args) == {
        "card": VISA,
        "note": [f"refund {VISA} to jane@x.io via GB82WEST12345698765432"],
    }


def test_same_value_gets_same_token_whatever_its_formatting() -> None:
    vault = PiiVault(key=KEY)

    first = vault.tokenize(VISA)
    second = vault.tokenize(fmt(VISA, (4, 4, 4, 4), "-"))
    other_thread = PiiVault(key=KEY).tokenize(VISA)
    other_key = PiiVault(key=KEY[::-1]).tokenize(VISA)

    assert first == second == other_thread
    assert other_key != first
    assert len(vault) == 1


def test_tokenize_is_idempotent_and_bare_token_ids_resolve() -> None:
    vault = PiiVault(key=KEY)
    token = vault.tokenize(MC)

    assert vault.tokenize(token) == token
    token_id = token.split("#pii:")[1].rstrip("]")
    assert vault.detokenize(f"use #pii:{token_id} now") == f"use {MC} now"


def test_unknown_tokens_are_left_as_written() -> None:
    vault = PiiVault(key=KEY)
    foreign = PiiVault(key=KEY).tokenize(VISA)

    assert vault.detokenize({"card": foreign}) == {"card": foreign}


def test_vault_mapping_survives_to_dict_from_dict() -> None:
    vault = PiiVault(key=KEY)
    tokenized = vault.tokenize(f"{AMEX} and bob@pay.example")

    restored = PiiVault.from_dict(json.loads(json.dumps(vault.to_dict())), key=KEY)

    assert restored.detokenize(tokenized) == f"{AMEX} and bob@pay.example"
    assert restored.tokenize(f"{AMEX} and bob@pay.example") == tokenized
    assert restored.take_new() == {}


def test_take_new_reports_each_entry_once() -> None:
    vault = PiiVault(key=KEY)
    vault.tokenize_obj({"pan": int(VISA), "mail": "a@b.co"})

    new = vault.take_new()

    assert sorted(new.values()) == sorted([VISA, "a@b.co"])
    assert vault.take_new() == {}


def test_strip_token_ids_leaves_plain_masks() -> None:
    vault = PiiVault(key=KEY)
    assert strip_token_ids(vault.tokenize(f"card {VISA}.")) == "card [card ****1111]."


# --------------------------------------------------------------------------- sealers


class _XorTestCipher:
    """Test double standing in for Fernet; not encryption."""

    def encrypt(self, data: bytes, /) -> bytes:
        return bytes(b ^ 0x5A for b in data)

    def decrypt(self, token: bytes, /) -> bytes:
        return bytes(b ^ 0x5A for b in token)


def test_cipher_sealer_stores_no_original_and_round_trips() -> None:
    sealer = CipherSealer(cipher=_XorTestCipher())
    entries = {"3f2a9c1b": VISA, "0a0b0c0d": "jane@x.io"}

    sealed = seal_entries(entries, sealer)

    assert all(v.startswith("enc:") for v in sealed.values())
    assert VISA not in json.dumps(sealed) and "jane@x.io" not in json.dumps(sealed)
    assert unseal_entries(sealed, sealer) == entries


def test_in_memory_sealer_handles_are_random_and_lost_with_the_process() -> None:
    sealer = InMemorySealer(max_entries=2)

    first, second, third = sealer.seal(VISA), sealer.seal(VISA), sealer.seal(MC)

    assert first != second and first.startswith("mem:") and VISA not in first
    assert sealer.unseal(first) is None  # oldest dropped beyond max_entries
    assert sealer.unseal(third) == MC
    assert InMemorySealer().unseal(third) is None  # another process
    assert unseal_entries({"a": first, "b": third}, sealer) == {"b": MC}


# --------------------------------------------------------------------------- logging


@pytest.fixture
def log_stream() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    logger = logging.getLogger("tests.skills.pii")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s %(customer)s"))
    logger.addHandler(handler)
    yield logger, stream
    logger.removeHandler(handler)
    for log_filter in list(logger.filters):
        logger.removeFilter(log_filter)
    logger.propagate = True


def test_log_filter_masks_formatted_args_and_extra(
    log_stream: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = log_stream
    install_log_filter(logger)

    logger.info(
        "card %s for %s", VISA, "jane@x.io", extra={"customer": {"iban": "DE89370400440532013000"}}
    )

    output = stream.getvalue()
    assert "card [card ****1111] for [email ***@x.io]" in output
    assert VISA not in output and "jane@x.io" not in output
    assert "DE89370400440532013000" not in output and "[iban DE** ****3000]" in output


def test_log_filter_masks_pan_split_between_message_and_args(
    log_stream: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = log_stream
    install_log_filter(logger)

    logger.info("card 4111 1111 %s", "1111 1111", extra={"customer": "-"})

    assert "[card ****1111]" in stream.getvalue()
    assert VISA not in squeeze(stream.getvalue())


def test_log_filter_masks_exception_text(log_stream: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = log_stream
    install_log_filter(logger)

    try:
        raise ValueError(f"card {MC} declined")
    except ValueError:
        logger.exception("charge failed", extra={"customer": "-"})

    output = stream.getvalue()
    assert "ValueError: card [card ****4444] declined" in output
    assert MC not in output


def test_handler_filter_catches_child_loggers_and_install_is_idempotent(
    log_stream: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = log_stream

    first = install_log_filter(logger)
    again = install_log_filter(logger)
    logging.getLogger("tests.skills.pii.child").warning("pan %s", VISA, extra={"customer": "-"})

    assert first is again
    assert sum(isinstance(f, PiiLogFilter) for f in logger.filters) == 1
    assert "pan [card ****1111]" in stream.getvalue()
