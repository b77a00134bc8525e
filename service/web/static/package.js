// The package page: uploads (files and folders, resumable) and checking downloads.
import { canonical } from "./canonical.js";
import { Sha256, base64, hex, messages, sha256 } from "./sha256.js";

const root = document.getElementById("package");
const t = messages(root);
const packageId = root.dataset.package;
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const PART = 8 * 1024 * 1024; // bytes per append request
const READ = 4 * 1024 * 1024; // bytes read at once when re-hashing what was sent
const PARALLEL = 2;
const MAX_REALIGN = 5; // offset corrections accepted per file before giving up

const itemPath = (name) => name.split("/").map(encodeURIComponent).join("/");
const itemUrl = (name) => `/v1/packages/${encodeURIComponent(packageId)}/items/${itemPath(name)}`;

async function problemOf(response) {
  try { return await response.json(); } catch { return { detail: `HTTP ${response.status}` }; }
}

// -- uploads ---------------------------------------------------------------------------------

class Transfer {
  constructor(file, name, list) {
    this.file = file;
    this.name = name;
    this.sent = 0;
    this.row = document.createElement("li");
    const label = document.createElement("bdi");
    label.textContent = name; // text, never markup
    this.bar = document.createElement("progress");
    this.bar.max = Math.max(file.size, 1);
    this.bar.value = 0;
    this.bar.setAttribute("aria-label", name);
    this.state = document.createElement("span");
    this.state.textContent = t("upload.waiting");
    this.row.append(label, this.bar, this.state);
    this.row.dataset.name = name;
    list.append(this.row);
  }

  show(text, cls = "") {
    this.state.textContent = text;
    this.state.className = cls;
    this.row.dataset.state = cls || "busy";
  }

  progress(offset) {
    this.sent = offset;
    this.bar.value = offset;
    overall();
  }
}

const transfers = [];

function overall() {
  const bar = document.getElementById("overall");
  const total = transfers.reduce((n, x) => n + x.file.size, 0);
  const sent = transfers.reduce((n, x) => n + x.sent, 0);
  bar.max = Math.max(total, 1);
  bar.value = sent;
}

function xhr(method, url, headers, body, onProgress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open(method, url);
    for (const [k, v] of Object.entries(headers)) request.setRequestHeader(k, v);
    if (onProgress) request.upload.onprogress = (e) => onProgress(e.loaded);
    request.onload = () => resolve(request);
    request.onerror = () => reject(new Error("network error"));
    request.send(body);
  });
}

async function hashUpTo(file, end, transfer) {
  const sha = new Sha256();
  for (let at = 0; at < end; at += READ) {
    sha.update(await file.slice(at, Math.min(at + READ, end)).arrayBuffer());
    transfer.progress(Math.min(at + READ, end));
  }
  return sha;
}

async function upload(transfer) {
  const { file, name } = transfer;
  const created = await fetch(itemUrl(name), {
    method: "PUT", credentials: "same-origin",
    headers: { "Upload-Complete": "?0", "Upload-Length": String(file.size), "X-CSRF-Token": csrf },
  });
  let location, offset = 0;
  if (created.status === 201) {
    location = created.headers.get("Location");
  } else {
    const problem = await problemOf(created);
    if (created.status === 409 && problem.upload) { // ours, interrupted earlier: resume it
      location = problem.upload;
      offset = Number(problem.offset) || 0;
    } else if (created.status === 409 && String(problem.type).endsWith("/item-exists")) {
      // The same name is there already: the same file only if the digests agree.
      transfer.show(t("upload.hashing"));
      const local = `sha-256=:${base64((await hashUpTo(file, file.size, transfer)).digest())}:`;
      const stored = await fetch(itemUrl(name) + "/content", { method: "HEAD", credentials: "same-origin" });
      const same = stored.ok && stored.headers.get("Repr-Digest") === local;
      transfer.show(same ? t("upload.exists") : t("upload.differs"), same ? "ok" : "bad");
      return;
    } else {
      throw new Error(problem.detail || `HTTP ${created.status}`);
    }
  }
  let sha = new Sha256();
  if (offset > 0) {
    transfer.show(t("upload.hashing"));
    sha = await hashUpTo(file, offset, transfer);
    transfer.show(t("upload.resumed", { offset }));
    transfer.row.dataset.resumedAt = String(offset);
  }
  transfer.progress(offset);
  let realigned = 0;
  while (true) {
    const end = Math.min(offset + PART, file.size);
    const part = await file.slice(offset, end).arrayBuffer();
    sha.update(part);
    const last = end === file.size;
    const headers = {
      "Content-Type": "application/partial-upload", "Upload-Offset": String(offset),
      "Upload-Complete": last ? "?1" : "?0", "X-CSRF-Token": csrf,
    };
    if (last) headers["Repr-Digest"] = `sha-256=:${base64(sha.digest())}:`;
    if (!transfer.row.dataset.resumedAt) transfer.show(t("upload.sending"));
    const start = offset;
    const answer = await xhr("PATCH", location, headers, part,
                             (loaded) => transfer.progress(start + loaded));
    if (answer.status === 201) {
      transfer.progress(file.size);
      transfer.show(t("upload.done"), "ok");
      return;
    }
    let problem = {};
    try { problem = JSON.parse(answer.responseText); } catch { problem = { detail: `HTTP ${answer.status}` }; }
    const expected = problem["expected-offset"];
    if (answer.status === 409 && Number.isSafeInteger(expected) && realigned < MAX_REALIGN) {
      // The service holds more (or less) than we thought -- e.g. the request cut by a reload
      // was still being stored: continue from its offset, the digest rebuilt up to there.
      realigned += 1;
      offset = expected;
      sha = await hashUpTo(file, offset, transfer);
      continue;
    }
    if (answer.status !== 204) throw new Error(problem.detail || `HTTP ${answer.status}`);
    offset = Number(answer.getResponseHeader("Upload-Offset"));
    if (offset !== end) sha = await hashUpTo(file, offset, transfer); // the service kept less
    transfer.progress(offset);
  }
}

async function run(files) {
  const list = document.getElementById("transfers");
  const queue = files.map(([file, name]) => new Transfer(file, name, list));
  transfers.push(...queue);
  overall();
  document.getElementById("upload-done").hidden = true;
  let failed = 0;
  const worker = async () => {
    while (queue.length) {
      const transfer = queue.shift();
      try {
        await upload(transfer);
      } catch (error) {
        failed += 1;
        transfer.show(t("upload.failed", { reason: error.message }), "bad");
      }
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, worker));
  if (!failed) document.getElementById("upload-done").hidden = false;
}

async function entries(entry, into) {
  if (entry.isFile) {
    const file = await new Promise((ok, ko) => entry.file(ok, ko));
    into.push([file, entry.fullPath.replace(/^\//, "")]);
  } else if (entry.isDirectory) {
    const reader = entry.createReader();
    while (true) {
      const batch = await new Promise((ok, ko) => reader.readEntries(ok, ko));
      if (!batch.length) break;
      for (const child of batch) await entries(child, into);
    }
  }
}

const zone = document.getElementById("drop-zone");
if (zone) {
  const picked = (input) => () => {
    run(Array.from(input.files, (f) => [f, f.webkitRelativePath || f.name]));
    input.value = "";
  };
  const files = document.getElementById("pick-files");
  const folder = document.getElementById("pick-folder");
  files.addEventListener("change", picked(files));
  folder.addEventListener("change", picked(folder));
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", async (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    const found = [];
    for (const item of Array.from(e.dataTransfer.items)) {
      const entry = item.webkitGetAsEntry && item.webkitGetAsEntry();
      if (entry) await entries(entry, found);
    }
    run(found);
  });
  zone.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); files.click(); }
  });
}

// -- checking downloads ----------------------------------------------------------------------

async function check(row) {
  const cell = row.querySelector(".check");
  const expected = row.dataset.sha256;
  cell.textContent = t("verify.running");
  cell.className = "check";
  try {
    const response = await fetch(itemUrl(row.dataset.name) + "/content", { credentials: "same-origin" });
    if (!response.ok) throw new Error((await problemOf(response)).detail);
    const sha = new Sha256();
    const reader = response.body.getReader();
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      sha.update(value);
    }
    const got = hex(sha.digest());
    const ok = got === expected;
    cell.textContent = ok ? t("verify.ok") : t("verify.bad");
    cell.className = ok ? "check ok" : "check bad";
    row.dataset.verified = ok ? "yes" : "no";
    row.dataset.computed = got;
    return ok;
  } catch (error) {
    cell.textContent = t("verify.error", { reason: error.message });
    cell.className = "check bad";
    row.dataset.verified = "no";
    return false;
  }
}

const verifyAll = document.getElementById("verify-all");
if (verifyAll) {
  verifyAll.addEventListener("click", async () => {
    verifyAll.disabled = true;
    const rows = Array.from(document.querySelectorAll('#items tbody tr[data-kind="file"]'));
    let good = 0;
    for (const row of rows) if (await check(row)) good += 1;
    const summary = document.getElementById("verify-summary");
    summary.textContent = `${good} / ${rows.length}`;
    if (good === rows.length) await receipt();
    summary.dataset.done = "yes";
    verifyAll.disabled = false;
  });
}

// The manifest of what this browser received and checked (docs/api.md, "Transfers"): RFC 8785
// bytes of {"package", "items"}, items sorted by name in code point order; put on the record as
// the recipient's receipt (download.verified), which says whether it equals the sealed one.
const byCodePoint = (a, b) => {
  const x = Array.from(a.name, (c) => c.codePointAt(0)), y = Array.from(b.name, (c) => c.codePointAt(0));
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
};

async function receipt() {
  const rows = Array.from(document.querySelectorAll("#items tbody tr"));
  const items = rows.map((row) => {
    const item = { name: row.dataset.name, size: Number(row.dataset.size),
                   sha256: row.dataset.kind === "file" ? row.dataset.computed : row.dataset.sha256 };
    if (row.dataset.kind !== "file") item.kind = row.dataset.kind;
    if (row.dataset.kind === "link") item.target = row.dataset.target;
    return item;
  }).sort(byCodePoint);
  const manifest = hex(await sha256(new TextEncoder().encode(canonical({ package: packageId, items }))));
  const bytes = rows.reduce((n, row) => n + (row.dataset.kind === "file" ? Number(row.dataset.size) : 0), 0);
  const answer = await fetch(`/v1/packages/${encodeURIComponent(packageId)}/receipts`, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: JSON.stringify({ manifest_sha256: manifest, items: items.length, bytes }),
  });
  const shown = document.getElementById("receipt");
  if (!answer.ok) {
    shown.textContent = t("verify.error", { reason: (await problemOf(answer)).detail });
    shown.className = "bad";
    return;
  }
  const record = await answer.json();
  shown.textContent = t("verify.receipt", { index: record.ledger_index,
    matches: record.matches_seal ? t("verify.matches") : t("verify.differs") });
  shown.className = record.matches_seal ? "ok" : "bad";
  shown.dataset.matches = record.matches_seal ? "yes" : "no";
}

// -- the whole package as a folder (a ZIP the service streams) --------------------------------

const folderLink = document.getElementById("download-folder");
if (folderLink) {
  // The browser downloads it by itself (the link works without this script); the page then
  // says how to check what arrived.
  folderLink.addEventListener("click", () => {
    const status = document.getElementById("folder-status");
    status.textContent = t("package.folder.started");
    status.dataset.started = "yes";
  });
}
