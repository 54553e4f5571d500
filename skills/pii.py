"""Find, mask and tokenize personal data: card numbers, IBANs, e-mails, phone numbers.

Pure functions and small value objects, no I/O. Three ways to hide a value:

* **Masking** (`mask_text`, `mask_obj`) replaces it with a short label that keeps just
  enough for a human to recognise it, and cannot be reversed::

      card   4111 1111 1111 1111     -> [card ****1111]
      IBAN   GB82 WEST 1234 5698 7654 32 -> [iban GB** ****5432]   (country, last four)
      e-mail jane.doe@example.com    -> [email ***@example.com]   (local part never shown)
      phone  +971 50 123 4567        -> [phone ***67]             (last two digits)

  Use it for logs (`PiiLogFilter`), Slack cards and anything stored.
* **Pseudonyms** (`pseudonym`) are a keyed HMAC-SHA256 of the value, for storing a stable
  identifier ("same card as last week") without the value. Never a bare hash: card numbers
  have so little entropy that an unkeyed hash is reversible by enumeration.
* **Tokens** (`PiiVault`) are masks with an id, ``[card ****1111 #pii:3f2a9c1b]``, plus a
  mapping from id to the original kept by the vault. This is what the agent middleware
  (`skills.middleware.pii`) uses: the model only ever sees tokens; tokens in a tool call's
  arguments are resolved to the originals only at tool-call time, inside the middleware, so
  a tool that needs the real card number (an HTTP call to the card processor) receives it;
  the tool's result is tokenized again before the model sees it or it enters the state.
  The token id is a short HMAC of the value under the vault key, so the same value gets the
  same token every time within a thread and the model can refer to it consistently.

  The vault's mapping holds originals, so it must never be stored in the clear:
  `PiiVault.to_dict` / `from_dict` give the plain mapping, and `seal_entries` /
  `unseal_entries` turn it into a form safe to store with a `VaultSealer`:
  `CipherSealer` encrypts each original with a Fernet-compatible cipher (the form to use
  in production, keyed from settings); `InMemorySealer` keeps originals in process memory
  and stores only random handles, for deployments without a cipher — tokens then stop
  resolving after a restart, which fails safe (a tool receives the masked token).

Detection rules, chosen to catch every real card number while leaving ordinary numbers
(order ids, Slack timestamps, dates, amounts) alone. Text is first normalized
(`skills._normalize`: NFKC, every Unicode digit as ASCII, zero-width characters and soft
hyphens dropped, JSON escapes such as ``\\u0034`` decoded), so full-width digits, a
zero-width space between digit groups and an escaped tool result are seen as the digits
they are; spans still refer to the text as given.

* Card numbers: 13-19 digits, Luhn-valid, with issuer digits a payment card can have
  (`_plausible_pan`), unbroken or split into groups by a short run (1-3) of whitespace,
  dots, slashes, underscores or dashes. One space or one dash may split them in any
  grouping (``4111 1111 1111 1111``, ``41 11 11…``); anything else (``4111.1111…``,
  newlines, ``" - "``) only in a card's layout, a first group of 4-6 digits
  (`_grouping_ok`). A run of groups longer than 19 digits (two cards in a row, a card
  followed by its expiry) is searched for cards made of whole groups, never starting or
  ending at a decimal point. Thousands grouping (``1 234 567 890 123``) is an amount.
* IBANs: country code, two check digits and the country's registered length, with or
  without single spaces, ISO 7064 mod-97 checksum verified.
* E-mails: ``local@host.tld`` with RFC 5321's length caps (local part 64, domain 255).
* Phone numbers: 9-15 digits *with phone formatting* — a leading ``+``, a parenthesised
  area code, ``415-555-0100`` / ``415.555.0100``, or a spaced trunk-prefix number such as
  ``050 123 4567``. A plain digit string is never a phone number.

Every pattern is linear: possessive quantifiers (no backtracking into a digit run) and
bounded per-candidate work, so 1 MB of adversarial text is masked in well under a second
(``bench/pii.py``). Callers on an event loop offload large texts (`OFFLOAD_CHARS`).

When matches overlap, the more specific kind wins: IBAN, then e-mail, card, phone.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import logging
import re
import secrets
from base64 import urlsafe_b64decode, urlsafe_b64encode
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final, Literal, Protocol

from skills._normalize import normalize

__all__ = [
    "DEFAULT_DETECTORS",
    "OFFLOAD_CHARS",
    "CipherSealer",
    "Detector",
    "InMemorySealer",
    "PiiKind",
    "PiiLogFilter",
    "PiiMatch",
    "PiiVault",
    "VaultCipher",
    "VaultSealer",
    "detect_cards",
    "detect_emails",
    "detect_ibans",
    "detect_phones",
    "find_pii",
    "install_log_filter",
    "luhn_valid",
    "mask_obj",
    "mask_text",
    "mask_value",
    "pseudonym",
    "seal_entries",
    "strip_token_ids",
    "unseal_entries",
]

PiiKind = Literal["card", "iban", "email", "phone"]

_MIN_KEY_BYTES: Final = 16

OFFLOAD_CHARS: Final = 64_000
"""Texts longer than this are masked in a worker thread by async callers (the model
wrapper, the agent middleware), so a 1 MB tool result never stalls the event loop."""


@dataclass(frozen=True, slots=True)
class PiiMatch:
    """One piece of personal data found in a text: ``text[start:end] == value``.

    ``normalized`` is the value as detected, when the text spelled it differently (a JSON
    escape, full-width digits, a zero-width space inside): labels, tokens and the vault use
    that spelling, so ``\\u0034111…`` is masked as the card it is.
    """

    kind: PiiKind
    start: int
    end: int
    value: str
    normalized: str | None = None

    @property
    def plain(self) -> str:
        """The value in detection spelling (``normalized`` when set, else ``value``)."""
        return self.value if self.normalized is None else self.normalized

    @property
    def masked(self) -> str:
        """The irreversible label that replaces the value, e.g. ``[card ****1111]``."""
        return mask_value(self.kind, self.plain)


Detector = Callable[[str], Iterable[PiiMatch]]
"""A function that finds one kind of personal data in a (normalized) text."""


# --------------------------------------------------------------------------- cards

# Between digit groups: a short run (1-3) of whitespace, dots, slashes, underscores or
# dashes (ASCII and Unicode). Text is normalized first (NFKC), so NBSP and thin spaces
# arrive as spaces and full-width digits as ASCII.
_SEP_CHARS = r"\s./_\-\u2010-\u2015\u2212"
_DIGIT_RUN = re.compile(rf"[0-9]++(?:[{_SEP_CHARS}]{{1,3}}+[0-9]++)*+")
_DIGIT_GROUP = re.compile(r"[0-9]++")
# The separators the first detector accepted in any grouping: one space or one dash.
_SIMPLE_SEP = re.compile(r"[ \-\u2010-\u2015\u2212]")
_CARD_MIN, _CARD_MAX = 13, 19
_LUHN_DOUBLED: Final = str.maketrans("0123456789", "0246813579")  # 2d, minus 9 past 9


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits passes the Luhn check used by every card scheme."""
    backwards = digits[::-1]
    return sum(map(int, backwards[0::2] + backwards[1::2].translate(_LUHN_DOUBLED))) % 10 == 0


def _plausible_pan(digits: str) -> bool:
    """Issuer-number rules (ISO/IEC 7812) that every payment card satisfies.

    The major-industry digit 0 (ISO) and 7 (petroleum) issue no payment cards; 1 is UATP,
    always 15 digits; cards starting with 2 are Mastercard (2221-2720), Mir (2200-2204) or
    enRoute (2014, 2149); 13-digit cards are Visa or Maestro (4, 5, 6). These rules keep
    Unix timestamps in ms/µs, ``YYYYMMDD…`` stamps and zero-padded ids out.
    """
    first = digits[0]
    if first in "07" or (first == "1" and len(digits) != 15):
        return False
    if len(digits) == 13 and first not in "456":
        return False
    if first == "2":
        head = int(digits[:4])
        return 2221 <= head <= 2720 or 2200 <= head <= 2204 or head in (2014, 2149)
    return True


@lru_cache(maxsize=8192)
def _pan_ok(digits: str) -> bool:
    """`_plausible_pan` and `luhn_valid`, remembered: floods repeat the same windows."""
    return _plausible_pan(digits) and luhn_valid(digits)


@lru_cache(maxsize=8192)
def _grouping_ok(sizes: tuple[int, ...], seps: tuple[str, ...]) -> bool:
    """Whether digit groups of these sizes, split by these separators, look like one card.

    * Groups before the last have at least 2 digits (``1 2 3 4 …`` is a list).
    * Thousands grouping (``1 234 567 890 123``) is an amount.
    * With anything but one space or one dash between groups (dots, slashes, newlines,
      ``" - "``…), the layout must be a card's: a first group of 4-6 digits, then groups
      of 3-6, the last of 1-6 (``4111.1111.1111.1111``, ``3782 - 822463 - 10005``);
      that keeps Slack timestamps, IP addresses and dotted versions out.
    * A first group longer than 6 digits only in equal halves (``41111111 11111111``).
    """
    if len(sizes) == 1:
        return True
    if min(sizes[:-1]) < 2:
        return False
    if sizes[0] <= 3 and len(sizes) >= 3 and all(size == 3 for size in sizes[1:]):
        return False
    if sizes[0] > 6 and len(set(sizes)) > 1:
        return False  # "20240115 103015": a date and a time, not "41111111 11111111"
    if all(len(sep) == 1 and _SIMPLE_SEP.fullmatch(sep) for sep in seps):
        return True
    return 4 <= sizes[0] <= 6 and all(3 <= s <= 6 for s in sizes[1:-1]) and sizes[-1] <= 6


def detect_cards(text: str) -> Iterator[PiiMatch]:
    """Luhn-valid card numbers of 13-19 digits, unbroken or in groups (see `_grouping_ok`).

    Work per digit group is bounded (a card spans at most 19 digits) and the groups and
    separators of a run are split out by the regex engine, so the scan is linear in the
    length of the text with a small constant.
    """
    for run in _DIGIT_RUN.finditer(text):
        if run.end() - run.start() < _CARD_MIN:
            continue
        chunk = run.group()
        groups = _DIGIT_GROUP.findall(chunk)
        if len(groups) == 1:
            if _CARD_MIN <= len(chunk) <= _CARD_MAX and _plausible_pan(chunk) and luhn_valid(chunk):
                yield PiiMatch("card", run.start(), run.end(), chunk)
            continue
        seps = _DIGIT_GROUP.split(chunk)[1:-1]  # seps[k] lies between groups k and k+1
        yield from _cards_in_run(text, run.start(), run.end(), groups, seps)


def _cards_in_run(
    text: str, base: int, end: int, groups: list[str], seps: list[str]
) -> Iterator[PiiMatch]:
    """Cards made of whole groups of the digit run ``text[base:end]``.

    A card inside a longer run never starts or ends at a decimal point
    (``6.5677720442048`` is a number, not a card), except for a float's trailing ``.0``
    (``4111111111111111.0``); any other separator may bound it ("VISA MC",
    ``4111 1111 1111 1111/12/27``, a card followed by its expiry).
    """
    sizes = [len(group) for group in groups]
    if max(sizes) < 2:
        return  # "1 1 1 …": no group can start a card
    count = len(groups)
    decimal = [sep == "." for sep in seps]
    offsets: list[int] | None = None  # where each group starts, once a card is found
    index = 0
    while index < count:
        if sizes[index] < 2 or (index and decimal[index - 1]):
            index += 1
            continue
        best = -1
        digits = ""
        for last in range(index, count):
            if last > index and sizes[last - 1] < 2:
                break
            digits += groups[last]
            if len(digits) > _CARD_MAX:
                break
            if len(digits) < _CARD_MIN:
                continue
            floats = last + 2 == count and not groups[-1].strip("0")  # a float's ".0"
            if last < count - 1 and decimal[last] and not floats:
                continue
            if _pan_ok(digits) and _grouping_ok(
                tuple(sizes[index : last + 1]), tuple(seps[index:last])
            ):
                best = last
        if best < 0:
            index += 1
            continue
        if offsets is None:
            offsets = [m.start() for m in _DIGIT_GROUP.finditer(text, base, end)]
        start = offsets[index]
        stop = offsets[best] + sizes[best]
        yield PiiMatch("card", start, stop, text[start:stop])
        index = best + 1


# --------------------------------------------------------------------------- IBANs

# Registered IBAN lengths (SWIFT IBAN registry), plus territories that use their parent
# country's format.
_IBAN_LENGTHS: Final[Mapping[str, int]] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24,
    "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27,
    "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20,
    "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
    "YE": 30, "AX": 18, "GF": 27, "GP": 27, "MQ": 27, "RE": 27, "PF": 27, "TF": 27,
    "YT": 27, "NC": 27, "BL": 27, "MF": 27, "PM": 27, "WF": 27,
}  # fmt: skip
_IBAN_START = re.compile(r"(?<![A-Za-z0-9])([A-Za-z]{2})[0-9]{2}")


def _is_alnum(char: str) -> bool:
    return char.isascii() and char.isalnum()


def _iban_checksum_ok(compact: str) -> bool:
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def detect_ibans(text: str) -> Iterator[PiiMatch]:
    """IBANs of the registered length for their country, mod-97 checksum verified.

    Characters may be split by single spaces; at most 34 characters are read per
    candidate, so the scan is linear.
    """
    for start_match in _IBAN_START.finditer(text):
        length = _IBAN_LENGTHS.get(start_match.group(1).upper())
        if length is None:
            continue
        body = _iban_body(length - 4).match(text, start_match.end())
        if body is None:
            continue
        end = body.end()
        if end < len(text) and _is_alnum(text[end]):
            continue  # glued to more text
        start = start_match.start()
        if _iban_checksum_ok(text[start:end].replace(" ", "").upper()):
            yield PiiMatch("iban", start, end, text[start:end])


@lru_cache(maxsize=64)
def _iban_body(chars: int) -> re.Pattern[str]:
    """``chars`` letters or digits, each optionally after one space (no backtracking)."""
    return re.compile(rf"(?: ?+[A-Za-z0-9]){{{chars}}}")


# --------------------------------------------------------------------------- e-mails

# A linear scan for ``local@domain-ish`` (possessive: no backtracking), then the domain is
# checked label by label in Python. Length caps from RFC 5321: local part 64, domain 255.
_EMAIL_CANDIDATE = re.compile(r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]++@[A-Za-z0-9.\-]++")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?")
_EMAIL_LOCAL_MAX, _EMAIL_DOMAIN_MAX = 64, 255


def _email_domain(domain: str) -> str | None:
    """The longest prefix of ``domain`` that is a host name ending in a letters-only TLD."""
    if len(domain) > _EMAIL_DOMAIN_MAX:
        return None
    labels = domain.split(".")
    valid = 0
    while valid < len(labels) and _LABEL.fullmatch(labels[valid]):
        valid += 1
    for last in range(valid - 1, 0, -1):
        tld = labels[last]
        if len(tld) >= 2 and tld.isalpha():
            return ".".join(labels[: last + 1])
    return None


def detect_emails(text: str) -> Iterator[PiiMatch]:
    """E-mail addresses (``local@domain.tld``)."""
    for match in _EMAIL_CANDIDATE.finditer(text):
        local, _, domain = match.group().partition("@")
        if len(local) > _EMAIL_LOCAL_MAX:
            continue
        host = _email_domain(domain)
        if host is None:
            continue
        end = match.start() + len(local) + 1 + len(host)
        if end < len(text) and (_is_alnum(text[end]) or text[end] == "-"):
            continue
        yield PiiMatch("email", match.start(), end, text[match.start() : end])


# --------------------------------------------------------------------------- phones

# Possessive quantifiers throughout: a digit run is taken whole and never re-split, so a
# long run of digits costs one pass instead of exponentially many (the old pattern took
# more than a minute on 1 MB of "+" and digits).
_PHONE = re.compile(
    r"""
      (?<![\w+])\+[0-9]{1,3}+(?:[ .\-]?+\([0-9]{1,4}+\))?+(?:[ .\-]?+[0-9]++){0,5}+(?![0-9)])
    | (?<![\w)])\([0-9]{2,4}+\)[ .\-]?+[0-9]++(?:[ .\-][0-9]++){0,3}+(?![0-9])
    | (?<![\w.\-+])[0-9]{3}([.\-])[0-9]{3}\1[0-9]{4}(?![\w.\-])
    | (?<![\w.\-+])(?<![0-9][ \-])0[0-9]{1,4}+(?:[ \-][0-9]{2,4}+){2,3}+(?![\w]|[ \-][0-9])
    """,
    re.VERBOSE,
)
_PHONE_MIN, _PHONE_MAX = 9, 15
_PHONE_GROUP_MAX = 8


def detect_phones(text: str) -> Iterator[PiiMatch]:
    """Phone numbers with phone formatting and 9-15 digits; plain digit strings never match."""
    for match in _PHONE.finditer(text):
        value = match.group()
        digit_count = sum(char.isdigit() for char in value)
        if not _PHONE_MIN <= digit_count <= _PHONE_MAX:
            continue
        if value[0] != "+" and max(map(len, _DIGIT_GROUP.findall(value))) > _PHONE_GROUP_MAX:
            continue
        yield PiiMatch("phone", match.start(), match.end(), value)


# --------------------------------------------------------------------------- finding

DEFAULT_DETECTORS: Final[tuple[Detector, ...]] = (
    detect_ibans,
    detect_emails,
    detect_cards,
    detect_phones,
)
"""Built-in detectors in priority order: an earlier detector wins an overlap."""

_TRIGGER = re.compile(r"[0-9@]")


def _start(match: PiiMatch) -> int:
    return match.start


def _merge(accepted: list[PiiMatch], found: list[PiiMatch]) -> list[PiiMatch]:
    """``accepted`` plus the ``found`` matches that overlap none of them, in order.

    Both lists are sorted by start and free of overlaps among themselves, so one pass over
    each suffices: linear, where testing every pair was quadratic in the number of matches.
    """
    if not accepted:
        return found
    kept: list[PiiMatch] = []
    index = 0
    for match in found:
        while index < len(accepted) and accepted[index].end <= match.start:
            index += 1
        if index < len(accepted) and accepted[index].start < match.end:
            continue
        kept.append(match)
    return list(heapq.merge(accepted, kept, key=_start))


def find_pii(text: str, *, detectors: Iterable[Detector] = DEFAULT_DETECTORS) -> list[PiiMatch]:
    """All personal data in ``text``: non-overlapping matches sorted by position.

    The text is normalized first (`skills._normalize`: NFKC, Unicode digits as ASCII,
    zero-width characters dropped, JSON escapes decoded); spans refer to ``text`` as given.
    Overlaps are settled by detector order (see `DEFAULT_DETECTORS`), so an IBAN whose
    digits happen to contain a Luhn-valid run is reported once, as an IBAN.
    """
    norm = normalize(text)
    scanned = norm.text
    if _TRIGGER.search(scanned) is None:
        return []
    accepted: list[PiiMatch] = []
    for detector in detectors:
        accepted = _merge(accepted, sorted(detector(scanned), key=_start))
    if not norm.changed:
        return accepted
    mapped: list[PiiMatch] = []
    for match in accepted:
        start, end = norm.span(match.start, match.end)
        value = text[start:end]
        mapped.append(
            PiiMatch(match.kind, start, end, value, None if value == match.value else match.value)
        )
    return mapped


# --------------------------------------------------------------------------- masking


def _digits(value: str) -> str:
    return "".join(char for char in value if char.isdigit())


def _compact(value: str) -> str:
    return "".join(char for char in value if _is_alnum(char)).upper()


def mask_value(kind: PiiKind, value: str) -> str:
    """The irreversible label for one value of the given kind (formats in module docstring)."""
    if kind == "card":
        return f"[card ****{_digits(value)[-4:]}]"
    if kind == "iban":
        compact = _compact(value)
        return f"[iban {compact[:2]}** ****{compact[-4:]}]"
    if kind == "email":
        return f"[email ***@{value.rsplit('@', 1)[-1].lower()}]"
    return f"[phone ***{_digits(value)[-2:]}]"


def _replace(text: str, matches: list[PiiMatch], render: Callable[[PiiMatch], str]) -> str:
    if not matches:
        return text
    parts: list[str] = []
    cursor = 0
    for match in matches:
        parts.append(text[cursor : match.start])
        parts.append(render(match))
        cursor = match.end
    parts.append(text[cursor:])
    return "".join(parts)


def mask_text(text: str) -> str:
    """``text`` with every card number, IBAN, e-mail and phone number masked."""
    return _replace(text, find_pii(text), lambda match: match.masked)


def _card_int(value: int | float) -> str | None:
    """A card number given as a JSON number (integer, or a float with no fraction, which is
    what some serializers emit), as digits; otherwise None."""
    if isinstance(value, float):
        if not value.is_integer() or not 1e12 <= abs(value) < 1e19:
            return None
        value = int(value)
    digits = str(abs(value))
    if _CARD_MIN <= len(digits) <= _CARD_MAX and _plausible_pan(digits) and luhn_valid(digits):
        return digits
    return None


def mask_obj(obj: Any) -> Any:
    """Mask strings inside nested dicts, lists and tuples (tool results, JSON arguments).

    Dict keys are masked too. A number that is a Luhn-valid 13-19 digit card number (sent
    as a JSON integer, or as a float such as ``4111111111111111.0``) becomes its masked
    label. Other values are returned as is.
    """
    if isinstance(obj, str):
        return mask_text(obj)
    if isinstance(obj, bool):
        return obj
    if isinstance(obj, int | float):
        digits = _card_int(obj)
        return obj if digits is None else mask_value("card", digits)
    if isinstance(obj, dict):
        return {mask_obj(key): mask_obj(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [mask_obj(item) for item in obj]
    if isinstance(obj, tuple):
        return tuple(mask_obj(item) for item in obj)
    return obj


def _check_key(key: bytes) -> None:
    if len(key) < _MIN_KEY_BYTES:
        msg = f"PII keys must be at least {_MIN_KEY_BYTES} random bytes"
        raise ValueError(msg)


def pseudonym(value: str, *, key: bytes) -> str:
    """A stable, non-reversible identifier for ``value``: hex HMAC-SHA256 under ``key``.

    The same value and key always give the same pseudonym; without the key it can be
    neither reversed nor recomputed (unlike a bare hash of a card number).
    """
    _check_key(key)
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------- tokens

_TOKEN_ID_LENGTHS: Final = (8, 12)  # hex chars; 12 only on a (rare) collision. Both stay
# below 13 characters, so a token id can never itself look like a card number.
_TOKEN = re.compile(
    r"\[(?:card|iban|email|phone)\b[^\[\]\n]{0,60}?#pii:(?P<full>[0-9a-f]{12}|[0-9a-f]{8})\]"
    r"|#pii:(?P<bare>[0-9a-f]{12}|[0-9a-f]{8})(?![0-9a-f])"
)
_TOKEN_ID_SUFFIX = re.compile(r" #pii:(?:[0-9a-f]{12}|[0-9a-f]{8})\]")


def strip_token_ids(text: str) -> str:
    """Vault tokens shown as plain masks: ``[card ****1111 #pii:3f2a9c1b]`` -> ``[card ****1111]``.

    For rendering model output to people, who have no use for the token id.
    """
    return _TOKEN_ID_SUFFIX.sub("]", text)


def _canonical(match: PiiMatch) -> str:
    """One spelling per value, so differently formatted copies share a token."""
    value = match.plain
    if match.kind == "card":
        return _digits(value)
    if match.kind == "iban":
        return _compact(value)
    if match.kind == "email":
        return value.lower()
    return ("+" if value.lstrip().startswith("+") else "") + _digits(value)


class PiiVault:
    """Swaps personal data for stable tokens and back, remembering token id -> original.

    ``tokenize`` replaces each value with ``[card ****1111 #pii:<id>]`` where ``<id>`` is a
    short HMAC of the value under ``key``; ``detokenize`` puts the originals back into tool
    call arguments. Tokens the vault does not know (typed by a user, or from another thread)
    are left as they are. Card numbers and IBANs are remembered in compact form (digits
    only, upper case without spaces), which is what the APIs that need them accept; e-mails
    and phone numbers as first written.
    """

    def __init__(
        self,
        *,
        key: bytes,
        entries: Mapping[str, str] | None = None,
        detectors: Iterable[Detector] = DEFAULT_DETECTORS,
    ) -> None:
        _check_key(key)
        self._key = key
        self._detectors = tuple(detectors)
        self._originals: dict[str, str] = dict(entries or {})
        self._canonical: dict[str, str] = {}
        self._new: dict[str, str] = {}

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, str],
        *,
        key: bytes,
        detectors: Iterable[Detector] = DEFAULT_DETECTORS,
    ) -> PiiVault:
        """A vault holding the mapping previously returned by `to_dict`."""
        return cls(key=key, entries=data, detectors=detectors)

    def to_dict(self) -> dict[str, str]:
        """The token id -> original mapping. It holds raw personal data: seal before storing."""
        return dict(self._originals)

    def __len__(self) -> int:
        return len(self._originals)

    def __contains__(self, token_id: object) -> bool:
        return token_id in self._originals

    def take_new(self) -> dict[str, str]:
        """Entries added since construction or the last call, then forget that they are new.

        Lets a caller persist only what changed, e.g. as a state update.
        """
        new, self._new = self._new, {}
        return new

    def _token_id(self, match: PiiMatch) -> str:
        canonical = _canonical(match)
        digest = hmac.new(
            self._key, f"{match.kind}:{canonical}".encode(), hashlib.sha256
        ).hexdigest()
        for length in _TOKEN_ID_LENGTHS:
            token_id = digest[:length]
            known = self._canonical.get(token_id)
            if known is None and token_id in self._originals:
                # Loaded from storage: compare by the canonical form of the stored original.
                known = self._canonical[token_id] = _canonical(
                    PiiMatch(match.kind, 0, 0, self._originals[token_id])
                )
            if known is None or known == canonical:
                return token_id
        msg = "PII token id collision at every length"  # ~2^-48 for two values of one thread
        raise RuntimeError(msg)

    def _token_for(self, match: PiiMatch) -> str:
        token_id = self._token_id(match)
        if token_id not in self._originals:
            original = _canonical(match) if match.kind in ("card", "iban") else match.plain
            self._originals[token_id] = original
            self._canonical[token_id] = _canonical(match)
            self._new[token_id] = original
        return f"{match.masked[:-1]} #pii:{token_id}]"

    def tokenize(self, text: str) -> str:
        """``text`` with each personal value replaced by its token (idempotent)."""
        return _replace(text, find_pii(text, detectors=self._detectors), self._token_for)

    def tokenize_obj(self, obj: Any) -> Any:
        """`tokenize` applied to strings in nested dicts/lists/tuples, like `mask_obj`."""
        if isinstance(obj, str):
            return self.tokenize(obj)
        if isinstance(obj, bool):
            return obj
        if isinstance(obj, int | float):
            digits = _card_int(obj)
            return obj if digits is None else self._token_for(PiiMatch("card", 0, 0, digits))
        if isinstance(obj, dict):
            return {self.tokenize_obj(key): self.tokenize_obj(value) for key, value in obj.items()}
        if isinstance(obj, list):
            return [self.tokenize_obj(item) for item in obj]
        if isinstance(obj, tuple):
            return tuple(self.tokenize_obj(item) for item in obj)
        return obj

    def _resolve(self, match: re.Match[str]) -> str:
        token_id = match.group("full") or match.group("bare")
        return self._originals.get(token_id, match.group())

    def detokenize(self, obj: Any) -> Any:
        """Known tokens in strings (nested in dicts/lists/tuples) replaced by the originals.

        A token the model wrote bare (``#pii:3f2a9c1b``) resolves too.
        """
        if isinstance(obj, str):
            return _TOKEN.sub(self._resolve, obj) if "#pii:" in obj else obj
        if isinstance(obj, dict):
            return {self.detokenize(key): self.detokenize(value) for key, value in obj.items()}
        if isinstance(obj, list):
            return [self.detokenize(item) for item in obj]
        if isinstance(obj, tuple):
            return tuple(self.detokenize(item) for item in obj)
        return obj


# --------------------------------------------------------------------------- sealing


class VaultCipher(Protocol):
    """Symmetric authenticated encryption; ``cryptography.fernet.Fernet`` fits as is."""

    def encrypt(self, data: bytes, /) -> bytes: ...

    def decrypt(self, token: bytes, /) -> bytes: ...


class VaultSealer(Protocol):
    """Turns a vault original into a string that is safe to store, and back."""

    def seal(self, original: str) -> str:
        """A storable string standing for ``original``."""
        ...

    def unseal(self, sealed: str) -> str | None:
        """The original behind ``sealed``, or None when it can no longer be recovered."""
        ...


def seal_entries(entries: Mapping[str, str], sealer: VaultSealer) -> dict[str, str]:
    """Vault entries (token id -> original) with every original sealed."""
    return {token_id: sealer.seal(original) for token_id, original in entries.items()}


def unseal_entries(sealed: Mapping[str, str], sealer: VaultSealer) -> dict[str, str]:
    """Sealed entries back to token id -> original, dropping those that cannot be unsealed."""
    entries: dict[str, str] = {}
    for token_id, value in sealed.items():
        original = sealer.unseal(value)
        if original is not None:
            entries[token_id] = original
    return entries


class CipherSealer:
    """Seals originals by encrypting them; the sealed form is ``enc:`` + base64 ciphertext.

    Decryption failures (wrong key, tampering) raise the cipher's own error: a vault that
    cannot be read is a configuration problem that should stop the run, not be hidden.
    Rotate keys with a cipher that tries several (``MultiFernet``).
    """

    _PREFIX: Final = "enc:"

    def __init__(self, *, cipher: VaultCipher) -> None:
        self._cipher = cipher

    def seal(self, original: str) -> str:
        ciphertext = self._cipher.encrypt(original.encode("utf-8"))
        return self._PREFIX + urlsafe_b64encode(ciphertext).decode("ascii")

    def unseal(self, sealed: str) -> str | None:
        if not sealed.startswith(self._PREFIX):
            return None
        ciphertext = urlsafe_b64decode(sealed[len(self._PREFIX) :].encode("ascii"))
        return self._cipher.decrypt(ciphertext).decode("utf-8")


class InMemorySealer:
    """Keeps originals in this process's memory; the sealed form is a random handle.

    For deployments without a cipher: storage then holds only ``mem:<random>`` handles,
    which reveal nothing and cannot be guessed. Originals live as long as the process (and
    at most ``max_entries`` of them, oldest dropped first); after a restart or on another
    replica, handles no longer resolve and a tool receives the masked token instead of the
    value. Share one instance across all agents of a process.
    """

    _PREFIX: Final = "mem:"

    def __init__(self, *, max_entries: int = 100_000) -> None:
        self._max_entries = max_entries
        self._originals: dict[str, str] = {}

    def seal(self, original: str) -> str:
        handle = self._PREFIX + secrets.token_urlsafe(16)
        self._originals[handle] = original
        while len(self._originals) > self._max_entries:
            del self._originals[next(iter(self._originals))]
        return handle

    def unseal(self, sealed: str) -> str | None:
        return self._originals.get(sealed)


# --------------------------------------------------------------------------- logging

# Attributes every LogRecord has; anything else came in through ``extra=``.
_RECORD_ATTRS: Final = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()
) | {"message", "asctime", "taskName"}


class PiiLogFilter(logging.Filter):
    """Masks personal data in log records before any handler formats them.

    The message is formatted with its arguments first (PII may only appear once they are
    combined), masked, and stored back as ``record.msg`` with ``record.args`` cleared, so
    handlers print the masked text. Exception and stack text and string ``extra=`` fields
    are masked too. Never drops a record.
    """

    _formatter: Final = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):
            # A broken format string: keep everything, masked, rather than lose the record.
            message = f"{record.msg} {record.args!r}"
        record.msg = mask_text(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info)
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRS and isinstance(value, str | dict | list | tuple):
                setattr(record, name, mask_obj(value))
        return True


def install_log_filter(logger: logging.Logger | None = None) -> PiiLogFilter:
    """Attach one `PiiLogFilter` to ``logger`` (default: root) and each of its handlers.

    Handler filters are what catch records propagated from child loggers; a handler added
    to the logger later needs ``handler.addFilter(filter)`` with the returned filter.
    Calling this again reuses the installed filter.
    """
    target = logger if logger is not None else logging.getLogger()
    existing = [f for f in target.filters if isinstance(f, PiiLogFilter)]
    log_filter = existing[0] if existing else PiiLogFilter()
    if not existing:
        target.addFilter(log_filter)
    for handler in target.handlers:
        if not any(isinstance(f, PiiLogFilter) for f in handler.filters):
            handler.addFilter(log_filter)
    return log_filter
