"""User-facing text: model Markdown to Slack mrkdwn, escaping, and splitting long answers.

Slack reads ``&``, ``<`` and ``>`` as control characters: ``<!channel>`` notifies a whole
channel, ``<@U…>`` pings a person, ``<https://evil|your bank>`` is a forged link. Model output
is untrusted text, so everything it writes is escaped; the only ``<…>`` sequences in our
output are the links we build ourselves from Markdown links to http(s) URLs, with the label
and URL escaped too. Bare ``@channel`` / ``@here`` / ``@everyone`` get an invisible word
joiner after the ``@`` so no parse mode (``link_names``, ``parse=full``) can turn them into
notifications.

Links are a second channel out of a conversation: ``[Open report](https://attacker/?d=…)``
carries whatever the model was tricked into putting in the query string to whoever clicks.
A :class:`LinkPolicy` (``SWITCHBOARD_LINK_DOMAINS``) names the domains answers may link to;
every other URL — a Markdown link, an ``<url>`` autolink, a Slack ``<url|label>``, a bare
URL Slack would linkify — is shown as inert code, ``hxxps://attacker.example/…``, with
its path dropped (that is where exfiltrated data rides).

    post(text=markdown_to_mrkdwn(answer, links=policy))  # formatted and safe
    post(text=escape_mrkdwn(user_supplied_value))         # safe, no formatting changes
    stream(markdown_text=escape_mrkdwn(defang_links(markdown, policy)))  # Markdown surfaces
    for chunk in split_message(markdown_to_mrkdwn(long_answer, links=policy)): post(chunk)
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = [
    "SLACK_TEXT_LIMIT",
    "WORD_JOINER",
    "LinkPolicy",
    "defang_links",
    "escape_mrkdwn",
    "escape_mrkdwn_but_people",
    "markdown_to_mrkdwn",
    "split_message",
]

SLACK_TEXT_LIMIT = 3000
"""Characters in one section block's text: the unit answers are split into."""

WORD_JOINER = "\u2060"
"""Invisible, and not a word character: ``@\u2060here`` reads as @here but notifies nobody."""

_BROADCAST = re.compile(r"@(channel|here|everyone)", re.IGNORECASE)
# Private-use code points mark links and escapes while the rest of a line is converted.
_PH_OPEN, _PH_CLOSE, _BOLD = "\ue000", "\ue001", "\ue002"
_PRIVATE = re.compile(f"[{_PH_OPEN}{_PH_CLOSE}{_BOLD}]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_PLACEHOLDER = re.compile(f"{_PH_OPEN}(\\d+){_PH_CLOSE}")

_URL = r"https?://(?:[^\s()<>|\"]|\([^\s()<>|\"]*\))+"
_LINK = re.compile(
    r"(!?)\[([^\[\]\n]*)\]\(\s*<?(" + r"[^\s()<>]*(?:\([^\s()<>]*\)[^\s()<>]*)*" + r")>?"
    r"(?:\s+\"[^\"\n]*\")?\s*\)"
)
_AUTOLINK = re.compile(r"<(" + _URL + r")>")
_HTTP_URL = re.compile(r"^" + _URL + r"$", re.IGNORECASE)
_URLISH_LABEL = re.compile(r"^(?:https?://)?([\w-]+(?:\.[\w-]+)+)(?:[/:?#]\S*)?$", re.IGNORECASE)
_SLACK_LINK = re.compile(r"<(https?://[^\s<>|]+)\|([^<>\n]*)>", re.IGNORECASE)
# A URL Slack would linkify in plain text: with a scheme, from "www.", or a bare domain
# followed by a path or query (the form that can carry data out).
_URL_CHARS = '[^\\s<>`|"\ue000-\ue002]'
_BARE_URL = re.compile(
    rf"(?<![\w@/.-])(?:(?:https?|ftp)://{_URL_CHARS}+|www\.{_URL_CHARS}+"
    rf"|(?:[a-z0-9](?:[a-z0-9-]{{0,61}}[a-z0-9])?\.)+[a-z]{{2,24}}(?:/|\?(?=\S)){_URL_CHARS}*)",
    re.IGNORECASE,
)
_HOSTNAME = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}$")
_MD_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!~|<>&])")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")

_BOLD_ITALIC = re.compile(r"\*\*\*(?=\S)(.+?)(?<=\S)\*\*\*")
_BOLD_STARS = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_BOLD_UNDERSCORES = re.compile(r"(?<!\w)__(?=\S)(.+?)(?<=\S)__(?!\w)")
_ITALIC_STAR = re.compile(r"(?<![\w*])\*(?=[^\s*])([^*\n]*?[^\s*])\*(?![\w*])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")

_FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_HEADING = re.compile(r"^ {0,3}#{1,6}(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_RULE = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_TASK = re.compile(r"^(\s*)[-*+][ \t]+\[([ xX])\][ \t]+(.*)$")
_BULLET = re.compile(r"^(\s*)[-*+][ \t]+(.*)$")
_ORDERED = re.compile(r"^(\s*)(\d{1,9})([.)])[ \t]+(.*)$")
_QUOTE = re.compile(r"^ {0,3}>+[ \t]?(.*)$")


@dataclass(frozen=True, slots=True)
class LinkPolicy:
    """The domains answers may link to (``SWITCHBOARD_LINK_DOMAINS``).

    A domain allows itself and its subdomains (``example.com`` allows
    ``docs.example.com``); ``slack.com`` is always allowed, so permalinks keep working;
    ``*`` allows every domain (the behaviour before the allow-list existed). A URL whose
    host cannot be read plainly — userinfo (``https://slack.com@evil``), a backslash, a
    non-ASCII or percent-encoded host, an IP address — is never allowed, whatever the list.
    """

    domains: tuple[str, ...] = ()
    any_domain: bool = False

    ALWAYS = ("slack.com",)

    @classmethod
    def from_domains(cls, domains: Iterable[str]) -> LinkPolicy:
        cleaned = [d.strip().lower().rstrip(".") for d in domains if d.strip()]
        if "*" in cleaned:
            return cls(any_domain=True)
        for domain in cleaned:
            cls.check_domain(domain)
        return cls(domains=tuple(dict.fromkeys(cleaned)))

    @staticmethod
    def check_domain(domain: str) -> None:
        """Raise ``ValueError`` unless ``domain`` is ``*`` or a plain host name."""
        domain = domain.strip().lower().rstrip(".")
        if domain != "*" and not _HOSTNAME.match(domain):
            raise ValueError(f"{domain!r} is not a domain like example.com (or *)")

    def host(self, url: str) -> str | None:
        """The URL's host when it can be read unambiguously, else None."""
        candidate = url if "://" in url else "https://" + url
        try:
            parts = urlsplit(candidate)
        except ValueError:
            return None
        netloc = parts.netloc
        if not netloc or "@" in netloc or "\\" in candidate.split("?", 1)[0] or "%" in netloc:
            return None
        host = (parts.hostname or "").rstrip(".")
        return host if _HOSTNAME.match(host) else None

    def allows(self, url: str) -> bool:
        host = self.host(url)
        if host is None:
            return False
        if self.any_domain:
            return True
        return any(host == d or host.endswith("." + d) for d in (*self.ALWAYS, *self.domains))

    def inert(self, url: str) -> str:
        """How a URL that may not be linked is shown: ``hxxps://host/…`` in code."""
        host = self.host(url)
        scheme = url.split("://", 1)[0].lower() if "://" in url else "https"
        scheme = {"http": "hxxp", "https": "hxxps", "ftp": "fxp"}.get(scheme, "hxxp")
        if host is None:
            return "`(link removed)`"
        rest = url.split("://", 1)[-1][len(host) :].strip("/")
        return f"`{scheme}://{host}/{'…' if rest else ''}`"


ANY_DOMAIN = LinkPolicy(any_domain=True)


def defang_links(text: str, links: LinkPolicy) -> str:
    """``text`` (Markdown) with every URL ``links`` does not allow made inert.

    For surfaces Slack renders as Markdown itself (``chat.startStream``'s
    ``markdown_text``): ``[label](url)`` and ``<url|label>`` become ``label
    (`hxxps://host/…`)``, ``<url>`` and bare URLs just the code. Allowed links are left
    as written.
    """
    held: list[str] = []

    def hold(rendered: str) -> str:
        held.append(rendered)
        return f"{_PH_OPEN}{len(held) - 1}{_PH_CLOSE}"

    def labelled(label: str, url: str, original: str) -> str:
        if links.allows(url):
            return hold(original)
        label = label.replace("`", "'").strip()
        return hold(f"{label} ({links.inert(url)})" if label else links.inert(url))

    text = _PRIVATE.sub("", text)
    text = _LINK.sub(lambda m: labelled(m.group(2), m.group(3), m.group(0)), text)
    text = _SLACK_LINK.sub(lambda m: labelled(m.group(2), m.group(1), m.group(0)), text)
    text = _AUTOLINK.sub(lambda m: labelled("", m.group(1), m.group(0)), text)
    text = _BARE_URL.sub(
        lambda m: m.group(0) if links.allows(m.group(0)) else hold(links.inert(m.group(0))), text
    )
    return _restore(text, held)


def escape_mrkdwn(text: str) -> str:
    """Make arbitrary text inert in Slack: no mentions, links or entities survive.

    ``&``, ``<``, ``>`` become ``&amp;``, ``&lt;``, ``&gt;`` (so ``<!here>`` shows as text);
    bare ``@channel``, ``@here``, ``@everyone`` get a word joiner after the ``@``.
    Formatting characters (``*``, ``_``, ``~``, `````) are left alone.
    """
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BROADCAST.sub(lambda m: "@" + WORD_JOINER + m.group(1), escaped)


_USER_MENTION = re.compile(r"&lt;@([UW][A-Z0-9]{2,20})&gt;")


def escape_mrkdwn_but_people(text: str) -> str:
    """:func:`escape_mrkdwn`, with user mentions (``<@U0123>``) left as mentions.

    For text our own code wrote about someone (a schedule's "paused by <@U0123>"), so it
    shows a name instead of ``<@U0123>``; never for text a user or a model wrote.
    """
    return _USER_MENTION.sub(r"<@\1>", escape_mrkdwn(text))


def markdown_to_mrkdwn(text: str, *, links: LinkPolicy = ANY_DOMAIN) -> str:
    """Convert a model's Markdown answer to Slack mrkdwn that is safe to post.

    ``links`` decides which URLs stay clickable; answers always pass the deployment's
    policy (:func:`bot.views.blocks.safe_answer`), the default suits text the bot wrote.

    ``**bold**`` → ``*bold*``; ``*italic*`` / ``_italic_`` → ``_italic_``; ``~~s~~`` →
    ``~s~``; ``# Heading`` → ``*Heading*``; ``[label](https://url)`` → ``<https://url|label>``
    (http and https only; other targets stay visible as text); list items become ``•``
    bullets (numbered lists kept); fenced code blocks and inline code keep their content
    verbatim. All text is escaped with :func:`escape_mrkdwn`, code included.
    """
    text = _PRIVATE.sub("", _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n")))
    out: list[str] = []
    fence: str | None = None
    for line in text.split("\n"):
        if fence is None:
            opened = _FENCE_OPEN.match(line)
            if opened and not (opened.group(1)[0] == "`" and "`" in opened.group(2)):
                fence = opened.group(1)
                out.append("```")
            else:
                out.append(_convert_line(line, links))
        elif _closes_fence(line, fence):
            fence = None
            out.append("```")
        else:
            # A ``` inside a ~~~ block would end Slack's code block early.
            out.append(escape_mrkdwn(line).replace("```", "``\u200b`"))
    if fence is not None:
        out.append("```")
    return "\n".join(out)


def split_message(text: str, limit: int = SLACK_TEXT_LIMIT) -> list[str]:
    """Split ``text`` into chunks of at most ``limit`` characters for separate posts/blocks.

    Cuts at paragraph breaks where it can, then at line breaks, then at spaces, and only
    then inside a word (never inside an ``&amp;`` entity, a ``<…>`` link, a run of
    backticks or a composed character). A code block cut in two is closed with ````` at
    the end of one chunk and reopened at the start of the next. Length is counted in
    UTF-16 code units, as Slack counts, so emoji never push a chunk over the limit.
    Whitespace-only text gives no chunks.
    """
    if limit < 40:
        raise ValueError("limit must be at least 40 characters")
    budget = limit - len(_REOPEN) - len(_CLOSE)
    chunks = _pack(_pieces(text, budget), budget)
    return _balance_fences(chunks)


# -- markdown conversion --------------------------------------------------------------------


def _closes_fence(line: str, fence: str) -> bool:
    stripped = line.strip()
    return (
        len(line) - len(line.lstrip(" ")) <= 3
        and len(stripped) >= len(fence)
        and set(stripped) == {fence[0]}
    )


def _convert_line(line: str, links: LinkPolicy) -> str:
    if _RULE.match(line):
        return "──────────"
    heading = _HEADING.match(line)
    if heading:
        content = (heading.group(1) or "").replace("**", "").replace("__", "").strip()
        converted = _inline(content, links).strip()
        return f"*{converted}*" if converted else ""
    task = _TASK.match(line)
    if task:
        box = "☐" if task.group(2) == " " else "☑"
        return f"{task.group(1)}{box} {_inline(task.group(3), links)}"
    bullet = _BULLET.match(line)
    if bullet:
        return f"{bullet.group(1)}• {_inline(bullet.group(2), links)}"
    ordered = _ORDERED.match(line)
    if ordered:
        indent, number, mark, rest = ordered.groups()
        return f"{indent}{number}{mark} {_inline(rest, links)}"
    quote = _QUOTE.match(line)
    if quote:
        # Slack renders an escaped "&gt; " at the start of a line as a block quote.
        return "&gt; " + _inline(quote.group(1), links)
    return _inline(line, links)


def _inline(text: str, links: LinkPolicy) -> str:
    """Convert one line outside code blocks: code spans verbatim, the rest formatted."""
    out: list[str] = []
    position = 0
    for span in _CODE_SPAN.finditer(text):
        out.append(_format(text[position : span.start()], links))
        out.append(_code_span(span.group(1), span.group(2)))
        position = span.end()
    out.append(_format(text[position:], links))
    return "".join(out)


def _code_span(ticks: str, content: str) -> str:
    if len(ticks) > 1 and "`" not in content:
        ticks = "`"  # Slack only knows single-backtick inline code
    return ticks + escape_mrkdwn(content) + ticks


def _format(text: str, links: LinkPolicy) -> str:
    if not text:
        return text
    held: list[str] = []

    def hold(rendered: str) -> str:
        held.append(rendered)
        return f"{_PH_OPEN}{len(held) - 1}{_PH_CLOSE}"

    def autolink(url: str) -> str:
        return hold(f"<{_escape_url(url)}>" if links.allows(url) else links.inert(url))

    def slack_link(match: re.Match[str]) -> str:
        # The model wrote Slack's own syntax: it stays text, but a foreign URL in it would
        # still be linkified by Slack, so it is made inert like any other.
        url, label = match.group(1), match.group(2)
        if links.allows(url):
            return match.group(0)
        shown = escape_mrkdwn(label.replace("`", "'").strip())
        return hold(f"{shown} ({links.inert(url)})" if shown else links.inert(url))

    def bare(match: re.Match[str]) -> str:
        url = match.group(0)
        return url if links.allows(url) else hold(links.inert(url))

    text = _MD_ESCAPE.sub(lambda m: hold(escape_mrkdwn(m.group(1))), text)
    text = _LINK.sub(
        lambda m: hold(_link(m.group(3), m.group(2), image=bool(m.group(1)), links=links)), text
    )
    text = _AUTOLINK.sub(lambda m: autolink(m.group(1)), text)
    text = _SLACK_LINK.sub(slack_link, text)
    if not links.any_domain:
        text = _BARE_URL.sub(bare, text)
    text = escape_mrkdwn(text)
    text = _BOLD_ITALIC.sub(lambda m: f"{_BOLD}_{m.group(1)}_{_BOLD}", text)
    text = _BOLD_STARS.sub(lambda m: f"{_BOLD}{m.group(1)}{_BOLD}", text)
    text = _BOLD_UNDERSCORES.sub(lambda m: f"{_BOLD}{m.group(1)}{_BOLD}", text)
    text = _ITALIC_STAR.sub(lambda m: f"_{m.group(1)}_", text)
    text = _STRIKE.sub(lambda m: f"~{m.group(1)}~", text)
    text = text.replace(_BOLD, "*")
    return _restore(text, held)


def _restore(text: str, held: list[str]) -> str:
    def put_back(match: re.Match[str]) -> str:
        return held[int(match.group(1))]

    return _PLACEHOLDER.sub(put_back, text)


def _link(url: str, label: str, *, image: bool, links: LinkPolicy) -> str:
    """``<url|label>`` for http(s) URLs ``links`` allows; a foreign domain is shown as
    ``label (`hxxps://host/…`)``; anything else stays visible as ``label (target)``."""
    label = re.sub(r"\*\*|__|`", "", label).strip()
    if not _HTTP_URL.match(url):
        shown = f"{label} ({url})" if label and url else label or url
        if not links.any_domain:
            return _BARE_URL.sub(lambda m: links.inert(m.group(0)), escape_mrkdwn(shown))
        return escape_mrkdwn(shown)
    if not links.allows(url):
        return f"{escape_mrkdwn(label)} ({links.inert(url)})" if label else links.inert(url)
    safe_url = _escape_url(url)
    if not label or label == url:
        return f"<{safe_url}>"
    if _misleading(label, url):
        # "[https://bank.example](https://evil.example)": show where the link really goes.
        return f"{escape_mrkdwn(label)} (<{safe_url}>)"
    shown = escape_mrkdwn(label).replace("|", "¦") if image else escape_mrkdwn(label)
    return f"<{safe_url}|{shown}>"


def _escape_url(url: str) -> str:
    return url.replace("&", "&amp;").replace("|", "%7C").replace("<", "%3C").replace(">", "%3E")


def _misleading(label: str, url: str) -> bool:
    """A label that names a host other than the URL's own."""
    shown = _URLISH_LABEL.match(label)
    if not shown:
        return False
    target = re.match(r"^https?://([^/:?#]+)", url, re.IGNORECASE)
    return not target or shown.group(1).lower() != target.group(1).lower()


# -- splitting ------------------------------------------------------------------------------

_REOPEN = "```\n"
_CLOSE = "\n```"
_JOINERS = frozenset("\u200d\u2060\ufe0f\ufe0e")


def _size(text: str) -> int:
    """Length in UTF-16 code units (an emoji outside the BMP counts 2)."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def _pieces(text: str, budget: int) -> list[tuple[str, str]]:
    """(separator, piece) pairs, split only as finely as the budget demands."""
    out: list[tuple[str, str]] = []
    for p, paragraph in enumerate(text.split("\n\n")):
        para_sep = "\n\n" if p else ""
        if _size(paragraph) <= budget:
            out.append((para_sep, paragraph))
            continue
        for n, line in enumerate(paragraph.split("\n")):
            line_sep = para_sep if n == 0 else "\n"
            if _size(line) <= budget:
                out.append((line_sep, line))
                continue
            for k, (sep, part) in enumerate(_split_line(line, budget)):
                out.append((line_sep if k == 0 else sep, part))
    return out


def _split_line(line: str, budget: int) -> list[tuple[str, str]]:
    parts: list[tuple[str, str]] = []
    sep = ""
    while _size(line) > budget:
        cut, soft = _cut_point(line, budget)
        parts.append((sep, line[:cut]))
        line = line[cut + 1 :] if soft else line[cut:]
        sep = " " if soft else ""
    parts.append((sep, line))
    return parts


def _fit(line: str, budget: int) -> int:
    """The longest prefix length of ``line`` whose UTF-16 size is within ``budget``."""
    end = min(len(line), budget)
    while end > 0 and _size(line[:end]) > budget:
        end -= max(1, (_size(line[:end]) - budget) // 2)
    return end


def _inside_link(line: str, position: int) -> int:
    """Start of the ``<…>`` link that ``position`` falls inside, or -1."""
    start = line.rfind("<", 0, position)
    if start != -1 and ">" not in line[start:position]:
        return start
    return -1


def _cut_point(line: str, budget: int) -> tuple[int, bool]:
    """Where to cut an over-long line: (index, True) at a space that is dropped, or a hard
    (index, False) that splits no entity, link, backtick run or composed character."""
    end = _fit(line, budget)
    space = line.rfind(" ", 0, end + 1)
    while space >= end // 2 and _inside_link(line, space) != -1:
        space = line.rfind(" ", 0, _inside_link(line, space))
    if space >= max(end // 2, 1) and space <= end:
        return space, True
    cut = end
    link = _inside_link(line, cut)
    if link > 0:
        cut = link
    amp = line.rfind("&", max(0, cut - 8), cut)
    if amp != -1 and ";" not in line[amp:cut]:
        cut = amp
    while cut > 1 and _splits_cluster(line, cut):
        cut -= 1
    return (cut if cut > 0 else max(end, 1)), False


def _splits_cluster(line: str, i: int) -> bool:
    """Would cutting before ``line[i]`` split a backtick run or a composed character?"""
    return (
        (line[i - 1] == "`" and line[i] == "`")
        or unicodedata.combining(line[i]) != 0
        or line[i] in _JOINERS
        or line[i - 1] in _JOINERS
    )


def _pack(pieces: list[tuple[str, str]], budget: int) -> list[str]:
    chunks: list[str] = []
    current = ""
    for sep, piece in pieces:
        candidate = current + sep + piece if current else piece
        if _size(candidate) <= budget:
            current = candidate
        else:
            chunks.append(current)
            current = piece
    chunks.append(current)
    return chunks


def _fence_count(text: str) -> int:
    return text.count("```")


def _balance_fences(chunks: list[str]) -> list[str]:
    """Close a code block cut by a chunk boundary and reopen it in the next chunk."""
    result: list[str] = []
    open_ = False
    for chunk in chunks:
        body = chunk
        if open_:
            first, newline, rest = body.partition("\n")
            if first.strip() == "```":  # the block ends right here: no need to reopen it
                body, open_ = rest if newline else "", False
        after = open_ ^ (_fence_count(body) % 2 == 1)
        emitted = body
        if after:
            head, _, last = body.rpartition("\n")
            if last.strip() == "```":
                emitted = head  # do not end a chunk on a fence that opens an empty block
        emitted_open = open_ ^ (_fence_count(emitted) % 2 == 1)
        if emitted.strip():
            result.append((_REOPEN if open_ else "") + emitted + (_CLOSE if emitted_open else ""))
        open_ = after
    return result
