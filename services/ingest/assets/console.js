// Herald's console: what JavaScript adds to pages that work without it.
// - A campaign page follows the API's live view (Server-Sent Events) and updates its counters.
// - The new campaign form previews each chosen template's text.
// - The upload form previews the CSV's first rows and how its columns map to the values.
"use strict";

function follow(section) {
  const source = new EventSource(section.dataset.live);
  const set = (selector, text) => {
    const el = section.querySelector(selector);
    if (el) el.textContent = text;
  };
  const eta = (s) => s == null ? "—" : s < 60 ? `${Math.round(s)} s`
    : s < 3600 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`;
  source.addEventListener("progress", (event) => {
    const c = JSON.parse(event.data);
    for (const [name, value] of Object.entries(c.counters)) set(`[data-counter="${name}"]`, value);
    const bar = section.querySelector("#bar");
    if (bar) bar.value = c.progress;
    set('[data-field="progress"]', c.progress.toFixed(1));
    set('[data-field="rate"]', c.send_rate == null ? "—" : `${Math.round(c.send_rate)}/s`);
    set('[data-field="eta"]', eta(c.eta_seconds));
    // A new state brings other actions: show the page as the server makes it. (The
    // `state` events replay the campaign's history; progress says where it is now.)
    if (c.state !== section.dataset.state) {
      source.close();
      window.location.reload();
    }
  });
}

function previewTemplates() {
  for (const select of document.querySelectorAll("select[data-preview]")) {
    const out = document.getElementById(select.dataset.preview);
    const show = () => {
      const option = select.selectedOptions[0];
      out.textContent = option && option.dataset.body ? option.dataset.body : "";
    };
    select.addEventListener("change", show);
    show();
  }
}

function splitCsvLine(line) {
  const cells = [];
  let cell = "", quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') { cell += '"'; i++; }
      else if (ch === '"') quoted = false;
      else cell += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ",") { cells.push(cell); cell = ""; }
    else cell += ch;
  }
  cells.push(cell);
  return cells.map((c) => c.trim());
}

function previewUpload(form) {
  const input = form.querySelector("input[type=file]");
  const out = form.querySelector("#preview");
  const required = (form.dataset.required || "").split(",").filter(Boolean);
  input.addEventListener("change", async () => {
    out.replaceChildren();
    const file = input.files[0];
    if (!file) { out.hidden = true; return; }
    const text = await file.slice(0, 64 * 1024).text();
    const lines = text.split(/\r?\n/).filter((l) => l.trim() !== "").slice(0, 6);
    if (lines.length === 0) { out.hidden = true; return; }
    const header = splitCsvLine(lines[0]);
    const mapping = document.createElement("p");
    const lower = header.map((h) => h.toLowerCase());
    const phone = lower.includes("phone") ? "phone" : null;
    const missing = required.filter((k) => !header.includes(k));
    mapping.append(phone ? "Phone column: phone. " : "");
    if (!phone) {
      const warn = document.createElement("span");
      warn.className = "missing";
      warn.textContent = "No phone column. ";
      mapping.append(warn);
    }
    mapping.append(`Value columns: ${header.filter((h) => required.includes(h)).join(", ") || "none"}. `);
    if (missing.length) {
      const warn = document.createElement("span");
      warn.className = "missing";
      warn.textContent = `Missing: ${missing.join(", ")}.`;
      mapping.append(warn);
    }
    const table = document.createElement("table");
    table.className = "preview";
    lines.forEach((line, i) => {
      const row = table.insertRow();
      for (const value of splitCsvLine(line)) {
        const cell = document.createElement(i === 0 ? "th" : "td");
        cell.textContent = value;
        row.append(cell);
      }
    });
    // The first row's message, as its recipient will read it.
    const message = [];
    if (form.dataset.body && lines.length > 1) {
      const first = splitCsvLine(lines[1]);
      const rendered = form.dataset.body.replace(/\{\{\s*(\w+)\s*\}\}/g, (whole, key) => {
        const column = header.indexOf(`body.${key}`);
        return column >= 0 && first[column] !== undefined ? first[column] : whole;
      });
      const label = document.createElement("p");
      label.textContent = "The first row's message:";
      const text = document.createElement("pre");
      text.className = "message";
      text.textContent = rendered;
      message.push(label, text);
    }
    const caption = table.createCaption();
    caption.textContent = `The first ${lines.length - 1} rows of ${file.name}`;
    const scroll = document.createElement("div");
    scroll.className = "scroll";
    scroll.append(table);
    out.append(mapping, ...message, scroll);
    out.hidden = false;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const live = document.querySelector("[data-live]");
  if (live && window.EventSource) follow(live);
  previewTemplates();
  const upload = document.getElementById("upload");
  if (upload) previewUpload(upload);
});
