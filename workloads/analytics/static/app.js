"use strict";
// Renders the party page. Every value goes through textContent (never innerHTML).

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function setStatus(id, text, state) {
  const node = document.getElementById(id);
  node.textContent = text;
  node.className = "status " + state;
}

function fillRows(tbody, rows) {
  tbody.replaceChildren();
  for (const cells of rows) {
    const tr = el("tr");
    for (const cell of cells) {
      const td = typeof cell === "number" ? el("td", cell, "num") : el("td", cell);
      tr.appendChild(td);
    }
    tbody.appendChild(tr);
  }
}

async function getJson(path) {
  const response = await fetch(path, { headers: { accept: "application/json" } });
  const body = await response.json();
  if (!response.ok) {
    const error = body && body.error ? body.error : { code: "HttpError", message: response.statusText };
    throw new Error(error.code + ": " + error.message);
  }
  return body;
}

async function loadInfo() {
  const info = await getJson("/api/info");
  document.getElementById("party-name").textContent = info.display_name;
  document.getElementById("party-role").textContent =
    info.role === "aggregator"
      ? "Aggregates the data of " + info.partners.join(" and ") + " inside this Confidential VM"
      : "Data owner";
  document.getElementById("k-value").textContent = info.k;
  if (info.role === "aggregator") {
    document.getElementById("analytics").hidden = false;
    followAnalytics();
  }
}

async function loadAttestation() {
  try {
    const result = await getJson("/api/attestation");
    setStatus("attestation-status",
      "Verified by this app: " + result.checks.join(", ") +
      (result.compliant_cvm ? " — a compliant Confidential VM" : " — NOT a compliant Confidential VM"),
      result.compliant_cvm && !result.debuggable ? "ok" : "bad");
    fillRows(document.querySelector("#claims tbody"),
      result.claims.map((c) => [c.title, c.value, c.explanation]));
  } catch (error) {
    setStatus("attestation-status", "Not verified: " + error.message, "bad");
  }
}

async function loadKeys(attempt = 0) {
  try {
    const result = await getJson("/api/keys");
    fillRows(document.querySelector("#key-table tbody"),
      result.keys.map((k) => [k.vault, k.name, k.state + (k.error_code ? " (" + k.error_code + ")" : ""), k.version || ""]));
    const policies = document.getElementById("policies");
    policies.replaceChildren();
    for (const k of result.keys) {
      if (!k.release_policy) continue;
      policies.appendChild(el("h3", "Release policy of " + k.name + " (as returned by Key Vault)"));
      const text = typeof k.release_policy === "string" ? k.release_policy : JSON.stringify(k.release_policy, null, 2);
      policies.appendChild(el("pre", text));
    }
    const released = result.keys.filter((k) => k.state === "released").length;
    const refused = result.keys.filter((k) => k.state === "denied").length;
    const pending = result.keys.some((k) => k.state === "pending");
    setStatus("keys-status",
      released + " of " + result.keys.length + " keys released to this VM" +
        (refused ? "; " + refused + " refused by their vaults (see the isolation check)" : ""),
      pending ? "pending" : "ok");
    if (pending && attempt < 60) setTimeout(() => loadKeys(attempt + 1), 2000);
  } catch (error) {
    setStatus("keys-status", "Key status unavailable: " + error.message, "bad");
  }
}

async function runIsolation() {
  setStatus("isolation-status", "asking the other parties' vaults…", "pending");
  try {
    const result = await getJson("/api/isolation");
    fillRows(document.querySelector("#isolation-table tbody"),
      result.results.map((r) => [r.vault, r.name,
        (r.released ? "RELEASED" : "refused") + (r.when ? " (" + r.when + ")" : ""),
        [r.status, r.code, r.message].filter((x) => x !== undefined && x !== null).join(" ")]));
    const leaked = result.results.some((r) => r.released);
    const unanswered = result.results.some((r) => !r.released && r.status !== 403);
    if (result.results.length === 0) {
      setStatus("isolation-status",
        "No other party's key is withheld from this VM (its grants cover every key it needs)",
        "ok");
    } else if (leaked) {
      setStatus("isolation-status", "ISOLATION BROKEN: another party's key was released to this VM", "bad");
    } else if (unanswered) {
      setStatus("isolation-status", "Inconclusive: a vault did not answer with a refusal", "pending");
    } else {
      setStatus("isolation-status", "Isolated: Key Vault refused every other party's key", "ok");
    }
  } catch (error) {
    setStatus("isolation-status", "Isolation check failed: " + error.message, "bad");
  }
}

function followAnalytics() {
  const progress = document.getElementById("progress");
  const source = new EventSource("/api/analytics/events");
  const onEvent = (message) => {
    const event = JSON.parse(message.data);
    progress.appendChild(el("li", event.message));
    if (event.step === "done") {
      source.close();
      renderReport(event.report);
      setStatus("analytics-status", "Aggregates ready", "ok");
    } else if (event.step === "failed") {
      source.close();
      setStatus("analytics-status", "Analytics failed: " + event.message, "bad");
    } else {
      setStatus("analytics-status", "running…", "pending");
    }
  };
  for (const step of ["start", "release", "fetch", "decrypt", "compute", "done", "failed"]) {
    source.addEventListener(step, onEvent);
  }
}

function table(id, caption, headers, rows) {
  const t = el("table");
  t.id = id;
  t.appendChild(el("caption", caption));
  const head = el("tr");
  for (const h of headers) head.appendChild(el("th", h));
  const thead = el("thead");
  thead.appendChild(head);
  t.appendChild(thead);
  const tbody = el("tbody");
  t.appendChild(tbody);
  fillRows(tbody, rows);
  return t;
}

function money(value) {
  return value.toFixed(2);
}

function renderReport(report) {
  const out = document.getElementById("results");
  out.replaceChildren();
  out.appendChild(table("stat-record_counts", "Records", ["Party", "People"],
    report.record_counts.map((c) => [c.label, c.people])));
  out.appendChild(table("stat-top_countries", "Top countries and their top cities",
    ["Country", "People", "Top cities"],
    report.top_countries.map((c) => [c.country, c.people,
      c.top_cities.length
        ? c.top_cities.map((t) => t.label + " (" + t.people + ")").join(", ")
        : "— (no city with " + report.k + " or more people)"])));
  out.appendChild(table("stat-generations", "Generations (birth year from age, reference " +
    report.reference_date + ")", ["Generation", "People", "Share %"],
    report.generations.map((g) => [g.label, g.people, g.percent.toFixed(1)])));
  for (const [party, shares] of Object.entries(report.generations_by_party)) {
    out.appendChild(table("stat-generations-" + party, "Generations at " + party,
      ["Generation", "People", "Share %"],
      shares.map((g) => [g.label, g.people, g.percent.toFixed(1)])));
  }
  out.appendChild(table("stat-average_salary_by_country", "Average salary by country",
    ["Country", "People", "Average salary"],
    report.average_salary_by_country.map((a) => [a.label, a.people, money(a.average)])));
  const byParty = report.average_salary_by_party.map((a) => [a.label, a.people, money(a.average)]);
  if (report.average_salary_combined) {
    const c = report.average_salary_combined;
    byParty.push([c.label, c.people, money(c.average)]);
  }
  out.appendChild(table("stat-average_salary_by_party", "Average salary per company and combined",
    ["Company", "People", "Average salary"], byParty));
  out.appendChild(table("stat-eye_colors", "Eye colours", ["Colour", "People"],
    report.eye_colors.map((c) => [c.label, c.people])));
  out.appendChild(table("stat-favorite_colors", "Top favourite colours", ["Colour", "People"],
    report.favorite_colors.map((c) => [c.label, c.people])));
  const suppressed = Object.entries(report.suppressed_groups);
  out.appendChild(table("stat-suppressed", "Groups withheld (fewer than " + report.k + " people)",
    ["Statistic", "Groups withheld"], suppressed.map(([name, n]) => [name, n])));
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("isolation-run").addEventListener("click", runIsolation);
  loadInfo().catch((error) => setStatus("analytics-status", error.message, "bad"));
  loadAttestation();
  loadKeys();
});
