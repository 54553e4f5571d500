"""Finding 4: card numbers written with dots, slashes, newlines, zero-width spaces, escapes…

The attack is simply to write a card number the way a person, a spreadsheet or a JSON
encoder does; each spelling below passed the old detector unmasked. Property-based tests
(hypothesis) generate Luhn-valid numbers of every scheme in random separators and random
contexts. The other side is measured too: on the corpus of 4,800 non-PII strings in
``data/pii_negatives.tsv`` (order ids, timestamps, versions, amounts, network ids, phone
numbers) the share masked wrongly must stay under 2 % (``bench/pii.py`` prints it beside the
old detector's, per category), and dates, timestamps and phone numbers are never a card.
"""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skills.pii import PiiVault, find_pii, luhn_valid, mask_obj, mask_text

VISA = "4111111111111111"
KEY = b"test-key-0123456789abcdef-0123456"
NEGATIVES = Path(__file__).parent / "data" / "pii_negatives.tsv"


def groups(pan: str, sep: str, size: int = 4) -> str:
    return sep.join(pan[i : i + size] for i in range(0, len(pan), size))


def escaped(pan: str) -> str:
    return "".join(f"\\u{ord(c):04x}" for c in pan)


def fullwidth(pan: str) -> str:
    return "".join(chr(0xFF10 + int(c)) for c in pan)


def arabic_indic(pan: str) -> str:
    return "".join(chr(0x0660 + int(c)) for c in pan)


SPELLINGS = {
    "dots": groups(VISA, "."),
    "slashes": groups(VISA, "/"),
    "underscores": groups(VISA, "_"),
    "newlines": groups(VISA, "\n"),
    "CRLF": groups(VISA, "\r\n"),
    "tabs": groups(VISA, "\t"),
    "double spaces": groups(VISA, "  "),
    "spaced dash": groups(VISA, " - "),
    "zero-width spaces": groups(VISA, "\u200b"),
    "word joiners": groups(VISA, "\u2060"),
    "soft hyphens": groups(VISA, "\u00ad"),
    "JSON escapes": escaped(VISA),
    "double-escaped JSON": escaped(VISA).replace("\\", "\\\\"),
    "full-width digits": fullwidth(VISA),
    "Arabic-Indic digits": arabic_indic(VISA),
    "float": VISA + ".0",
    "amex dots": "3782.822463.10005",
}


def squeeze(text: str) -> str:
    """Digits only, after the normalization a reader's eye does."""
    text = unicodedata.normalize("NFKC", text)
    text = text.encode().decode("unicode_escape") if "\\u" in text else text
    return "".join(
        str(unicodedata.decimal(c)) for c in text if unicodedata.decimal(c, None) is not None
    )


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_each_spelling_is_masked(spelling: str) -> None:
    text = f"customer card {SPELLINGS[spelling]} was declined"

    masked = mask_text(text)

    assert "4111111111111111" not in squeeze(masked) and "378282246310005" not in squeeze(masked)
    assert re.fullmatch(r"customer card \[card \*{4}\d{4}\](\.0)? was declined", masked), masked


@pytest.mark.parametrize(
    "written",
    ["4111 1111 1111 1111/12/27", "4111111111111111-123", "4111.1111.1111.1111 exp 12/27"],
)
def test_a_card_followed_by_its_expiry_or_cvv(written: str) -> None:
    assert mask_text(f"pay with {written}").startswith("pay with [card ****1111]")


def test_the_label_shows_the_real_last_four_digits() -> None:
    assert mask_text(f"pan {escaped('5555555555554444')}") == "pan [card ****4444]"
    assert mask_text(f"pan {fullwidth('5555555555554444')}") == "pan [card ****4444]"


def test_a_card_sent_as_a_json_float_is_masked() -> None:
    result = json.loads('{"pan": 4111111111111111.0, "amount": 12.5, "id": 1712345678123.0}')

    assert mask_obj(result) == {"pan": "[card ****1111]", "amount": 12.5, "id": 1712345678123.0}


def test_vault_stores_the_normalized_value_for_tools() -> None:
    vault = PiiVault(key=KEY)

    token = vault.tokenize(f"refund {groups(VISA, chr(0x200B))} to jane\u200b@x.io")

    assert vault.detokenize(token) == f"refund {VISA} to jane@x.io"


def test_spans_point_into_the_original_text() -> None:
    text = f"a {escaped(VISA)} b {fullwidth('5555555555554444')} c"

    matches = find_pii(text)

    assert [text[m.start : m.end] for m in matches] == [m.value for m in matches]
    assert [m.plain for m in matches] == [VISA, "5555555555554444"]
    assert mask_text(text) == "a [card ****1111] b [card ****4444] c"


# -- properties -----------------------------------------------------------------------------

PREFIXES = ["4", "51", "53", "55", "2221", "2720", "34", "37", "6011", "65", "35", "62", "36"]
LENGTHS = {"34": [15], "37": [15], "36": [14], "4": [13, 16, 19], "62": [16, 19]}
SEPARATORS = [" ", "-", ".", "/", "_", "\n", "\r\n", "\t", "  ", " - ", "\u200b", "\u00a0"]
CONTEXTS = [
    "{}",
    "card {} declined",
    '{{"pan": "{}"}}',
    "https://pay.example/c?pan={}&x=1",
    "`{}`",
    "> {}\nthanks",
    "*{}*",
    "(card: {})",
]


@st.composite
def pans(draw: st.DrawFn) -> str:
    prefix = draw(st.sampled_from(PREFIXES))
    length = draw(st.sampled_from(LENGTHS.get(prefix, [16])))
    body = prefix + "".join(
        draw(
            st.lists(
                st.sampled_from("0123456789"),
                min_size=length - len(prefix) - 1,
                max_size=length - len(prefix) - 1,
            )
        )
    )
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


@st.composite
def written(draw: st.DrawFn) -> tuple[str, str]:
    pan = draw(pans())
    style = draw(st.sampled_from(["plain", "grouped", "escaped", "fullwidth"]))
    if style == "grouped":
        spelled = groups(pan, draw(st.sampled_from(SEPARATORS)))
    elif style == "escaped":
        spelled = escaped(pan)
    elif style == "fullwidth":
        spelled = fullwidth(pan)
    else:
        spelled = pan
    return pan, draw(st.sampled_from(CONTEXTS)).format(spelled)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(written())
def test_any_card_in_any_separator_and_context_is_masked(case: tuple[str, str]) -> None:
    pan, text = case

    masked = mask_text(text)

    assert pan not in squeeze(masked)
    assert f"[card ****{pan[-4:]}]" in masked


@settings(max_examples=150, deadline=None)
@given(
    written(),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Nd", "Cs"]), max_size=30),
)
def test_text_around_a_card_is_kept_as_written(case: tuple[str, str], around: str) -> None:
    pan, text = case
    around = re.sub(r"[\s./_\-\\@+()\u2010-\u2015\u2212]", "", around)  # nothing that joins
    hypothesis_text = f"{around} :: {text} :: {around}"

    masked = mask_text(hypothesis_text)

    assert masked.startswith(f"{around} :: ") and masked.endswith(f" :: {around}")
    assert pan not in squeeze(masked)


# -- the other side: what must stay unmasked -----------------------------------------------


def _negatives() -> list[tuple[str, str]]:
    rows = []
    for line in NEGATIVES.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            category, _, text = line.partition("\t")
            rows.append((category, text))
    return rows


def test_false_positive_rate_on_non_pii_numbers_is_measured_and_low() -> None:
    rows = _negatives()
    wrong = [
        (category, text)
        for category, text in rows
        if any(not (category == "phone" and m.kind == "phone") for m in find_pii(text))
    ]

    rate = len(wrong) / len(rows)
    assert len(rows) == 4800
    assert rate < 0.02, f"{rate:.2%} of non-PII strings masked, e.g. {wrong[:5]}"
    never = {"timestamp", "date", "phone"}
    assert [w for w in wrong if w[0] in never] == []


@pytest.mark.parametrize(
    "text",
    [
        "ts 1712345678.123456",
        "at 1712345678123 ms",
        "event 1712345678123456 us",
        "20240115 103015",
        "AED 152 026 229 763 798",
        "pi is 6.5677720442048",
        "hosts 192.168.100.200/192.168.100.201",
        "version 4.2.1.1234.5678.9012",
    ],
)
def test_numbers_that_look_like_cards_but_are_not(text: str) -> None:
    assert find_pii(text) == []
