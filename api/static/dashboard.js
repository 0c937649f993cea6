// slacomp dashboard: reads the API with the key kept in sessionStorage (given once in the form, or
// as #key=... in the address: the fragment is never sent to the server). #as_of=ISO pins "now".
"use strict";
(function () {
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.get("key")) sessionStorage.setItem("slacomp-key", params.get("key"));
  const asOf = params.get("as_of") || "";
  if (params.has("key")) history.replaceState(null, "", location.pathname + (asOf ? "#as_of=" + asOf : ""));
  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  const pct = (bps) => (bps / 100).toFixed(2) + "%";
  const hours = (s) => (s === null || s === undefined) ? "–" : (s / 3600).toFixed(1) + " h";
  const short = (a) => a ? a.slice(0, 8) + "…" + a.slice(-4) : "";

  function askKey(message) {
    $("key-section").hidden = false;
    if (message) $("error").textContent = message;
    $("key-form").onsubmit = (e) => { e.preventDefault(); sessionStorage.setItem("slacomp-key", $("key-input").value.trim()); location.reload(); };
  }

  async function api(path) {
    const key = sessionStorage.getItem("slacomp-key");
    if (!key) { askKey("An API key is needed to read agreements."); throw new Error("no key"); }
    const r = await fetch(path, {headers: {"X-API-Key": key}});
    const body = await r.json().catch(() => ({}));
    if (r.status === 401) { askKey("That API key was refused."); throw new Error("401"); }
    if (!r.ok) throw new Error(`${r.status}: ${typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)}`);
    return body;
  }

  async function index() {
    const rows = await api("/v1/agreements");
    $("agreements").querySelector("tbody").innerHTML = rows.map((a) =>
      `<tr><td><a href="/dashboard/${a.address}">${a.address}</a></td><td>${short(a.vendor)}</td>` +
      `<td>${short(a.customer)}</td><td class="muted">${short(a.terms_hash)}</td></tr>`).join("");
    document.body.dataset.ready = "1";
  }

  const TAGS = {lost: "lost", at_risk: "at risk", on_track: ""};
  function pMeetCell(site, objectiveId, f, units) {
    if (!f) return "<td class='muted num'>–</td>";
    const i = f.attainment_interval_bps;
    const title = `90% interval ${pct(i.p05)} – ${pct(i.p95)} · expected credit ${units(f.expected_credit)}`;
    return `<td class="num p-${f.status}" title="${esc(title)}" data-testid="pmeet-${esc(site)}-${esc(objectiveId)}">` +
           `${(100 * f.p_meet).toFixed(0)}%${TAGS[f.status] ? `<span class="tag">${TAGS[f.status]}</span>` : ""}</td>`;
  }

  function sitesTable(detail, status, forecast, units) {
    const objectives = status.objectives.filter((o) => o.scope !== "per_device");
    const sites = (detail.terms ? detail.terms.sites.map((s) => s.id) : []);
    const subjects = sites.concat(objectives.some((o) => o.scope === "estate") ? ["*"] : []);
    const predicted = (oid, site) => forecast && (forecast.objectives.find((x) => x.id === oid)?.results || [])
      .find((x) => x.subject === site);
    $("sites").querySelector("thead").innerHTML = "<tr><th>site</th><th>state</th>" + objectives.map((o) =>
      `<th class="num">${esc(o.id)} (target ${pct(o.target_bps)})</th><th class="num">budget left · burn · days left</th>` +
      "<th class='num'>P(meet)</th>").join("") + "</tr>";
    $("sites").querySelector("tbody").innerHTML = subjects.map((site) => {
      const cells = objectives.map((o) => {
        const r = o.results.find((x) => x.subject === site);
        if (!r) return "<td class='muted num'>–</td><td></td><td></td>";
        const days = r.days_left === null ? "–" : r.days_left.toFixed(1) + " d";
        const burn = r.burn_rate === null ? "∞" : r.burn_rate.toFixed(2);
        return `<td class="num cell-${r.state}" data-testid="att-${esc(site)}-${esc(o.id)}">${pct(r.attainment_bps)}</td>` +
               `<td class="num" data-testid="budget-${esc(site)}-${esc(o.id)}">${hours(r.budget_s)} · ${burn} · ${days}</td>` +
               pMeetCell(site, o.id, predicted(o.id, site), units);
      });
      const states = objectives.flatMap((o) => o.results.filter((x) => x.subject === site).map((x) => x.state));
      const worst = states.includes("red") ? "red" : states.includes("amber") ? "amber" : "green";
      return `<tr data-site="${esc(site)}"><td>${site === "*" ? "estate" : esc(site)}</td>` +
             `<td data-testid="state-${esc(site)}"><span class="dot ${worst}"></span>${worst}</td>${cells.join("")}</tr>`;
    }).join("");
  }

  function fixFirst(forecast, units) {
    const body = $("fix-first").querySelector("tbody");
    if (!forecast) { body.innerHTML = "<tr><td colspan='5' class='muted'>forecast unavailable</td></tr>"; return; }
    body.innerHTML = forecast.priorities.length ? forecast.priorities.slice(0, 5).map((p) =>
      `<tr data-testid="fault"><td>${esc(p.device)}</td><td>${esc(p.site)}${p.site_lost ? " <span class='muted'>(month lost)</span>" : ""}</td>` +
      `<td>${esc(p.down_since.replace("T", " ").replace("Z", " UTC"))}</td><td class="num">${esc(units(p.expected_credit_saved))}</td>` +
      `<td>${p.subjects.map((s) => `${esc(s.objective)} ${(100 * s.p_meet).toFixed(0)}% → ${(100 * s.p_meet_if_fixed).toFixed(0)}%`).join("; ")}</td></tr>`).join("") :
      "<tr><td colspan='5' class='muted'>no open faults at this instant</td></tr>";
  }

  let chart = null;
  function drawBurn(burn, objectiveId) {
    const o = burn.objectives.find((x) => x.id === objectiveId) || burn.objectives[0];
    const t0 = Date.parse(burn.start);
    const day = (iso) => +((Date.parse(iso) - t0) / 86400000).toFixed(3);  // days since the period start
    const span = day(burn.end);
    const palette = ["#2f80ed", "#eb5757", "#27ae60", "#9b51e0", "#f2994a", "#56ccf2", "#219653", "#bb6bd9"];
    const datasets = [];
    o.series.forEach((s, i) => {
      const name = s.subject === "*" ? "estate" : s.subject, colour = palette[i % palette.length];
      datasets.push({label: name, data: s.burn_pct.map((y, k) => ({x: day(burn.marks[k]), y})), borderColor: colour,
        backgroundColor: colour, tension: 0.15, pointRadius: 2});
      if (!s.forecast) return;
      const band = (key) => s.forecast.map((p) => ({x: day(p.t), y: p[key]}));
      // the 5-95% band: the upper edge filled down to the lower edge (the next dataset)
      datasets.push({label: `${name} forecast 5–95%`, data: band("p95_pct"), borderColor: "transparent",
        backgroundColor: colour + "2e", pointRadius: 0, fill: "+1", band: true});
      datasets.push({label: `${name} forecast 5%`, data: band("p05_pct"), borderColor: "transparent",
        pointRadius: 0, fill: false, band: true, edge: true});
      datasets.push({label: `${name} forecast median`, data: band("p50_pct"), borderColor: colour, borderDash: [5, 4],
        borderWidth: 1.5, pointRadius: 0, band: true});
    });
    datasets.push({label: "even pace", data: [{x: 0, y: 0}, {x: span, y: 100}], borderColor: "#9aa5b1", borderDash: [6, 4], pointRadius: 0});
    datasets.push({label: "budget (100%)", data: [{x: 0, y: 100}, {x: span, y: 100}], borderColor: "#c53030", borderWidth: 1, pointRadius: 0});
    if (chart) chart.destroy();
    chart = new Chart($("burn"), {type: "line", data: {datasets}, options: {
      animation: false, responsive: true, maintainAspectRatio: false,
      plugins: {title: {display: true, text: `${o.id}: % of the month's error budget spent (target ${pct(o.target_bps)}); shaded: forecast 5–95%, dashed: median`},
                legend: {labels: {filter: (item, data) => !data.datasets[item.datasetIndex].edge}}},
      scales: {y: {title: {display: true, text: "% of budget"}, beginAtZero: true},
               x: {type: "linear", min: 0, max: span, ticks: {stepSize: 1, callback: (v) => Number.isInteger(v) ? String(v + 1) : ""},
                   title: {display: true, text: "day of " + burn.label}}}}});
  }

  async function agreementPage() {
    const address = location.pathname.split("/").pop();
    $("address").textContent = address;
    const q = asOf ? "?as_of=" + encodeURIComponent(asOf) : "";
    const burnUrl = `/v1/agreements/${address}/status/burn`;
    // the forecast adds to the page; without it (an error) the month-to-date figures still show
    const [detail, status, burn, payouts, forecast] = await Promise.all([
      api(`/v1/agreements/${address}`), api(`/v1/agreements/${address}/status${q}`),
      api(burnUrl + (q ? q + "&" : "?") + "forecast=true").catch(() => api(burnUrl + q)),
      api(`/v1/agreements/${address}/payouts`), api(`/v1/agreements/${address}/forecast${q}`).catch(() => null)]);
    const cur = status.currency, units = (a) => (a.units ?? a.raw) + " " + cur;
    $("title").textContent = detail.terms ? detail.terms.agreement : "Agreement";
    $("state").textContent = status.state; $("state").className = "badge " + status.state;
    $("period-title").textContent = `${status.label}, as of ${status.as_of.replace("T", " ").replace("Z", " UTC")}`;
    $("facts").innerHTML = [
      ["customer", short(detail.customer)], ["vendor", short(detail.vendor)],
      ["escrow balance", units(detail.escrow_balance)], ["reserve", units(detail.reserve)],
      ["credit so far this month", units(status.credit_so_far)], ["claimable / debt", units(detail.claimable) + " / " + units(detail.debt)],
      ["oracles", `${detail.oracles.threshold} of ${detail.oracles.oracles.length}`],
      ["periods settled", `${detail.next_period} of ${detail.period_count}`]]
      .map(([k, v]) => `<div><span>${k}</span><b data-testid="fact-${k.replace(/[^a-z]+/g, "-")}">${esc(v)}</b></div>`).join("");
    sitesTable(detail, status, forecast, units);
    $("sims").textContent = forecast ? forecast.sims : "no";
    fixFirst(forecast, units);
    const sel = $("objective");
    sel.innerHTML = burn.objectives.map((o) => `<option value="${esc(o.id)}">${esc(o.id)}</option>`).join("");
    sel.onchange = () => drawBurn(burn, sel.value);
    drawBurn(burn, burn.objectives[0].id);
    $("payouts").querySelector("tbody").innerHTML = payouts.length ? payouts.map((p) =>
      `<tr><td>${esc(p.label ?? p.period ?? "debt")}</td><td>${esc(p.kind)}</td><td class="num" data-testid="payout-amount">${esc(units(p.amount))}</td>` +
      `<td>${p.block}</td><td class="muted">${short(p.tx_hash)}</td></tr>`).join("") :
      "<tr><td colspan='5' class='muted'>no payouts yet</td></tr>";
    document.body.dataset.ready = "1";
  }

  const run = document.body.dataset.page === "index" ? index : agreementPage;
  run().catch((e) => { if (!$("error").textContent) $("error").textContent = e.message; document.body.dataset.ready = "error"; });
})();
