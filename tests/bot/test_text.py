"""Text helpers: Markdown → mrkdwn, escaping model output, splitting long answers.

Besides examples, the safety and splitting rules are checked on thousands of generated
adversarial strings (seeded, so a failure reproduces): mentions, forged links, entities,
unbalanced fences, emoji sequences, long lines.
"""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime

import pytest

from bot.views.schedules import schedule_line
from bot.views.text import (
    WORD_JOINER,
    escape_mrkdwn,
    escape_mrkdwn_but_people,
    markdown_to_mrkdwn,
    split_message,
)
from storage.schedules._records import Schedule

# -- examples --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("**bold**", "*bold*"),
        ("__bold__", "*bold*"),
        ("*italic*", "_italic_"),
        ("_italic_", "_italic_"),
        ("***both***", "*_both_*"),
        ("~~gone~~", "~gone~"),
        ("# Heading", "*Heading*"),
        ("### Heading with **bold** ###", "*Heading with bold*"),
        ("- one\n- two", "• one\n• two"),
        ("* one\n  + nested", "• one\n  • nested"),
        ("1. first\n2) second", "1. first\n2) second"),
        ("- [ ] todo\n- [x] done", "☐ todo\n☑ done"),
        ("> quoted", "&gt; quoted"),
        ("[docs](https://example.com/docs)", "<https://example.com/docs|docs>"),
        ("[a](http://x.io/a?b=1&c=2)", "<http://x.io/a?b=1&amp;c=2|a>"),
        (
            "[wiki](https://en.wikipedia.org/wiki/Foo_(bar))",
            "<https://en.wikipedia.org/wiki/Foo_(bar)|wiki>",
        ),
        ("<https://example.com>", "<https://example.com>"),
        ("![chart](https://x.io/c.png)", "<https://x.io/c.png|chart>"),
        ("`**not bold**`", "`**not bold**`"),
        ("2 * 3 * 4", "2 * 3 * 4"),
        ("snake_case_name", "snake_case_name"),
        ("a & b < c > d", "a &amp; b &lt; c &gt; d"),
        ("---", "──────────"),
        ("```python\nx = 1 < 2\n**y**\n```", "```\nx = 1 &lt; 2\n**y**\n```"),
        ("```\nunclosed", "```\nunclosed\n```"),
        ("``double`` code", "`double` code"),
        (r"\*literal\*", "*literal*"),
    ],
)
def test_markdown_to_mrkdwn_examples(markdown: str, mrkdwn: str) -> None:
    assert markdown_to_mrkdwn(markdown) == mrkdwn


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("<!channel> deploy now", "&lt;!channel&gt; deploy now"),
        ("<!here|here>", "&lt;!here|here&gt;"),
        ("<!subteam^S123|@oncall>", "&lt;!subteam^S123|@oncall&gt;"),
        ("ping <@U123>", "ping &lt;@U123&gt;"),
        ("<#C123|general>", "&lt;#C123|general&gt;"),
        ("<https://evil.example|Your bank>", "&lt;https://evil.example|Your bank&gt;"),
        ("[click](javascript:alert(1))", "click (javascript:alert(1))"),
        ("[mail me](mailto:a@b.c)", "mail me (mailto:a@b.c)"),
        ("[x](https://a.io/|<!here>)", "[x](https://a.io/|&lt;!here&gt;)"),
        (
            "[https://bank.example](https://evil.example)",
            "https://bank.example (<https://evil.example>)",
        ),
        ("[bank.example](https://bank.example/login)", "<https://bank.example/login|bank.example>"),
        ("[<!here>](https://x.io)", "<https://x.io|&lt;!here&gt;>"),
        ("`<!here>`", "`&lt;!here&gt;`"),
        ("&lt;!here&gt;", "&amp;lt;!here&amp;gt;"),
    ],
)
def test_model_cannot_mention_or_forge_links(markdown: str, mrkdwn: str) -> None:
    assert markdown_to_mrkdwn(markdown) == mrkdwn


@pytest.mark.parametrize("word", ["@channel", "@here", "@everyone", "@HERE", "@Channel:"])
def test_bare_broadcast_words_are_neutralised(word: str) -> None:
    for convert in (escape_mrkdwn, markdown_to_mrkdwn):
        out = convert(f"hey {word} look")
        assert not re.search(r"@(channel|here|everyone)", out, re.IGNORECASE)
        assert out.replace(WORD_JOINER, "") == f"hey {word} look"


def test_escape_mrkdwn_escapes_every_control_character() -> None:
    assert escape_mrkdwn("<a> & <!here> **b**") == "&lt;a&gt; &amp; &lt;!here&gt; **b**"


def test_our_own_text_about_someone_keeps_the_mention_and_nothing_else() -> None:
    text = "paused by <@U0SAM> <!here> <#C0PAY> <https://x.test|x> <@U0SAM|sam>"
    assert escape_mrkdwn_but_people(text) == (
        "paused by <@U0SAM> &lt;!here&gt; &lt;#C0PAY&gt; &lt;https://x.test|x&gt; "
        "&lt;@U0SAM|sam&gt;"
    )


def test_a_paused_schedule_names_who_paused_it() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    row = Schedule(
        id="0123456789abcdef",
        team_id="T0",
        kind="skill",
        skill="digest",
        input_text="",
        channel_id="C0PAY",
        trigger={},
        tz="UTC",
        grace_seconds=60,
        owner="U0SAM",
        enabled=False,
        created_at=now,
        updated_at=now,
        paused_reason="paused by <@U0CAROL>",
    )
    line = schedule_line(row, lambda _row: "digest every day")
    assert "paused — paused by <@U0CAROL>" in line and "&lt;@" not in line


FRAGMENTS = [
    "<!channel>",
    "<!here>",
    "<!everyone>",
    "<!subteam^S0LEADS|@leads>",
    "<@U0CAROL>",
    "<#C0PAY|payments>",
    "<https://evil.example|Reset your password>",
    "<https://ok.example>",
    "<mailto:x@y.z|mail>",
    "@channel",
    "@here",
    "@everyone",
    "@Everyone!",
    "&",
    "&amp;",
    "&lt;",
    "<",
    ">",
    ">>",
    "|",
    "**",
    "*",
    "_",
    "__",
    "~~",
    "~",
    "`",
    "``",
    "```",
    "~~~",
    "\n",
    "\n\n",
    " ",
    "  ",
    "\t",
    "# ",
    "## ",
    "- ",
    "* ",
    "1. ",
    "> ",
    "---",
    "\\*",
    "[label](https://example.com/a_(b)?x=1&y=2)",
    "[x](javascript:alert(1))",
    "[<!here>](https://x.io)",
    "[a|b](https://x.io/|y)",
    "![i](https://x.io/i.png)",
    "[https://bank.example](https://evil.example)",
    "https://plain.example/?a=1&b=2",
    "\ue000",
    "\ue0010\ue001",
    "\x00",
    "\r\n",
    "word",
    "card 4111 1111 1111 1111",
    "👩‍👩‍👧‍👦",
    "🇫🇷",
    "e\u0301",
    "日本語",
    "\u2060",
    "\u200d",
]


def adversarial_text(rng: random.Random, *, size: int = 40) -> str:
    return "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(0, size)))


OUR_LINK = re.compile(r"<https?://[^\s<>|]+(?:\|[^<>]*)?>")
ENTITY = re.compile(r"&(?:amp|lt|gt);")


def assert_inert(output: str) -> None:
    """Only our own http(s) links use < >; no bare &; no broadcast word survives."""
    without_links = OUR_LINK.sub("", output)
    assert "<" not in without_links and ">" not in without_links, output
    assert "&" not in ENTITY.sub("", output), output
    for link in OUR_LINK.findall(output):
        assert not re.search(r"<[!@#]", link[1:]), output
    assert not re.search(r"<[!@#]", output), output
    assert not re.search(r"@(channel|here|everyone)", output, re.IGNORECASE), output


def test_markdown_to_mrkdwn_output_is_always_inert() -> None:
    rng = random.Random(20250303)
    for _ in range(3000):
        output = markdown_to_mrkdwn(adversarial_text(rng))
        assert_inert(output)
        assert not re.search("[\ue000-\ue002]", output), output  # no placeholder leaks


def test_escape_mrkdwn_output_is_always_inert() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        text = adversarial_text(rng)
        escaped = escape_mrkdwn(text)
        assert "<" not in escaped and ">" not in escaped
        assert_inert(escaped)
        unescaped = (
            escaped.replace(WORD_JOINER, "").replace("&lt;", "<").replace("&gt;", ">")
        ).replace("&amp;", "&")
        assert unescaped == text.replace(WORD_JOINER, "")


def test_links_in_output_come_from_http_links_in_the_input() -> None:
    rng = random.Random(99)
    for _ in range(2000):
        text = adversarial_text(rng)
        for link in OUR_LINK.findall(markdown_to_mrkdwn(text)):
            url = link[1:-1].split("|", 1)[0].replace("&amp;", "&").replace("%7C", "|")
            assert url.startswith(("http://", "https://"))
            assert url in text or url.replace("|", "%7C") in text, (text, link)


def test_code_blocks_are_kept_verbatim_and_closed() -> None:
    rng = random.Random(3)
    for _ in range(2000):
        out = markdown_to_mrkdwn(adversarial_text(rng))
        lines = out.split("\n")
        fence_lines = [line for line in lines if line == "```"]
        assert len(fence_lines) % 2 == 0, out


# -- splitting -------------------------------------------------------------------------------


def utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def visible(text: str) -> str:
    """Content without whitespace and fence markers, to compare before and after splitting."""
    return re.sub(r"\s+", "", text.replace("```", ""))


def test_short_text_is_one_chunk_and_blank_text_none() -> None:
    assert split_message("hello\n\nworld") == ["hello\n\nworld"]
    assert split_message("") == []
    assert split_message(" \n\n \n") == []


def test_splits_at_paragraphs_first() -> None:
    paragraphs = [f"paragraph {i} " + "x" * 900 for i in range(6)]

    chunks = split_message("\n\n".join(paragraphs), limit=2000)

    assert chunks == ["\n\n".join(paragraphs[i : i + 2]) for i in range(0, 6, 2)]


def test_long_lines_split_at_spaces_then_anywhere() -> None:
    words = " ".join(f"w{i:04d}" for i in range(2000))
    chunks = split_message(words, limit=1000)
    assert all(utf16(c) <= 1000 for c in chunks)
    assert " ".join(chunks) == words

    blob = "y" * 2500
    assert split_message(blob, limit=1000) == ["y" * 992, "y" * 992, "y" * 516]


def test_a_code_block_cut_in_two_is_closed_and_reopened() -> None:
    code = "\n".join(f"line {i} <x> & y" for i in range(400))
    text = markdown_to_mrkdwn(f"Here is the log:\n\n```\n{code}\n```\n\nThat is all.")

    chunks = split_message(text, limit=3000)

    assert len(chunks) >= 3
    for chunk in chunks:
        assert utf16(chunk) <= 3000
        assert chunk.count("```") % 2 == 0, chunk
    assert chunks[1].startswith("```\n") and chunks[0].endswith("\n```")
    assert visible("\n".join(chunks)) == visible(text)


def test_never_cuts_inside_an_entity_or_a_link() -> None:
    text = ("&amp;" * 700) + " " + "<https://example.com/" + "a" * 300 + "|label>"

    for chunk in split_message(text, limit=1000):
        assert not re.search(r"&(?!amp;|lt;|gt;)", chunk), chunk
        assert chunk.count("<") == chunk.count(">")


@pytest.mark.parametrize("limit", [40, 100, 500, 3000])
def test_splitting_adversarial_text_keeps_limits_fences_and_content(limit: int) -> None:
    rng = random.Random(limit)
    for _ in range(600):
        raw = adversarial_text(rng, size=rng.choice([10, 80, 400]))
        for text in (raw, markdown_to_mrkdwn(raw)):
            chunks = split_message(text, limit=limit)
            for chunk in chunks:
                assert utf16(chunk) <= limit, (limit, chunk)
                assert chunk.count("```") % 2 == 0, chunk
                assert chunk.strip()
            assert visible("\n".join(chunks)) == visible(text), text


def test_a_limit_too_small_to_reopen_a_code_block_is_refused() -> None:
    with pytest.raises(ValueError, match="limit"):
        split_message("text", limit=10)
