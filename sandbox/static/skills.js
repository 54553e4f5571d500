// The sandbox's Skills page: polls /sandbox/skills (the live registry, the last reload's
// problems and the newest eval results) and renders it. Text goes in with textContent only.
"use strict";

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function evalText(summary) {
  if (!summary) return "not evaluated yet";
  const rate = Math.round(summary.pass_rate * 100);
  const mode = summary.mode ? `, ${summary.mode}` : "";
  return `${summary.passed}/${summary.cases} passed (${rate}%) · ${summary.model}${mode} · ${summary.started_at}`;
}

function render(data) {
  const banner = document.getElementById("skills-banner");
  banner.replaceChildren();
  if (data.errors.length) {
    const title = document.createElement("strong");
    title.textContent = `${data.errors.length} skill spec problem(s): the previous version keeps serving`;
    banner.appendChild(title);
    const list = document.createElement("ul");
    for (const error of data.errors) {
      const item = document.createElement("li");
      item.textContent = error;
      list.appendChild(item);
    }
    banner.appendChild(list);
  }
  banner.hidden = data.errors.length === 0;
  document.getElementById("folders").textContent = `Loaded from: ${data.folders.join(", ")}`;
  document.getElementById("reloaded").textContent =
    data.reloaded_at ? `last load: ${data.reloaded_at} (${data.outcome})` : "";
  const body = document.querySelector("#skills-table tbody");
  body.replaceChildren();
  for (const skill of data.skills) {
    const row = document.createElement("tr");
    row.dataset.skill = skill.name;
    const name = cell(row, skill.name, "name");
    const description = document.createElement("div");
    description.className = "description";
    description.textContent = skill.description;
    name.appendChild(description);
    cell(row, (skill.version || "–") + (skill.canary != null ? ` (canary ${skill.canary}%)` : ""));
    cell(row, skill.state, skill.state === "valid" ? "ok" : "warn");
    cell(row, evalText(skill.eval));
    cell(row, skill.source, "source");
    body.appendChild(row);
  }
}

async function refresh() {
  try {
    const response = await fetch("/sandbox/skills", { credentials: "same-origin" });
    if (response.ok) render(await response.json());
  } catch (_) { /* the sandbox is restarting: try again */ }
}

refresh();
setInterval(refresh, 2000);
