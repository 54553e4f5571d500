// Switchboard sandbox page: a small Slack-like client for the local workspace emulator.
// Everything the bot sends is untrusted: it is rendered with createElement/textContent only,
// never innerHTML, and links are limited to http(s)/mailto.
"use strict";

const S = {
  data: null,          // GET /sandbox/state for the current person
  me: null,            // current person's user id
  view: { kind: "channel", id: null },
  thread: null,        // { channel, ts } of the open thread pane
  assistant: null,     // { channel, thread_ts } of the open Assistant panel
  pending: false,
};

const $ = (id) => document.getElementById(id);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function toast(text) {
  const box = $("toast");
  box.textContent = text;
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, 4000);
}

// The page's token lives in an HttpOnly, SameSite=Strict cookie set when the printed URL
// (…/?token=…) was opened; every call sends it (same-origin credentials) and the server
// refuses calls without it (401), cross-origin ones (403) and non-JSON bodies (415).
const NEEDS_TOKEN = "This page needs this run's link: open the URL that `switchboard sandbox` printed (it ends in ?token=…).";

async function api(path, body) {
  const response = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user: S.me, ...body }),
  });
  let answer = {};
  try { answer = await response.json(); } catch (_) { /* empty answer */ }
  if (response.status === 401) toast(NEEDS_TOKEN);
  else if (!response.ok) toast(answer.error || `request failed (${response.status})`);
  return answer;
}

async function load(user) {
  const query = user ? `?user=${encodeURIComponent(user)}` : "";
  const response = await fetch(`/sandbox/state${query}`, { credentials: "same-origin" });
  if (response.status === 401) { toast(NEEDS_TOKEN); throw new Error("sandbox token missing"); }
  S.data = await response.json();
  S.me = S.data.me;
  if (!S.view.id || (S.view.kind === "channel" && !channelById(S.view.id))) {
    const first = S.data.channels.find((c) => !c.is_im);
    S.view = { kind: "channel", id: first ? first.id : null };
  }
  if (S.view.kind === "dm") S.view.id = dmChannel();
  if (S.thread && !channelById(S.thread.channel)) S.thread = null;
  S.assistant = null;
  renderAll();
  if (S.view.kind === "home") openHome();
}

// -- lookups --------------------------------------------------------------------------------

function channelById(id) { return S.data.channels.find((c) => c.id === id); }
function userById(id) { return S.data.users.find((u) => u.id === id); }
function dmChannel() { const dm = S.data.channels.find((c) => c.is_im && c.user === S.me); return dm ? dm.id : null; }
function displayName(id) {
  const user = userById(id);
  if (!user) return id || "someone";
  return user.real_name || user.name;
}
function messagesOf(channel) { return (S.data.messages[channel] || []); }
// Times are shown in the viewing person's Slack time zone, as Slack does (and as the
// bot's answers give them), not in the browser's.
function myZone() {
  const me = S.data && userById(S.me);
  return me && me.tz ? me.tz : undefined;
}

function localized(date, options) {
  try { return date.toLocaleString([], { ...options, timeZone: myZone() }); } catch (_) { return date.toLocaleString([], options); }
}

function tsTime(ts) {
  return localized(new Date(parseFloat(ts) * 1000), { hour: "2-digit", minute: "2-digit" });
}

function slackDate(seconds, format) {
  // <!date^SECONDS^FORMAT|fallback>: Slack formats it for each reader; so does the page.
  const date = new Date(seconds * 1000);
  const tokens = {
    "{time}": () => localized(date, { hour: "2-digit", minute: "2-digit" }),
    "{time_secs}": () => localized(date, { hour: "2-digit", minute: "2-digit", second: "2-digit" }),
    "{date_short_pretty}": () => localized(date, { month: "short", day: "numeric" }),
    "{date_short}": () => localized(date, { month: "short", day: "numeric", year: "numeric" }),
    "{date}": () => localized(date, { month: "long", day: "numeric", year: "numeric" }),
    "{date_pretty}": () => localized(date, { month: "long", day: "numeric" }),
    "{date_long}": () => localized(date, { weekday: "long", month: "long", day: "numeric", year: "numeric" }),
    "{date_long_pretty}": () => localized(date, { weekday: "long", month: "long", day: "numeric" }),
    "{date_num}": () => localized(date, { year: "numeric", month: "2-digit", day: "2-digit" }),
  };
  return String(format || "").replace(/\{[a-z_]+\}/g, (token) => (tokens[token] ? tokens[token]() : token));
}

// -- mrkdwn ---------------------------------------------------------------------------------

const EMOJI = {
  lock: "🔒", hourglass_flowing_sand: "⏳", hourglass: "⌛", white_check_mark: "✅", x: "❌",
  warning: "⚠️", tada: "🎉", "+1": "👍", "-1": "👎", thumbsup: "👍", thumbsdown: "👎",
  eyes: "👀", rotating_light: "🚨", memo: "📝", calendar: "📅", bell: "🔔", no_entry: "⛔",
  heavy_check_mark: "✔️", information_source: "ℹ️", robot_face: "🤖", wave: "👋", clock1: "🕐",
  large_green_circle: "🟢", red_circle: "🔴", money_with_wings: "💸", receipt: "🧾",
};

function decode(text) {
  return text.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
}

function emojify(text) {
  return text.replace(/:([a-z0-9_+-]+):/g, (all, name) => EMOJI[name] || all);
}

function safeUrl(url) {
  try {
    const parsed = new URL(url, window.location.href);
    return ["http:", "https:", "mailto:"].includes(parsed.protocol) ? parsed.href : null;
  } catch (_) {
    return null;
  }
}

function control(inner) {
  // <@U123>, <#C123|name>, <!subteam^S1|@handle>, <!here>, <!date^…|fallback>, <url|label>
  const [target, label] = splitOnce(inner, "|");
  if (target.startsWith("@")) {
    return el("span", "mention", `@${label || displayName(target.slice(1))}`);
  }
  if (target.startsWith("#")) {
    const channel = S.data && channelById(target.slice(1));
    return el("span", "mention", `#${label || (channel ? channel.name : target.slice(1))}`);
  }
  if (target.startsWith("!subteam^")) {
    const group = S.data.usergroups.find((g) => g.id === target.slice(9));
    return el("span", "mention", label || `@${group ? group.handle : "group"}`);
  }
  if (target.startsWith("!date^")) {
    const parts = target.split("^");
    const seconds = parseInt(parts[1], 10);
    const shown = Number.isNaN(seconds) || !parts[2] ? decode(label || "") : slackDate(seconds, decode(parts[2]));
    const span = el("span", "date", shown);
    if (!Number.isNaN(seconds)) span.title = `${localized(new Date(seconds * 1000), { dateStyle: "full", timeStyle: "long" })}`;
    return span;
  }
  if (target.startsWith("!")) {
    return el("span", "mention", `@${target.slice(1).split("^")[0]}`);
  }
  const href = safeUrl(decode(target));
  if (!href) return document.createTextNode(decode(label || target));
  const link = el("a", null, decode(label || target));
  link.href = href;
  link.target = "_blank";
  link.rel = "noopener noreferrer";
  return link;
}

function splitOnce(text, separator) {
  const at = text.indexOf(separator);
  return at < 0 ? [text, ""] : [text.slice(0, at), text.slice(at + 1)];
}

const INLINE = /<([^<>\n]+)>|`([^`\n]+)`|(?<![A-Za-z0-9*_~])(\*\*|\*|_|~)(?=\S)([^\n]*?[^\s])\3(?![A-Za-z0-9])/g;

function inline(text, parent) {
  let last = 0;
  INLINE.lastIndex = 0;
  const source = String(text);
  const matches = [...source.matchAll(INLINE)];
  for (const match of matches) {
    if (match.index > last) parent.append(emojify(decode(source.slice(last, match.index))));
    if (match[1] !== undefined) {
      parent.append(control(match[1]));
    } else if (match[2] !== undefined) {
      parent.append(el("code", null, decode(match[2])));
    } else {
      const tag = { "**": "strong", "*": "strong", _: "em", "~": "s" }[match[3]];
      const node = el(tag);
      inline(match[4], node);
      parent.append(node);
    }
    last = match.index + match[0].length;
  }
  if (last < source.length) parent.append(emojify(decode(source.slice(last))));
}

function mrkdwn(text) {
  const fragment = document.createDocumentFragment();
  const parts = String(text ?? "").split("```");
  parts.forEach((part, index) => {
    if (index % 2 === 1 && index < parts.length - 1) {
      fragment.append(el("pre", "code-block", decode(part.replace(/^\n/, ""))));
      return;
    }
    const lines = part.split("\n");
    lines.forEach((line, number) => {
      const quote = line.match(/^(?:&gt;|>)\s?(.*)$/);
      if (quote) {
        const block = el("blockquote");
        inline(quote[1], block);
        fragment.append(block);
        return;
      }
      inline(line, fragment);
      if (number < lines.length - 1) fragment.append(el("br"));
    });
  });
  return fragment;
}

function textObject(object) {
  if (!object) return document.createDocumentFragment();
  if (object.type === "plain_text") return document.createTextNode(emojify(String(object.text ?? "")));
  return mrkdwn(object.text);
}

// -- Block Kit ------------------------------------------------------------------------------

function renderBlocks(blocks, ctx) {
  const container = el("div", "bk");
  for (const block of blocks || []) {
    const node = renderBlock(block, ctx);
    if (node) container.append(node);
  }
  return container;
}

function renderBlock(block, ctx) {
  const wrap = el("div", `bk-block bk-${block.type}`);
  switch (block.type) {
    case "section": {
      const text = el("div", "bk-text");
      if (block.text) text.append(textObject(block.text));
      if (block.fields) {
        const fields = el("div", "bk-fields");
        for (const field of block.fields) { const cell = el("div"); cell.append(textObject(field)); fields.append(cell); }
        text.append(fields);
      }
      wrap.append(text);
      if (block.accessory) wrap.append(renderElement(block.accessory, block, ctx));
      return wrap;
    }
    case "header":
      wrap.className = "bk-block bk-header";
      wrap.append(textObject(block.text));
      return wrap;
    case "divider":
      return el("hr", "bk-divider");
    case "context":
      for (const item of block.elements || []) {
        if (item.type === "image") wrap.append(el("span", null, item.alt_text || ""));
        else { const span = el("span"); span.append(textObject(item)); wrap.append(span); }
      }
      return wrap;
    case "actions":
      for (const element of block.elements || []) wrap.append(renderElement(element, block, ctx));
      return wrap;
    case "markdown":
      wrap.append(mrkdwn(block.text));
      return wrap;
    case "rich_text":
      for (const element of block.elements || []) wrap.append(richText(element));
      return wrap;
    case "image": {
      const src = safeUrl(block.image_url || "");
      if (block.title) wrap.append(textObject(block.title));
      if (src) { const img = el("img"); img.src = src; img.alt = block.alt_text || ""; wrap.append(img); }
      return wrap;
    }
    case "input":
      return renderInput(block);
    default:
      return el("div", "bk-unknown", `[${block.type} block]`);
  }
}

function richText(element) {
  switch (element.type) {
    case "rich_text_section": { const node = el("div"); richInline(element.elements, node); return node; }
    case "rich_text_preformatted": { const node = el("pre", "code-block"); richInline(element.elements, node); return node; }
    case "rich_text_quote": { const node = el("blockquote"); richInline(element.elements, node); return node; }
    case "rich_text_list": {
      const list = el(element.style === "ordered" ? "ol" : "ul", "rt-list");
      for (const item of element.elements || []) { const li = el("li"); richInline(item.elements, li); list.append(li); }
      return list;
    }
    default:
      return el("span", "bk-unknown", `[${element.type}]`);
  }
}

function richInline(elements, parent) {
  for (const item of elements || []) {
    let node;
    switch (item.type) {
      case "text": node = document.createTextNode(item.text || ""); break;
      case "link": {
        const href = safeUrl(item.url || "");
        node = href ? el("a", null, item.text || item.url) : el("span", null, item.text || item.url);
        if (href) { node.href = href; node.target = "_blank"; node.rel = "noopener noreferrer"; }
        break;
      }
      case "user": node = el("span", "mention", `@${displayName(item.user_id)}`); break;
      case "usergroup": node = control(`!subteam^${item.usergroup_id}`); break;
      case "channel": node = control(`#${item.channel_id}`); break;
      case "emoji": node = document.createTextNode(EMOJI[item.name] || `:${item.name}:`); break;
      case "broadcast": node = el("span", "mention", `@${item.range}`); break;
      case "date": node = el("span", "date", item.fallback || new Date(item.timestamp * 1000).toString()); break;
      default: node = el("span", "bk-unknown", `[${item.type}]`);
    }
    const style = item.style || {};
    for (const [flag, tag] of [["code", "code"], ["strike", "s"], ["italic", "em"], ["bold", "strong"]]) {
      if (style[flag]) { const wrapper = el(tag); wrapper.append(node); node = wrapper; }
    }
    parent.append(node);
  }
}

function renderElement(element, block, ctx) {
  if (element.type === "button") {
    const button = el("button", "bk-button");
    button.type = "button";
    if (element.style) button.classList.add(element.style);
    button.append(textObject(element.text));
    button.dataset.actionId = element.action_id || "";
    button.addEventListener("click", async () => {
      if (element.confirm && !window.confirm(plain(element.confirm.text))) return;
      if (element.url && safeUrl(element.url)) window.open(safeUrl(element.url), "_blank", "noopener");
      button.disabled = true;
      try { await click(element, block, ctx); } finally { button.disabled = false; }
    });
    return button;
  }
  if (element.type === "static_select" || element.type === "radio_buttons") {
    const select = selectFor(element);
    if (block.type !== "input") {
      select.addEventListener("change", () => click(element, block, ctx, select.value));
    }
    return select;
  }
  if (element.type === "image") {
    const src = safeUrl(element.image_url || "");
    const img = el("img");
    if (src) img.src = src;
    img.alt = element.alt_text || "";
    img.width = 48;
    return img;
  }
  return el("span", "bk-unknown", `[${element.type}]`);
}

function plain(object) { return object ? String(object.text ?? "") : ""; }

function selectFor(element) {
  const select = el("select");
  select.append(new Option(plain(element.placeholder) || "Choose…", ""));
  const groups = element.option_groups || [{ options: element.options || [] }];
  for (const group of groups) {
    for (const option of group.options || []) select.append(new Option(plain(option.text), option.value));
  }
  if (element.initial_option) select.value = element.initial_option.value;
  return select;
}

// Slack's conversation, channel and user pickers, drawn from the workspace this person sees.
const PICKERS = {
  conversations_select: { initial: "initial_conversation" },
  channels_select: { initial: "initial_channel" },
  users_select: { initial: "initial_user" },
};

function pickerChoices(element) {
  if (element.type === "users_select") {
    return S.data.people.map((id) => [id, displayName(id)]);
  }
  const kinds = (element.filter && element.filter.include) || ["public", "private", "im"];
  return S.data.channels
    .filter((c) => element.type === "channels_select" ? !c.is_im : (c.is_im ? kinds.includes("im") : true))
    .map((c) => [c.id, c.is_im ? `Switchboard (DM)` : `# ${c.name}`]);
}

function pickerFor(element) {
  const select = el("select");
  select.append(new Option(plain(element.placeholder) || "Choose…", ""));
  for (const [value, label] of pickerChoices(element)) select.append(new Option(label, value));
  const initial = element[PICKERS[element.type].initial];
  if (initial) select.value = initial;
  else if (element.default_to_current_conversation && S.view.kind !== "home" && S.view.id) select.value = S.view.id;
  return select;
}

function renderInput(block) {
  const wrap = el("div", "bk-input");
  const element = block.element || {};
  const id = `in-${block.block_id}-${element.action_id}`;
  const label = el("label", null, plain(block.label) + (block.optional ? " (optional)" : ""));
  label.htmlFor = id;
  wrap.append(label);
  let control;
  if (element.type === "plain_text_input") {
    control = element.multiline ? el("textarea") : el("input");
    if (element.multiline) control.rows = 4;
    if (element.initial_value) control.value = element.initial_value;
    if (element.placeholder) control.placeholder = plain(element.placeholder);
    if (element.max_length) control.maxLength = element.max_length;
  } else if (element.type === "number_input") {
    control = el("input");
    control.type = "number";
    control.step = element.is_decimal_allowed ? "any" : "1";
    if (element.initial_value) control.value = element.initial_value;
  } else if (element.type === "static_select" || element.type === "radio_buttons") {
    control = selectFor(element);
  } else if (PICKERS[element.type]) {
    control = pickerFor(element);
  } else {
    wrap.append(el("span", "bk-unknown", `[${element.type}]`));
    return wrap;
  }
  control.id = id;
  control.dataset.blockId = block.block_id;
  control.dataset.actionId = element.action_id;
  wrap.append(control);
  if (block.hint) wrap.append(el("div", "hint", plain(block.hint)));
  wrap.append(el("div", "error"));
  wrap.dataset.blockId = block.block_id;
  return wrap;
}

function inputValues(root) {
  const values = {};
  for (const control of root.querySelectorAll("[data-block-id][data-action-id]")) {
    if (!["INPUT", "TEXTAREA", "SELECT"].includes(control.tagName)) continue;
    const block = (values[control.dataset.blockId] ||= {});
    block[control.dataset.actionId] = control.value;
  }
  return values;
}

async function click(element, block, ctx, selected) {
  const body = { action_id: element.action_id, block_id: block.block_id };
  if (selected !== undefined) body.selected = selected;
  if (ctx.view_id) {
    body.view_id = ctx.view_id;
    if (ctx.root) body.state = inputValues(ctx.root);
  } else {
    body.channel = ctx.channel;
    body.message_ts = ctx.ts;
  }
  await api("/sandbox/click", body);
}

// -- messages -------------------------------------------------------------------------------

function renderMessage(message, channel, { inThread = false } = {}) {
  const row = el("div", "msg");
  row.dataset.ts = message.ts;
  row.dataset.testid = "message";
  const ephemeral = message.subtype === "ephemeral";
  if (ephemeral) row.classList.add("ephemeral");
  if (message.streaming) row.classList.add("streaming");
  const fromBot = Boolean(message.bot_id);
  const name = fromBot && message.user === S.data.bot.id ? "Switchboard" : displayName(message.user);
  const avatar = el("div", fromBot ? "avatar bot" : "avatar", (name || "?").slice(0, 1).toUpperCase());
  row.append(avatar);
  const body = el("div", "body");
  const meta = el("div", "meta");
  meta.append(el("span", "author", name));
  if (fromBot) meta.append(el("span", "app", "APP"));
  const time = el("time", null, tsTime(message.ts));
  time.title = `${myZone() || "local time"} · ${message.ts}`;
  meta.append(time);
  if (ephemeral) meta.append(el("span", "only-you", "Only visible to you"));
  body.append(meta);
  const content = el("div", "content");
  if (message.blocks && message.blocks.length && !message.streaming) {
    content.append(renderBlocks(message.blocks, { channel, ts: message.ts }));
  } else {
    content.append(mrkdwn(message.text));
    if (message.blocks && message.blocks.length) content.append(renderBlocks(message.blocks, { channel, ts: message.ts }));
  }
  if (message.edited) content.append(el("span", "edited", " (edited)"));
  body.append(content);
  if (message.reactions && message.reactions.length) {
    const reactions = el("div", "reactions");
    for (const reaction of message.reactions) {
      reactions.append(el("span", "reaction", `${EMOJI[reaction.name] || `:${reaction.name}:`} ${reaction.count}`));
    }
    body.append(reactions);
  }
  if (!inThread && message.reply_count) {
    const replies = el("button", "replies", `${message.reply_count} ${message.reply_count === 1 ? "reply" : "replies"}`);
    replies.type = "button";
    replies.addEventListener("click", () => openThread(channel, message.ts));
    body.append(replies);
  }
  row.append(body);
  if (!inThread && !ephemeral) {
    const hover = el("div", "hover-actions");
    const reply = el("button", null, "Reply in thread");
    reply.type = "button";
    reply.addEventListener("click", () => openThread(channel, message.ts));
    hover.append(reply);
    row.append(hover);
  }
  return row;
}

function isTopLevel(message) {
  return !message.thread_ts || message.thread_ts === message.ts || message.subtype === "thread_broadcast";
}

function byTs(a, b) { return parseFloat(a.ts) - parseFloat(b.ts); }

function fillMessages(section, messages, channel, options) {
  const nearBottom = section.scrollHeight - section.scrollTop - section.clientHeight < 80;
  const key = JSON.stringify([channel, options && options.root]);
  const fresh = section.dataset.key !== key;
  section.dataset.key = key;
  section.replaceChildren();
  if (!messages.length) section.append(el("div", "empty", "No messages yet."));
  for (const message of messages) section.append(renderMessage(message, channel, options));
  if (fresh || nearBottom) section.scrollTop = section.scrollHeight;
}

function renderChannel() {
  const channel = S.view.id;
  const isDm = S.view.kind === "dm";
  const messages = messagesOf(channel).filter((m) => isTopLevel(m) && m.subtype !== "assistant_app_thread");
  const ephemeral = S.data.ephemeral.filter((m) => m.channel === channel && !m.thread_ts);
  fillMessages($("messages"), [...messages, ...ephemeral].sort(byTs), channel);
  const found = channelById(channel);
  $("title").textContent = isDm ? "Switchboard" : found ? `# ${found.name}` : "";
  $("topic").textContent = isDm ? "Direct messages with the app" : found ? (found.topic || {}).value || "" : "";
  $("composer-input").placeholder = isDm
    ? "Message Switchboard"
    : `Message #${found ? found.name : ""} — try “@switchboard help” or “/switchboard skills”`;
}

function renderThread() {
  const pane = $("thread");
  if (!S.thread) { pane.hidden = true; return; }
  pane.hidden = false;
  const { channel, ts } = S.thread;
  const messages = messagesOf(channel).filter((m) => m.ts === ts || m.thread_ts === ts);
  const ephemeral = S.data.ephemeral.filter((m) => m.channel === channel && m.thread_ts === ts);
  fillMessages($("thread-messages"), [...messages, ...ephemeral].sort(byTs), channel, { inThread: true, root: ts });
}

function renderAssistant() {
  const pane = $("assistant");
  if (!S.assistant) { pane.hidden = true; return; }
  pane.hidden = false;
  const { channel, thread_ts: ts } = S.assistant;
  const state = S.data.assistant.find((a) => a.channel === channel && a.thread_ts === ts) || {};
  $("assistant-title").textContent = state.title || "Assistant · New chat";
  const status = state.status ? `Switchboard ${state.status}` : "";
  $("assistant-status").textContent = status;
  const messages = messagesOf(channel).filter((m) => m.thread_ts === ts && m.ts !== ts);
  fillMessages($("assistant-messages"), messages.sort(byTs), channel, { inThread: true, root: ts });
  const prompts = $("assistant-prompts");
  prompts.replaceChildren();
  const asked = messages.some((m) => m.user === S.me);
  if (!asked) {
    if (state.prompts_title) prompts.append(el("div", "hint", state.prompts_title));
    for (const prompt of state.prompts || []) {
      const button = el("button", null, prompt.title);
      button.type = "button";
      button.addEventListener("click", () => api("/sandbox/say", { channel, thread_ts: ts, text: prompt.message }));
      prompts.append(button);
    }
  }
}

function renderHome() {
  const home = $("home");
  const view = S.data.home;
  home.replaceChildren();
  if (!view) { home.append(el("div", "empty", "Loading App Home…")); return; }
  home.append(renderBlocks(view.blocks, { view_id: view.id, root: home }));
}

function renderSidebar() {
  $("team-name").textContent = S.data.team.name;
  const person = $("person");
  person.replaceChildren();
  for (const id of S.data.people) {
    const user = userById(id);
    // The name alone fits the sidebar; the role is shown under the picker (and as a tooltip).
    const option = new Option(user.real_name || user.name, id);
    option.title = user.profile.title || user.name;
    person.append(option);
  }
  person.value = S.me;
  const me = userById(S.me);
  $("person-role").textContent = me ? [me.profile.title, me.tz].filter(Boolean).join(" · ") : "";
  const list = $("channel-list");
  list.replaceChildren();
  for (const channel of S.data.channels.filter((c) => !c.is_im)) {
    const item = el("li");
    const link = el("a", "nav", `# ${channel.name}`);
    link.href = "#";
    link.dataset.channel = channel.id;
    if (S.view.kind === "channel" && S.view.id === channel.id) link.classList.add("active");
    link.addEventListener("click", (event) => { event.preventDefault(); S.view = { kind: "channel", id: channel.id }; S.thread = null; renderAll(); });
    item.append(link);
    list.append(item);
  }
  const dms = $("dm-list");
  dms.replaceChildren();
  const dm = dmChannel();
  if (dm) {
    const link = el("a", "nav", "Switchboard");
    link.href = "#";
    link.dataset.channel = dm;
    if (S.view.kind === "dm") link.classList.add("active");
    link.addEventListener("click", (event) => { event.preventDefault(); S.view = { kind: "dm", id: dm }; S.thread = null; renderAll(); });
    const item = el("li");
    item.append(link);
    dms.append(item);
  }
  $("nav-home").classList.toggle("active", S.view.kind === "home");
  $("nav-assistant").classList.toggle("active", Boolean(S.assistant));
}

function renderAll() {
  if (!S.data) return;
  document.body.dataset.me = S.me;  // lets tests (and styles) know whose view this is
  renderSidebar();
  const home = S.view.kind === "home";
  $("messages").hidden = home;
  $("composer").hidden = home;
  $("home").hidden = !home;
  if (home) {
    $("title").textContent = "Switchboard";
    $("topic").textContent = "App Home";
    renderHome();
  } else {
    renderChannel();
  }
  renderThread();
  renderAssistant();
  renderModal();
}

let scheduled = false;
function scheduleRender() {
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(() => { scheduled = false; renderAll(); });
}

// -- surfaces -------------------------------------------------------------------------------

function openThread(channel, ts) {
  S.thread = { channel, ts };
  S.assistant = null;
  renderAll();
  $("thread-input").focus();
}

async function openHome() {
  S.view = { kind: "home", id: null };
  S.thread = null;
  renderAll();
  await api("/sandbox/home", {});
}

async function openAssistant(fresh) {
  const dm = dmChannel();
  const existing = S.data.assistant.filter((a) => a.channel === dm).sort((a, b) => parseFloat(b.thread_ts) - parseFloat(a.thread_ts));
  S.thread = null;
  if (!fresh && existing.length) {
    S.assistant = { channel: dm, thread_ts: existing[0].thread_ts };
  } else {
    const answer = await api("/sandbox/assistant", { context_channel: S.view.kind === "channel" ? S.view.id : null });
    if (!answer.thread_ts) return;
    S.assistant = { channel: answer.channel, thread_ts: answer.thread_ts };
    if (!S.data.assistant.some((a) => a.thread_ts === answer.thread_ts)) {
      S.data.assistant.push({ channel: answer.channel, thread_ts: answer.thread_ts });
    }
  }
  renderAll();
  $("assistant-input").focus();
}

function renderModal() {
  const view = S.data.modal;
  const backdrop = $("modal-backdrop");
  if (!view) { backdrop.hidden = true; backdrop.dataset.viewId = ""; return; }
  if (backdrop.dataset.viewId === view.id && backdrop.dataset.hash === view.hash) return;
  backdrop.dataset.viewId = view.id;
  backdrop.dataset.hash = view.hash;
  backdrop.hidden = false;
  $("modal-title").textContent = plain(view.title);
  $("modal-submit").textContent = plain(view.submit) || "Submit";
  $("modal-submit").hidden = !view.submit;
  $("modal-close").textContent = plain(view.close) || "Cancel";
  $("modal-error").textContent = "";
  const body = $("modal-body");
  body.replaceChildren(renderBlocks(view.blocks, { view_id: view.id, root: body }));
}

async function submitModal(event) {
  event.preventDefault();
  const view = S.data.modal;
  if (!view) return;
  const body = $("modal-body");
  for (const node of body.querySelectorAll(".bk-input .error")) node.textContent = "";
  const answer = await api("/sandbox/submit", { view_id: view.id, values: inputValues(body) });
  const errors = answer.errors || {};
  for (const [blockId, message] of Object.entries(errors)) {
    const box = body.querySelector(`.bk-input[data-block-id="${CSS.escape(blockId)}"] .error`);
    if (box) box.textContent = message; else $("modal-error").textContent = message;
  }
  if (answer.closed) { S.data.modal = null; renderModal(); }
}

async function closeModal() {
  S.data.modal = null;
  renderModal();
  await api("/sandbox/close", {});
}

// -- live updates ---------------------------------------------------------------------------

function upsert(list, message) {
  const index = list.findIndex((m) => m.ts === message.ts);
  if (index >= 0) list[index] = message; else list.push(message);
  list.sort(byTs);
}

function apply(change) {
  if (!S.data) return;
  if (change.user && change.user !== S.me) return;
  const data = change.data;
  switch (change.kind) {
    case "message": {
      const list = S.data.messages[data.channel];
      if (!list) return;
      upsert(list, data.message);
      break;
    }
    case "message_deleted": {
      const list = S.data.messages[data.channel];
      if (list) S.data.messages[data.channel] = list.filter((m) => m.ts !== data.ts);
      break;
    }
    case "ephemeral": upsert(S.data.ephemeral, data.message); break;
    case "ephemeral_deleted": S.data.ephemeral = S.data.ephemeral.filter((m) => m.ts !== data.ts); break;
    case "home": S.data.home = data.view; break;
    case "modal": S.data.modal = data.view; break;
    case "modal_closed": S.data.modal = null; break;
    case "assistant": {
      const found = S.data.assistant.find((a) => a.channel === data.channel && a.thread_ts === data.thread_ts);
      if (found) Object.assign(found, data.state); else S.data.assistant.push({ channel: data.channel, thread_ts: data.thread_ts, ...data.state });
      break;
    }
    case "channel": load(S.me); return;
    default: return;
  }
  scheduleRender();
}

function connect() {
  const source = new EventSource("/sandbox/events", { withCredentials: true });
  let dropped = false;
  source.onopen = () => {
    $("live").classList.add("on");
    if (dropped) load(S.me);
  };
  source.onerror = () => { dropped = true; $("live").classList.remove("on"); };
  source.onmessage = (event) => { try { apply(JSON.parse(event.data)); } catch (error) { console.error(error); } };
}

// -- composers ------------------------------------------------------------------------------

function composer(formId, inputId, target) {
  const form = $(formId);
  const input = $(inputId);
  const send = async (event) => {
    event.preventDefault();
    const text = input.value;
    if (!text.trim()) return;
    const where = target();
    if (!where.channel) return;
    input.value = "";
    const answer = await api("/sandbox/say", { text, ...where });
    if (answer.error) input.value = text;
  };
  form.addEventListener("submit", send);
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) send(event);
  });
}

function init() {
  composer("composer", "composer-input", () => ({ channel: S.view.id }));
  composer("thread-composer", "thread-input", () => ({ channel: S.thread.channel, thread_ts: S.thread.ts }));
  composer("assistant-composer", "assistant-input", () => ({ channel: S.assistant.channel, thread_ts: S.assistant.thread_ts }));
  $("thread-close").addEventListener("click", () => { S.thread = null; renderAll(); });
  $("assistant-close").addEventListener("click", () => { S.assistant = null; renderAll(); });
  $("assistant-new").addEventListener("click", () => openAssistant(true));
  $("nav-home").addEventListener("click", (event) => { event.preventDefault(); openHome(); });
  $("nav-assistant").addEventListener("click", (event) => { event.preventDefault(); openAssistant(false); });
  $("person").addEventListener("change", (event) => load(event.target.value));
  $("modal").addEventListener("submit", submitModal);
  $("modal-close").addEventListener("click", closeModal);
  $("modal-x").addEventListener("click", closeModal);
  const params = new URLSearchParams(window.location.search);
  load(params.get("user")).then(connect, (error) => console.warn(error.message));
}

// A skill spec that does not validate (after an edit on disk) shows as a banner with its
// file:line; the previous version keeps serving. Polled, like the Skills page.
async function skillsBanner() {
  let data;
  try {
    const response = await fetch("/sandbox/skills", { credentials: "same-origin" });
    if (!response.ok) return;
    data = await response.json();
  } catch (_) { return; }
  const banner = $("skills-banner");
  banner.replaceChildren();
  if (data.errors.length) {
    const title = el("strong", null, `Skill spec problem: ${data.errors[0]}`);
    banner.appendChild(title);
    if (data.errors.length > 1) banner.appendChild(el("span", null, ` (and ${data.errors.length - 1} more)`));
    banner.appendChild(el("span", null, " — the previous version keeps serving. "));
    const link = el("a", null, "Skills page");
    link.href = "/skills";
    link.target = "_blank";
    banner.appendChild(link);
  }
  banner.hidden = data.errors.length === 0;
}

init();
skillsBanner();
setInterval(skillsBanner, 3000);
