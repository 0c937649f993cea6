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

  function sitesTable(detail, status) {
    const objectives = status.objectives.filter((o) => o.scope !== "per_device");
    const sites = (detail.terms ? detail.terms.sites.map((s) => s.id) : []);
    const subjects = sites.concat(objectives.some((o) => o.scope === "estate") ? ["*"] : []);
    $("sites").querySelector("thead").innerHTML = "<tr><th>site</th><th>state</th>" + objectives.map((o) =>
      `<th class="num">${esc(o.id)} (target ${pct(o.target_bps)})</th><th class="num">budget left · burn · days left</th>`).join("") + "</tr>";
    $("sites").querySelector("tbody").innerHTML = subjects.map((site) => {
      const cells = objectives.map((o) => {
        const r = o.results.find((x) => x.subject === site);
        if (!r) return "<td class='muted num'>–</td><td></td>";
        const days = r.days_left === null ? "–" : r.days_left.toFixed(1) + " d";
        const burn = r.burn_rate === null ? "∞" : r.burn_rate.toFixed(2);
        return `<td class="num cell-${r.state}" data-testid="att-${esc(site)}-${esc(o.id)}">${pct(r.attainment_bps)}</td>` +
               `<td class="num" data-testid="budget-${esc(site)}-${esc(o.id)}">${hours(r.budget_s)} · ${burn} · ${days}</td>`;
      });
      const states = objectives.flatMap((o) => o.results.filter((x) => x.subject === site).map((x) => x.state));
      const worst = states.includes("red") ? "red" : states.includes("amber") ? "amber" : "green";
      return `<tr data-site="${esc(site)}"><td>${site === "*" ? "estate" : esc(site)}</td>` +
             `<td data-testid="state-${esc(site)}"><span class="dot ${worst}"></span>${worst}</td>${cells.join("")}</tr>`;
    }).join("");
  }

  let chart = null;
  function drawBurn(burn, objectiveId) {
    const o = burn.objectives.find((x) => x.id === objectiveId) || burn.objectives[0];
    const t0 = Date.parse(burn.start), t1 = Date.parse(burn.end);
    const labels = burn.marks.map((m) => m.slice(5, 10));
    const palette = ["#2f80ed", "#eb5757", "#27ae60", "#9b51e0", "#f2994a", "#56ccf2", "#219653", "#bb6bd9"];
    const datasets = o.series.map((s, i) => ({
      label: s.subject === "*" ? "estate" : s.subject, data: s.burn_pct, borderColor: palette[i % palette.length],
      backgroundColor: palette[i % palette.length], tension: 0.15, pointRadius: 2}));
    datasets.push({label: "even pace", data: burn.marks.map((m) => +(100 * (Date.parse(m) - t0) / (t1 - t0)).toFixed(2)),
      borderColor: "#9aa5b1", borderDash: [6, 4], pointRadius: 0});
    datasets.push({label: "budget (100%)", data: burn.marks.map(() => 100), borderColor: "#c53030", borderWidth: 1, pointRadius: 0});
    if (chart) chart.destroy();
    chart = new Chart($("burn"), {type: "line", data: {labels, datasets}, options: {
      animation: false, responsive: true, maintainAspectRatio: false,
      plugins: {title: {display: true, text: `${o.id}: % of the month's error budget spent (target ${pct(o.target_bps)})`}},
      scales: {y: {title: {display: true, text: "% of budget"}, beginAtZero: true}, x: {title: {display: true, text: "day (" + burn.label + ")"}}}}});
  }

  async function agreementPage() {
    const address = location.pathname.split("/").pop();
    $("address").textContent = address;
    const q = asOf ? "?as_of=" + encodeURIComponent(asOf) : "";
    const [detail, status, burn, payouts] = await Promise.all([
      api(`/v1/agreements/${address}`), api(`/v1/agreements/${address}/status${q}`),
      api(`/v1/agreements/${address}/status/burn${q}`), api(`/v1/agreements/${address}/payouts`)]);
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
    sitesTable(detail, status);
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
