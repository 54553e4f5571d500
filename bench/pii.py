"""PII detection: the detector before issue #18 beside today's, on 1 MB inputs and a corpus.

Three tables, old and new measured in the same run:

* **time** to mask 1 MB of adversarial and ordinary input. Each measurement runs in its own
  process with a time budget (``--budget``, default 60 s); a run over budget is shown as
  ``>60 s``. The old detector's regular expressions are copied below verbatim as the
  baseline (``_Old``), so the comparison survives further changes to ``skills.pii``.
* **false positives** on the corpus of non-PII numbers in
  ``tests/security/data/pii_negatives.tsv`` (order ids, timestamps, versions, amounts,
  network ids, phone numbers; a phone may be masked as a phone, nothing else may be
  masked): the share of strings where anything was masked wrongly, per category.
* **recall** on card numbers written the ways issue #18 lists (dots, slashes, newlines,
  zero-width spaces, JSON escapes, full-width digits…), generated from a fixed seed.

    .venv/bin/python bench/pii.py [--size 1000000] [--budget 60] [--quick]
    .venv/bin/python bench/pii.py --write-corpus   # regenerate the negatives file
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from skills import pii  # noqa: E402

CORPUS = ROOT / "tests" / "security" / "data" / "pii_negatives.tsv"


# --------------------------------------------------------------------------- the baseline


class _Old:
    """The detector as it was before issue #18 (skills/pii.py at 04fcc3c), verbatim."""

    CARD_SEP = " \u00a0\u2009\u202f\u2010\u2011\u2012\u2013-"
    DIGIT_RUN = re.compile(rf"\d(?:[{CARD_SEP}]?\d)*")
    DIGIT_GROUP = re.compile(r"\d+")
    EMAIL = re.compile(
        r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}(?![A-Za-z0-9\-])"
    )
    PHONE = re.compile(
        r"""
          (?<![\w+])\+\d{1,3}(?:[ .\-]?(?:\(\d{1,4}\)|\d{1,5})){1,6}(?![\d)])   # +971 50 123 4567
        | (?<![\w)])\(\d{2,4}\)[ .\-]?\d{2,4}(?:[ .\-]?\d{2,4}){1,3}(?!\d)      # (415) 555-0100
        | (?<![\w.\-+])\d{3}([.\-])\d{3}\1\d{4}(?![\w.\-])                     # 415-555-0100
        | (?<![\w.\-+])0\d{1,4}(?:[ \-]\d{2,4}){2,3}(?![\w]|[ \-]\d)           # 050 123 4567
        """,
        re.VERBOSE,
    )

    @staticmethod
    def luhn(digits: str) -> bool:
        total = 0
        for index, char in enumerate(reversed(digits)):
            value = int(char)
            if index % 2 == 1:
                value *= 2
                if value > 9:
                    value -= 9
            total += value
        return total % 10 == 0

    @classmethod
    def cards(cls, text: str) -> Iterator[tuple[str, int, int]]:
        for run in cls.DIGIT_RUN.finditer(text):
            groups = [
                (m.start() + run.start(), m.group()) for m in cls.DIGIT_GROUP.finditer(run.group())
            ]
            index = 0
            while index < len(groups):
                best = None
                digits = ""
                for last in range(index, len(groups)):
                    digits += groups[last][1]
                    if len(digits) > 19:
                        break
                    if len(digits) >= 13 and cls.luhn(digits):
                        best = (groups[index][0], groups[last][0] + len(groups[last][1]), last + 1)
                if best is None:
                    index += 1
                    continue
                yield "card", best[0], best[1]
                index = best[2]

    @classmethod
    def emails(cls, text: str) -> Iterator[tuple[str, int, int]]:
        for match in cls.EMAIL.finditer(text):
            yield "email", match.start(), match.end()

    @classmethod
    def phones(cls, text: str) -> Iterator[tuple[str, int, int]]:
        for match in cls.PHONE.finditer(text):
            if 9 <= sum(char.isdigit() for char in match.group()) <= 15:
                yield "phone", match.start(), match.end()

    @classmethod
    def ibans(cls, text: str) -> Iterator[tuple[str, int, int]]:
        for match in pii.detect_ibans(text):  # unchanged by issue #18
            yield "iban", match.start, match.end

    @classmethod
    def find(cls, text: str) -> list[tuple[str, int, int]]:
        if not any(char.isdigit() or char == "@" for char in text):
            return []
        accepted: list[tuple[str, int, int]] = []
        for detector in (cls.ibans, cls.emails, cls.cards, cls.phones):
            for kind, start, end in detector(text):
                if all(end <= s or start >= e for _, s, e in accepted):
                    accepted.append((kind, start, end))
        return sorted(accepted, key=lambda m: m[1])

    @classmethod
    def mask(cls, text: str) -> str:
        parts, cursor = [], 0
        for kind, start, end in cls.find(text):
            parts += [text[cursor:start], f"[{kind}]"]
            cursor = end
        return "".join([*parts, text[cursor:]])


def _new_find(text: str) -> list[tuple[str, int, int]]:
    return [(m.kind, m.start, m.end) for m in pii.find_pii(text)]


DETECTORS: dict[str, Callable[[str], list[tuple[str, int, int]]]] = {
    "old": _Old.find,
    "new": _new_find,
}

# --------------------------------------------------------------------------- inputs

VISA = "4111111111111111"


def _fill(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


def _chat(size: int, seed: int = 7) -> str:
    """Ordinary support-channel chatter with the odd card, e-mail and phone number."""
    rng = random.Random(seed)
    lines = [
        "Order {o} shipped on 2024-01-{d:02d}, tracking {t}.",
        "Refund of AED {a}.00 approved for ticket #{k}, thanks!",
        "Customer jane.doe{k}@example.com asked about card {c}.",
        "Call me on +971 50 {p} when you have a minute.",
        "Deploy v1.{d}.{k} finished in {a} ms, see thread 1712345678.{k:06d}",
        "Can someone look at the failed payout batch {o}? It's blocking finance ops.",
        "ok, checking now",
        "Merchant 4000{k:04d} reports a spike of declines since 10:{d:02d}.",
    ]
    out: list[str] = []
    length = 0
    while length < size:
        line = rng.choice(lines).format(
            o=rng.randrange(10**6, 10**7),
            d=rng.randrange(1, 29),
            t=f"1Z{rng.randrange(10**9, 10**10)}",
            a=rng.randrange(10, 99999),
            k=rng.randrange(1000, 9999),
            c="4111 1111 1111 1111" if rng.random() < 0.5 else "5555-5555-5555-4444",
            p=f"{rng.randrange(100, 999)} {rng.randrange(1000, 9999)}",
        )
        out.append(line)
        length += len(line) + 1
    return "\n".join(out)[:size]


INPUTS: dict[str, Callable[[int], str]] = {
    "phone killer: '+' and 40 digits": lambda n: _fill("+" + "1" * 40 + " ", n),
    "flood of '1 '": lambda n: _fill("1 ", n),
    "flood of '4111 '": lambda n: _fill("4111 ", n),
    "dotted digits '1.'": lambda n: _fill("1.", n),
    "e-mail labels 'a@a.a.a…'": lambda n: "x@" + _fill("a.", n - 3) + "-",
    "zero-width digits": lambda n: _fill("4\u200b1", n),
    "JSON escapes '\\u0034'": lambda n: _fill("\\u0034", n),
    "normal chat": _chat,
}

# --------------------------------------------------------------------------- corpora


def _luhn_complete(body: str) -> str:
    for check in "0123456789":
        if pii.luhn_valid(body + check):
            return body + check
    raise AssertionError("unreachable")


def negatives(seed: int = 18) -> list[tuple[str, str]]:
    """(category, text) strings that hold no card, IBAN or e-mail; phones only in ``phone``."""
    rng = random.Random(seed)
    r = rng.randrange

    def n2(low: int, high: int) -> str:
        return f"{r(low, high):02d}"

    def n3() -> str:
        return f"{r(0, 1000):03d}"

    def ip() -> str:
        return f"{r(1, 255)}.{r(0, 255)}.{r(0, 255)}.{r(0, 255)}"

    def g4() -> str:
        return str(r(1000, 9999))

    makers: dict[str, list[Callable[[], str]]] = {
        "order-id": [
            lambda: f"order {r(10**12, 2 * 10**12)} shipped",
            lambda: f"ORD-{r(2019, 2027)}-{r(10**5, 10**6)}",
            lambda: f"payout batch {r(10**13, 10**14)} failed",
            lambda: f"invoice INV/{r(2019, 2027)}/{r(1, 10**6):06d}",
            lambda: f"PO {r(45 * 10**8, 46 * 10**8)} and SO {r(10**9, 10**10)}",
            lambda: f"merchant {r(10**14, 10**15)} settlement",
            lambda: f"case {r(1000, 9999)}-{r(1000, 9999)}-{r(1000, 9999)}",
        ],
        "timestamp": [
            lambda: f"ts {r(1_600_000_000, 1_800_000_000)}.{r(0, 10**6):06d}",
            lambda: f"at {r(1_600_000_000_000, 1_800_000_000_000)} ms",
            lambda: f"event_time_us={r(1_600_000_000 * 10**6, 1_800_000_000 * 10**6)}",
            lambda: f"2024-{n2(1, 13)}-{n2(1, 29)}T{n2(0, 24)}:{n2(0, 60)}:{n2(0, 60)}.{n3()}Z",
            lambda: f"{r(2019, 2027)}{n2(1, 13)}{n2(1, 29)} {n2(0, 24)}{n2(0, 60)}{n2(0, 60)}",
            lambda: f"logged {r(2019, 2027)}/{n2(1, 13)}/{n2(1, 29)} {n2(0, 24)}:{n2(0, 60)}",
            lambda: f"nanos {r(1_600_000_000 * 10**9, 1_800_000_000 * 10**9)}",
        ],
        "version": [
            lambda: f"v{r(0, 5)}.{r(0, 40)}.{r(0, 200)}",
            lambda: f"build {r(2019, 2027)}{r(1, 13):02d}{r(1, 29):02d}.{r(1, 9999)}",
            lambda: f"release {r(1, 9)}.{r(0, 99)}.{r(0, 999)}.{r(10**6, 10**7)}",
            lambda: f"image sha {r(10**15, 10**16)}",
            lambda: f"chart {r(0, 9)}.{r(0, 99)}.{r(0, 99)}-rc.{r(0, 9)}+{r(10**5, 10**6)}",
        ],
        "amount": [
            lambda: f"AED {r(1, 999)} {n3()} {n3()} {n3()} {n3()}",
            lambda: f"${r(1, 999)},{r(0, 1000):03d},{r(0, 1000):03d}.{r(0, 100):02d}",
            lambda: f"EUR {r(1, 999)}.{r(0, 1000):03d}.{r(0, 1000):03d},{r(0, 100):02d}",
            lambda: f"{r(10**12, 10**14)} fils settled",
            lambda: f"balance {r(1, 10**6)}.{r(0, 100):02d} of {r(1, 10**7)}.{r(0, 100):02d}",
            lambda: f"pi is {r(1, 9)}.{r(10**13, 10**14)}",
        ],
        "network": [
            lambda: f"{ip()}/{ip()}",
            lambda: f"host {ip()}:{r(1024, 65535)}",
            lambda: f"trace {r(10**15, 10**16):x}-{r(10**3, 10**4)}",
            lambda: f"span_id={r(10**17, 10**18)}",
        ],
        "identifier": [
            lambda: f"ticket {r(10**4, 10**6)} and PR #{r(1, 9999)}",
            lambda: f"tracking 9400 {g4()} {g4()} {g4()} {g4()} {r(10, 99)}",
            lambda: f"employee {r(10**5, 10**6)} badge {r(10**7, 10**8)}",
            lambda: f"row {r(10**6, 10**7)} of {r(10**7, 10**8)}",
            lambda: f"ref {r(10**11, 10**12)}",
        ],
        "phone": [
            lambda: f"call +971 5{r(0, 9)} {r(100, 999)} {r(1000, 9999)}",
            lambda: f"+1 ({r(200, 999)}) {r(200, 999)}-{r(1000, 9999)}",
            lambda: f"ring 0{r(10, 99)} {r(100, 999)} {r(1000, 9999)}",
            lambda: f"+44 20 {r(1000, 9999)} {r(1000, 9999)}",
            lambda: f"whatsapp +9715{r(10**7, 10**8)}",
        ],
        "date": [
            lambda: f"on {r(1, 29):02d}/{r(1, 13):02d}/{r(2019, 2027)}",
            lambda: f"{r(1, 29):02d}.{r(1, 13):02d}.{r(2019, 2027)} {r(0, 24):02d}:{r(0, 60):02d}",
            lambda: f"Q{r(1, 5)} {r(2019, 2027)} and FY{r(19, 27)}",
            lambda: f"week {r(1, 53)} of {r(2019, 2027)}, day {r(1, 366)}",
        ],
    }
    rows: list[tuple[str, str]] = []
    for category, options in makers.items():
        for _ in range(600):
            rows.append((category, rng.choice(options)()))
    return rows


def card_spellings(seed: int = 4) -> list[str]:
    """Card numbers written every way issue #18 found missed."""
    rng = random.Random(seed)
    prefixes = ["4", "51", "55", "2221", "34", "37", "6011", "65", "35", "62", "36"]
    spellings: list[Callable[[str], str]] = [
        lambda p: ".".join(p[i : i + 4] for i in range(0, len(p), 4)),
        lambda p: "/".join(p[i : i + 4] for i in range(0, len(p), 4)),
        lambda p: "_".join(p[i : i + 4] for i in range(0, len(p), 4)),
        lambda p: "\n".join(p[i : i + 4] for i in range(0, len(p), 4)),
        lambda p: "\r\n".join(p[i : i + 4] for i in range(0, len(p), 4)),
        lambda p: "\t".join(p[i : i + 4] for i in range(0, len(p), 4)),
        lambda p: "  ".join(p[i : i + 4] for i in range(0, len(p), 4)),
        lambda p: " - ".join(p[i : i + 4] for i in range(0, len(p), 4)),
        lambda p: "\u200b".join(p[i : i + 4] for i in range(0, len(p), 4)),
        lambda p: "".join(f"\\u00{ord(c):x}" for c in p),
        lambda p: "".join(chr(0xFF10 + int(c)) for c in p),
        lambda p: p + ".0",
    ]
    out = []
    for index in range(1200):
        prefix = rng.choice(prefixes)
        body = prefix + "".join(str(rng.randrange(10)) for _ in range(15 - len(prefix)))
        pan = _luhn_complete(body)
        out.append(f"card {spellings[index % len(spellings)](pan)} declined")
    return out


# --------------------------------------------------------------------------- running


def _time_child(name: str, detector: str, size: int, queue: Any) -> None:
    text = INPUTS[name](size)
    started = time.perf_counter()
    DETECTORS[detector](text)
    queue.put(time.perf_counter() - started)


def timed(name: str, detector: str, size: int, budget: float) -> float | None:
    """Seconds to run ``detector`` on input ``name`` in a fresh process, None over budget."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=_time_child, args=(name, detector, size, queue))
    process.start()
    process.join(budget)
    if process.is_alive():
        process.kill()
        process.join()
        return None
    return float(queue.get(timeout=5))


def _fmt(seconds: float | None, budget: float) -> str:
    return f">{budget:.0f} s" if seconds is None else f"{seconds:.3f} s"


def _ratio(old: float | None, new: float | None, budget: float) -> str:
    if new is None:
        return "-"
    if old is None:
        return f">{budget / max(new, 1e-6):.0f}x"
    return f"{old / max(new, 1e-6):.1f}x"


def time_table(size: int, budget: float, names: Iterable[str]) -> None:
    print(f"\ntime to find PII in {size / 1e6:g} MB (fresh process each, budget {budget:.0f} s)\n")
    header = f"{'input':<34}{'old':>12}{'new':>12}{'speed-up':>11}"
    print(header)
    print("-" * len(header))
    for name in names:
        old = timed(name, "old", size, budget)
        new = timed(name, "new", size, budget)
        row = f"{_fmt(old, budget):>12}{_fmt(new, budget):>12}{_ratio(old, new, budget):>11}"
        print(f"{name:<34}{row}")


def _wrong(found: list[tuple[str, int, int]], category: str) -> bool:
    return any(not (category == "phone" and kind == "phone") for kind, _, _ in found)


def load_negatives() -> list[tuple[str, str]]:
    rows = []
    for line in CORPUS.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            category, _, text = line.partition("\t")
            rows.append((category, text))
    return rows


def accuracy_tables() -> None:
    rows = load_negatives()
    categories = sorted({c for c, _ in rows})
    print(f"\nfalse positives on {len(rows):,} non-PII strings ({CORPUS.relative_to(ROOT)})\n")
    header = f"{'category':<14}{'strings':>9}{'old':>9}{'new':>9}"
    print(header)
    print("-" * len(header))
    totals = {"old": 0, "new": 0}
    for category in categories:
        texts = [t for c, t in rows if c == category]
        counts = {k: sum(_wrong(d(t), category) for t in texts) for k, d in DETECTORS.items()}
        for key in totals:
            totals[key] += counts[key]
        print(
            f"{category:<14}{len(texts):>9}"
            + "".join(f"{100 * counts[k] / len(texts):>8.2f}%" for k in ("old", "new"))
        )
    print("-" * len(header))
    print(
        f"{'all':<14}{len(rows):>9}"
        + "".join(f"{100 * totals[k] / len(rows):>8.2f}%" for k in ("old", "new"))
    )
    cards = card_spellings()
    print(f"\nrecall on {len(cards):,} card numbers in the spellings of issue #18\n")
    for key, detector in DETECTORS.items():
        found = sum(any(kind == "card" for kind, _, _ in detector(t)) for t in cards)
        print(f"{key:<6}{100 * found / len(cards):>7.2f}%")


def write_corpus() -> None:
    CORPUS.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# category<TAB>text — generated by bench/pii.py --write-corpus (seed 18)"]
    lines += [f"{c}\t{t}" for c, t in negatives()]
    CORPUS.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines) - 1} strings to {CORPUS}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="input size in characters")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per measurement")
    parser.add_argument("--quick", action="store_true", help="100 kB inputs, 10 s budget")
    parser.add_argument("--write-corpus", action="store_true", help="regenerate the corpus")
    args = parser.parse_args()
    if args.write_corpus:
        write_corpus()
        return
    size, budget = (100_000, 10.0) if args.quick else (args.size, args.budget)
    started = time.perf_counter()
    time_table(size, budget, INPUTS)
    accuracy_tables()
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
