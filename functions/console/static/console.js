// Hookyard console: renders the page its path names from the admin API (/admin/...).
// The admin token stays in this tab's sessionStorage and travels only as a bearer header.
// Every value from the API reaches the page as text or an attribute, never as markup:
// payloads, reasons and ids are written by whoever sent the webhook.

const TOKEN_KEY = "hookyard.admin-token";
const OPERATOR_KEY = "hookyard.operator";
const POLL_MS = 1000;
const RATE_WINDOW_LIMIT = 500;

const main = document.getElementById("main");
const alertRegion = document.getElementById("alert");

class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

// -- DOM ------------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function link(href, text) {
  return h("a", { href }, text);
}

function render(title, ...children) {
  document.title = `${title} · Hookyard console`;
  const shown = children.flat(Infinity).filter((child) => child !== null && child !== undefined && child !== false);
  main.replaceChildren(h("h1", {}, title), ...shown);
}

function showError(error) {
  if (error instanceof ApiError) {
    const { title, detail, field } = error.problem;
    const where = field ? ` (${field})` : "";
    alertRegion.textContent = `${error.status} ${title || "error"}: ${detail || ""}${where}`;
  } else {
    alertRegion.textContent = `The request failed: ${error.message}`;
  }
}

function clearError() {
  alertRegion.textContent = "";
}

function statusRegion() {
  return h("p", { id: "status", class: "status", role: "status" });
}

function setStatus(text) {
  const region = document.getElementById("status");
  if (!region) return;
  region.textContent = text;
  if (text) region.scrollIntoView({ block: "nearest" });
}

function facts(pairs) {
  const list = h("dl", { class: "facts" });
  for (const [label, value] of pairs) {
    list.append(h("dt", {}, label), h("dd", {}, value ?? "—"));
  }
  return list;
}

function table(caption, columns, rows, empty = "Nothing here.") {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  const kind = (c) => [c.num ? "num" : "", c.short ? "short" : ""].join(" ").trim() || null;
  const head = h("tr", {}, columns.map((c) => h("th", { scope: "col", class: kind(c) }, c.label)));
  const body = rows.map((row) =>
    h("tr", {}, columns.map((c) => h("td", { class: kind(c) }, c.cell(row) ?? "—"))),
  );
  return h("div", { class: "table-wrap" },
    h("table", {}, h("caption", { class: "visually-hidden" }, caption), h("thead", {}, head), h("tbody", {}, body)));
}

function json(value) {
  return h("pre", {}, JSON.stringify(value, null, 2));
}

function when(value) {
  if (!value) return null;
  const shown = String(value).replace("T", " ").replace(/\.\d+/, "").replace(/(\+00:00|Z)$/, " UTC");
  return h("time", { datetime: value, title: value }, shown);
}

function summary(value) {
  const parts = [];
  const walk = (prefix, item) => {
    if (item === null || item === undefined) return;
    if (typeof item === "object" && !Array.isArray(item)) {
      for (const [key, inner] of Object.entries(item)) walk(prefix ? `${prefix}.${key}` : key, inner);
    } else {
      parts.push(`${prefix}=${Array.isArray(item) ? item.join(",") : item}`);
    }
  };
  walk("", value);
  return h("code", {}, parts.join("; "));
}

function state(value) {
  return h("span", { class: `state-${value}` }, value);
}

// -- session and API --------------------------------------------------------------------

const session = {
  token: () => sessionStorage.getItem(TOKEN_KEY),
  operator: () => sessionStorage.getItem(OPERATOR_KEY) || "",
  signIn(token, operator) {
    sessionStorage.setItem(TOKEN_KEY, token);
    if (operator) sessionStorage.setItem(OPERATOR_KEY, operator);
    else sessionStorage.removeItem(OPERATOR_KEY);
  },
  signOut() {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(OPERATOR_KEY);
  },
};

async function request(path, { method = "GET", body } = {}) {
  const headers = { Authorization: `Bearer ${session.token()}` };
  if (session.operator()) headers["X-Hookyard-Operator"] = session.operator();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit",
    cache: "no-store",
    redirect: "error",
  });
  if (!response.ok) {
    let problem = {};
    try {
      problem = await response.json();
    } catch {
      problem = { title: response.statusText };
    }
    throw new ApiError(response.status, problem);
  }
  return response;
}

async function api(path, options) {
  return (await request(path, options)).json();
}

function query(params, names) {
  const picked = new URLSearchParams();
  for (const name of names) {
    const value = params.get(name);
    if (value !== null && value.trim() !== "") picked.set(name, value.trim());
  }
  return picked;
}

function withQuery(path, params) {
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

function segment(value) {
  return encodeURIComponent(value);
}

// -- shared pieces --------------------------------------------------------------------

function filterForm(fields, params) {
  const form = h("form", { class: "filters", method: "get", action: location.pathname });
  for (const field of fields) {
    const id = `filter-${field.name}`;
    const value = params.get(field.name) || "";
    let input;
    if (field.options) {
      input = h("select", { id, name: field.name },
        field.options.map(([optionValue, label]) =>
          h("option", { value: optionValue, selected: optionValue === value }, label)));
    } else {
      input = h("input", { id, name: field.name, type: "text", value, placeholder: field.placeholder, size: field.size || 16 });
    }
    form.append(h("div", { class: "field" }, h("label", { for: id }, field.label), input));
  }
  form.append(h("div", { class: "actions" },
    h("button", { type: "submit" }, "Apply"), link(location.pathname, "Clear")));
  return form;
}

function pager(nextCursor, param = "cursor") {
  const here = new URL(location.href);
  const parts = [];
  if (here.searchParams.has(param)) {
    const first = new URL(here);
    first.searchParams.delete(param);
    parts.push(link(first.pathname + first.search, "First page"), " ");
  }
  if (nextCursor !== null && nextCursor !== undefined) {
    here.searchParams.set(param, String(nextCursor));
    parts.push(link(here.pathname + here.search, "Next page"));
  }
  return parts.length ? h("p", { class: "pager" }, parts) : null;
}

const TIME_FIELDS = [
  { name: "since", label: "Since (RFC 3339)", placeholder: "2026-01-01T00:00:00Z", size: 20 },
  { name: "until", label: "Until (RFC 3339)", placeholder: "2026-01-02T00:00:00Z", size: 20 },
];

function eventLink(source, eventId) {
  if (!source || !eventId) return eventId || "—";
  return link(`/console/events/${segment(source)}/${segment(eventId)}`, eventId);
}

// -- pages ----------------------------------------------------------------------------

async function overview() {
  const stats = await api("/admin/stats");
  const since = new Date(Date.now() - 3600 * 1000);
  const recent = await api(withQuery("/admin/events", new URLSearchParams({
    since: since.toISOString(), order: "desc", limit: String(RATE_WINDOW_LIMIT) })));
  const fiveMinutesAgo = Date.now() - 300 * 1000;
  const more = recent.next_cursor !== null ? "+" : "";
  const lastFive = recent.items.filter((e) => Date.parse(e.received_at) >= fiveMinutesAgo).length;
  const byState = stats.dead_letters.by_state || {};
  const card = (label, figure) => h("div", { class: "card" }, h("div", { class: "figure" }, figure), h("div", { class: "label" }, label));
  const backlogColumns = [
    { label: "Name", cell: (r) => r.name },
    { label: "Backlog", num: true, cell: (r) => r.backlog },
    { label: "In flight", num: true, cell: (r) => r.in_flight },
    { label: "Oldest unacked (s)", num: true, cell: (r) => (r.oldest_unacked_age_s == null ? "—" : r.oldest_unacked_age_s.toFixed(1)) },
    { label: "Note", cell: (r) => r.unavailable || "" },
  ];
  const rows = (map) => Object.entries(map || {}).map(([name, value]) => ({ name, ...value }));
  const last = stats.last_reconciliation;
  render("Overview",
    h("div", { class: "cards" },
      card("events received, last 5 min", `${lastFive}${lastFive === recent.items.length ? more : ""}`),
      card("events received, last hour", `${recent.items.length}${more}`),
      card("dead letters pending", byState.pending || 0),
      card("dead letters replayed", byState.replayed || 0),
      card("dead letters discarded", byState.discarded || 0)),
    h("h2", {}, "Subscriptions"),
    table("Backlog per subscription", backlogColumns, rows(stats.subscriptions), "No subscription reports a backlog."),
    h("h2", {}, "Queues"),
    table("Backlog per queue", backlogColumns, rows(stats.queues), "No queue reports a backlog."),
    h("h2", {}, "Pending dead letters by reason"),
    table("Pending dead letters by reason", [
      { label: "Subscription", cell: (r) => r.subscription },
      { label: "Reason", cell: (r) => link(withQuery("/console/dead-letters", new URLSearchParams({ subscription: r.subscription, reason: r.reason, state: "pending" })), r.reason || "(none)") },
      { label: "Dead letters", num: true, cell: (r) => r.count },
      { label: "Failures", num: true, cell: (r) => r.failures },
    ], stats.dead_letters.by_reason || [], "No pending dead letters."),
    h("h2", {}, "Last reconciliation"),
    last ? [facts([
      ["Checked at", when(last.checked_at)],
      ["Scheduled for", when(last.schedule_time)],
      ["Balanced", last.ok ? "yes" : "no"],
      ["Problems", String(last.problem_count)],
    ]), last.problems.length ? json(last.problems) : null] : h("p", { class: "empty" }, "No reconciliation has run yet."));
}

async function eventList(params) {
  const page = await api(withQuery("/admin/events", query(params, ["source", "type", "handler", "outcome", "q", "path", "since", "until", "order", "cursor"])));
  render("Events",
    filterForm([
      { name: "q", label: "Text search", size: 22 },
      { name: "source", label: "Source", size: 10 },
      { name: "type", label: "Type" },
      { name: "handler", label: "Handler", size: 12 },
      { name: "outcome", label: "Outcome", options: [["", "any"], ["applied", "applied"], ["ignored", "ignored"], ["failed", "failed"], ["dead_lettered", "dead lettered"], ["pending", "pending"]] },
      { name: "path", label: "Payload field (a.b=value)", size: 22 },
      ...TIME_FIELDS,
      { name: "order", label: "Order", options: [["", "oldest first"], ["desc", "newest first"]] },
    ], params),
    table("Events", [
      { label: "Received", short: true, cell: (e) => when(e.received_at) },
      { label: "Source", cell: (e) => e.source },
      { label: "Event", cell: (e) => eventLink(e.source, e.event_id) },
      { label: "Type", cell: (e) => e.event_type },
      { short: true, label: "Outcome", cell: (e) => state(e.outcome) },
    ], page.items, "No event matches."),
    pager(page.next_cursor));
}

async function eventDetail(source, eventId) {
  const base = `/admin/events/${segment(source)}/${segment(eventId)}`;
  const event = await api(base);
  const payload = h("div", {}, h("p", { class: "empty" }, "Loading the payload…"));
  render(`Event ${source} / ${eventId}`,
    facts([
      ["Type", event.event_type],
      ["Outcome", state(event.outcome)],
      ["Received", when(event.received_at)],
      ["Recorded", when(event.recorded_at)],
      ["Content type", event.content_type],
      ["Bytes", event.body_bytes == null ? null : String(event.body_bytes)],
      ["SHA-256", event.body_sha256],
      ["Message id", event.message_id],
      ["Payload erased", event.payload_erased_at ? `${event.payload_erased_at} (${event.erase_reason || "no reason"})` : "no"],
    ]),
    h("h2", {}, "Handlers and their attempts"),
    table("Handlers", [
      { label: "Handler", cell: (r) => r.handler },
      { short: true, label: "Outcome", cell: (r) => state(r.outcome) },
      { label: "Attempts", num: true, cell: (r) => r.attempts },
      { label: "Last error", cell: (r) => r.last_error },
      { label: "Processed", short: true, cell: (r) => when(r.processed_at) },
      { label: "Dead letters", cell: (r) => (r.dead_letters || []).map((d) => [link(`/console/dead-letters/${d.id}`, `#${d.id} (${d.state})`), " "]) },
    ], event.handlers || [], "No handler takes this event."),
    h("h2", {}, "Kept headers"),
    json(event.headers || {}),
    h("h2", {}, "Payload"),
    payload);
  try {
    const text = await (await request(`${base}/payload`)).text();
    let shown = text;
    try {
      shown = JSON.stringify(JSON.parse(text), null, 2);
    } catch {
      shown = text;
    }
    payload.replaceChildren(h("pre", {}, shown));
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 410) throw error;
    payload.replaceChildren(h("p", { class: "empty" }, error.message));
  }
}

const DEAD_LETTER_FILTERS = ["source", "type", "subscription", "reason", "since", "until"];

async function deadLetterList(params) {
  const page = await api(withQuery("/admin/dead-letters", query(params, [...DEAD_LETTER_FILTERS, "state", "cursor"])));
  const filter = Object.fromEntries(query(params, DEAD_LETTER_FILTERS));
  const selected = () => [...main.querySelectorAll("input[name=dead-letter]:checked")].map((box) => Number(box.value));
  const selection = () => {
    const ids = selected();
    if (ids.length) return { ids };
    if (Object.keys(filter).length) return { filter };
    throw new Error("tick dead letters or filter the list first: an empty filter would act on every pending dead letter");
  };
  render("Dead letters",
    filterForm([
      { name: "reason", label: "Reason contains", size: 20 },
      { name: "source", label: "Source", size: 10 },
      { name: "type", label: "Type" },
      { name: "subscription", label: "Subscription", size: 12 },
      { name: "state", label: "State", options: [["", "any"], ["pending", "pending"], ["replaying", "replaying"], ["replayed", "replayed"], ["discarded", "discarded"]] },
      ...TIME_FIELDS,
    ], params),
    table("Dead letters", [
      { short: true, label: "Select", cell: (d) => h("input", { type: "checkbox", name: "dead-letter", value: d.id, "aria-label": `select dead letter ${d.id}`, disabled: d.state !== "pending" }) },
      { short: true, label: "Id", cell: (d) => link(`/console/dead-letters/${d.id}`, `#${d.id}`) },
      { label: "Event", cell: (d) => eventLink(d.source, d.event_id) },
      { label: "Type", cell: (d) => d.event_type },
      { label: "Subscription", cell: (d) => d.subscription },
      { label: "Reason", cell: (d) => d.reason },
      { short: true, label: "State", cell: (d) => state(d.state) },
      { label: "Failures", num: true, cell: (d) => d.failure_count },
      { label: "Last failed", short: true, cell: (d) => when(d.last_failed_at) },
    ], page.items, "No dead letter matches."),
    pager(page.next_cursor),
    actionForm(selection, "Acts on the dead letters you tick; with none ticked, on every pending dead letter matching the filter above."));
}

async function deadLetterDetail(id) {
  const letter = await api(`/admin/dead-letters/${segment(id)}`);
  render(`Dead letter #${letter.id}`,
    facts([
      ["State", state(letter.state)],
      ["Reason", letter.reason],
      ["Error class", letter.error_class],
      ["Event", eventLink(letter.source, letter.event_id)],
      ["Type", letter.event_type],
      ["Subscription", letter.subscription],
      ["Origin", letter.origin],
      ["Message id", letter.message_id],
      ["Deliveries", String(letter.delivery_count)],
      ["Failures", String(letter.failure_count)],
      ["First failed", when(letter.first_failed_at)],
      ["Last failed", when(letter.last_failed_at)],
      ["Replay", letter.replay_id ? link(`/console/replays/${letter.replay_id}`, `#${letter.replay_id}`) : null],
      ["Replay of", letter.replay_of ? link(`/console/dead-letters/${letter.replay_of}`, `#${letter.replay_of}`) : null],
    ]),
    h("h2", {}, "Attributes"),
    json(letter.attributes),
    letter.state === "pending" ? actionForm(() => ({ ids: [letter.id] }), "Acts on this dead letter.") : null);
}

function actionForm(selection, help) {
  const reason = h("textarea", { id: "action-reason", name: "reason", required: true, maxlength: 500 });
  const act = (kind) => async (event) => {
    event.preventDefault();
    clearError();
    setStatus("");
    if (!reason.reportValidity()) return;
    try {
      const body = { ...selection(), reason: reason.value.trim() };
      if (kind === "discard") {
        const result = await api("/admin/dead-letters/discard", { method: "POST", body });
        await run();
        setStatus(`Discarded ${result.discarded} dead letter${result.discarded === 1 ? "" : "s"}.`);
        return;
      }
      const result = await api("/admin/dead-letters/replay", { method: "POST", body: { ...body, dry_run: kind === "dry-run" } });
      if (kind === "dry-run") {
        setStatus(`Dry run: ${result.total} dead letter${result.total === 1 ? "" : "s"} would be replayed.`);
      } else {
        location.assign(`/console/replays/${result.replay_id}`);
      }
    } catch (error) {
      handle(error);
    }
  };
  return h("form", { class: "stacked", onsubmit: act("dry-run") },
    h("h2", {}, "Replay or discard"),
    h("p", {}, help),
    h("div", { class: "field" }, h("label", { for: "action-reason" }, "Reason (kept in the audit log)"), reason),
    h("div", { class: "actions" },
      h("button", { type: "submit", id: "dry-run" }, "Dry run"),
      h("button", { type: "button", id: "replay", onclick: act("replay") }, "Replay"),
      h("button", { type: "button", id: "discard", class: "danger", onclick: act("discard") }, "Discard")),
    statusRegion());
}

async function replayList(params) {
  const page = await api(withQuery("/admin/replays", query(params, ["state", "cursor"])));
  render("Replays",
    filterForm([{ name: "state", label: "State", options: [["", "any"], ["running", "running"], ["done", "done"], ["cancelled", "cancelled"]] }], params),
    table("Replays", [
      { short: true, label: "Id", cell: (r) => link(`/console/replays/${r.id}`, `#${r.id}`) },
      { short: true, label: "State", cell: (r) => state(r.state) },
      { label: "Progress", cell: (r) => `${r.done + r.failed} of ${r.total} (${percent(r)} %)` },
      { label: "Failed", num: true, cell: (r) => r.failed },
      { label: "Reason", cell: (r) => r.reason },
      { label: "Actor", cell: (r) => r.actor },
      { label: "Started", short: true, cell: (r) => when(r.created_at) },
      { label: "Finished", short: true, cell: (r) => when(r.finished_at) },
    ], page.items, "No replay yet."),
    pager(page.next_cursor));
}

function percent(replay) {
  if (!replay.total) return 100;
  return Math.floor(((replay.done + replay.failed) * 100) / replay.total);
}

async function replayDetail(id) {
  const replay = await api(`/admin/replays/${segment(id)}`);
  const processed = replay.done + replay.failed;
  const reason = h("textarea", { id: "cancel-reason", name: "reason", required: true, maxlength: 500 });
  const cancel = async (event) => {
    event.preventDefault();
    clearError();
    try {
      await api(`/admin/replays/${replay.id}/cancel`, { method: "POST", body: { reason: reason.value.trim() } });
      await run();
    } catch (error) {
      handle(error);
    }
  };
  render(`Replay #${replay.id}`,
    h("div", { class: "field" },
      h("label", { for: "replay-progress" }, "Progress"),
      h("progress", { id: "replay-progress", max: replay.total || 1, value: replay.total ? processed : 1 })),
    h("p", { id: "replay-progress-text", class: "balance" }, `${processed} of ${replay.total} (${percent(replay)} %)`),
    facts([
      ["State", state(replay.state)],
      ["Applied", String(replay.done)],
      ["Failed again", String(replay.failed)],
      ["Reason", replay.reason],
      ["Actor", replay.actor],
      ["Started", when(replay.created_at)],
      ["Finished", when(replay.finished_at)],
      ["Rate limit", `${replay.max_per_second} per second`],
    ]),
    replay.state === "running"
      ? h("form", { class: "stacked", onsubmit: cancel },
          h("h2", {}, "Cancel"),
          h("div", { class: "field" }, h("label", { for: "cancel-reason" }, "Reason (kept in the audit log)"), reason),
          h("div", { class: "actions" }, h("button", { type: "submit", class: "danger" }, "Cancel replay")))
      : null,
    h("p", {}, link(withQuery("/console/dead-letters", new URLSearchParams({ state: "pending" })), "Pending dead letters")));
  if (replay.state === "running" && !main.contains(document.activeElement)) {
    setTimeout(() => run().catch(handle), POLL_MS);
  } else if (replay.state === "running") {
    // Someone is typing a cancel reason: refresh only the figures, keep the form.
    setTimeout(() => refreshProgress(replay.id), POLL_MS);
  }
}

async function refreshProgress(id) {
  try {
    const replay = await api(`/admin/replays/${segment(id)}`);
    if (replay.state !== "running") return run();
    const processed = replay.done + replay.failed;
    const bar = document.getElementById("replay-progress");
    bar.max = replay.total || 1;
    bar.value = replay.total ? processed : 1;
    document.getElementById("replay-progress-text").textContent = `${processed} of ${replay.total} (${percent(replay)} %)`;
    setTimeout(() => refreshProgress(id), POLL_MS);
  } catch (error) {
    handle(error);
  }
}

async function accountList(params) {
  const page = await api(withQuery("/admin/accounts", query(params, ["prefix", "cursor"])));
  render("Accounts",
    filterForm([{ name: "prefix", label: "Id starts with", size: 20 }], params),
    table("Accounts", [
      { label: "Account", cell: (a) => link(`/console/accounts/${segment(a.id)}`, a.id) },
      { short: true, label: "Currency", cell: (a) => a.currency },
      { label: "Available", num: true, cell: (a) => a.available },
      { label: "Held", num: true, cell: (a) => a.held },
      { label: "Notify URL", cell: (a) => a.notify_url },
    ], page.items, "No account matches."),
    pager(page.next_cursor),
    accountForm());
}

function accountForm() {
  const id = h("input", { id: "account-id", name: "id", required: true, pattern: "[A-Za-z0-9_.\\-]{1,128}", size: 24 });
  const currency = h("input", { id: "account-currency", name: "currency", required: true, pattern: "[A-Za-z]{3}", size: 4, value: "usd" });
  const notifyUrl = h("input", { id: "account-notify-url", name: "notify_url", type: "url", size: 40 });
  const submit = async (event) => {
    event.preventDefault();
    clearError();
    try {
      const body = { currency: currency.value.trim(), notify_url: notifyUrl.value.trim() || null };
      await api(`/admin/accounts/${segment(id.value.trim())}`, { method: "PUT", body });
      location.assign(`/console/accounts/${segment(id.value.trim())}`);
    } catch (error) {
      handle(error);
    }
  };
  return h("form", { class: "stacked", onsubmit: submit },
    h("h2", {}, "Create or update an account"),
    h("div", { class: "field" }, h("label", { for: "account-id" }, "Account id"), id),
    h("div", { class: "field" }, h("label", { for: "account-currency" }, "Currency (ISO 4217, three letters)"), currency),
    h("div", { class: "field" }, h("label", { for: "account-notify-url" }, "Notify URL (optional; left blank, an existing one is removed)"), notifyUrl),
    h("div", { class: "actions" }, h("button", { type: "submit", id: "save-account" }, "Save account")));
}

async function accountDetail(id, params) {
  const base = `/admin/accounts/${segment(id)}`;
  const account = await api(base);
  const entries = await api(withQuery(`${base}/entries`, renamed(params, "entries_cursor")));
  const attempts = await api(withQuery(`${base}/notification-attempts`, renamed(params, "attempts_cursor")));
  const card = (label, figure, figureId) => h("div", { class: "card" }, h("div", { class: "figure", id: figureId }, figure), h("div", { class: "label" }, label));
  render(`Account ${account.id}`,
    h("div", { class: "cards" },
      card(`available (${account.currency}, minor units)`, account.available, "balance-available"),
      card(`held (${account.currency}, minor units)`, account.held, "balance-held"),
      card("notifications pending", account.pending_notifications)),
    facts([["Currency", account.currency], ["Notify URL", account.notify_url]]),
    h("h2", {}, "Ledger entries"),
    table("Ledger entries", [
      { label: "Entry", num: true, cell: (e) => e.id },
      { label: "At", short: true, cell: (e) => when(e.created_at) },
      { label: "Balance", cell: (e) => e.balance },
      { label: "Amount", num: true, cell: (e) => e.amount },
      { short: true, label: "Kind", cell: (e) => e.kind },
      { label: "Event", cell: (e) => eventLink(e.source, e.event_id) },
      { label: "Transaction", num: true, cell: (e) => e.transaction_id },
    ], entries.items, "No ledger entry yet."),
    pager(entries.next_cursor, "entries_cursor"),
    h("h2", {}, "Notification attempts"),
    table("Notification attempts", [
      { label: "At", short: true, cell: (a) => when(a.attempted_at) },
      { short: true, label: "Kind", cell: (a) => a.kind },
      { label: "URL", cell: (a) => a.url },
      { label: "Status", num: true, cell: (a) => a.status },
      { label: "Error", cell: (a) => a.error },
      { label: "Took (ms)", num: true, cell: (a) => a.duration_ms },
      { short: true, label: "Outbox", cell: (a) => state(a.outbox_state) },
    ], attempts.items, "No notification attempt yet."),
    pager(attempts.next_cursor, "attempts_cursor"));
}

function renamed(params, name) {
  const value = params.get(name);
  return value ? new URLSearchParams({ cursor: value }) : new URLSearchParams();
}

async function auditLog(params) {
  const page = await api(withQuery("/admin/audit", query(params, ["action", "actor", "since", "until", "cursor"])));
  render("Audit log",
    filterForm([
      { name: "action", label: "Action", size: 14 },
      { name: "actor", label: "Actor", size: 14 },
      ...TIME_FIELDS,
    ], params),
    table("Audit log", [
      { label: "At", short: true, cell: (a) => when(a.at) },
      { short: true, label: "Actor", cell: (a) => a.actor },
      { short: true, label: "Action", cell: (a) => a.action },
      { label: "Reason", cell: (a) => a.reason },
      { label: "Parameters", cell: (a) => summary(a.params) },
      { label: "Result", cell: (a) => [summary(a.result), a.result && a.result.replay_id ? [" ", link(`/console/replays/${a.result.replay_id}`, "open replay")] : null] },
    ], page.items, "No audit entry matches."),
    pager(page.next_cursor));
}

// -- sign-in and routing --------------------------------------------------------------

function renderSignIn(message) {
  const token = h("input", { id: "token", name: "token", type: "password", required: true, autocomplete: "off", size: 40 });
  const operator = h("input", { id: "operator", name: "operator", pattern: "[ -~]{1,100}", size: 24, value: session.operator() });
  const submit = async (event) => {
    event.preventDefault();
    clearError();
    session.signIn(token.value.trim(), operator.value.trim());
    try {
      await api("/admin/stats");
    } catch (error) {
      session.signOut();
      showError(error);
      return;
    }
    await run();
    main.focus({ preventScroll: true });
  };
  updateSession();
  render("Sign in",
    h("p", {}, "The console calls the admin API with the admin token (locally: the file .hookyard/secrets/admin-token). It stays in this tab only and is sent nowhere but this server's /admin API."),
    h("form", { class: "stacked", onsubmit: submit },
      h("div", { class: "field" }, h("label", { for: "token" }, "Admin token"), token),
      h("div", { class: "field" }, h("label", { for: "operator" }, "Your name, for the audit log (optional)"), operator),
      h("div", { class: "actions" }, h("button", { type: "submit", id: "sign-in" }, "Sign in"))));
  if (message) alertRegion.textContent = message;
  token.focus();
}

const ROUTES = [
  [/^\/console\/?$/, overview],
  [/^\/console\/events\/?$/, eventList],
  [/^\/console\/events\/([^/]+)\/([^/]+)\/?$/, eventDetail],
  [/^\/console\/dead-letters\/?$/, deadLetterList],
  [/^\/console\/dead-letters\/([^/]+)\/?$/, deadLetterDetail],
  [/^\/console\/replays\/?$/, replayList],
  [/^\/console\/replays\/([^/]+)\/?$/, replayDetail],
  [/^\/console\/accounts\/?$/, accountList],
  [/^\/console\/accounts\/([^/]+)\/?$/, accountDetail],
  [/^\/console\/audit\/?$/, auditLog],
];

function handle(error) {
  if (error instanceof ApiError && error.status === 401) {
    session.signOut();
    renderSignIn("The admin token was refused; sign in again.");
    return;
  }
  showError(error);
}

function updateSession() {
  const signedIn = Boolean(session.token());
  document.getElementById("signed-in-as").textContent = signedIn ? `Signed in${session.operator() ? ` as ${session.operator()}` : ""}` : "";
  document.getElementById("sign-out").hidden = !signedIn;
}

function markCurrentPage() {
  const first = location.pathname.split("/")[2] || "";
  for (const anchor of document.querySelectorAll("nav a")) {
    const target = new URL(anchor.href).pathname.split("/")[2] || "";
    if (target === first) anchor.setAttribute("aria-current", "page");
    else anchor.removeAttribute("aria-current");
  }
}

async function run() {
  updateSession();
  if (!session.token()) return renderSignIn();
  for (const [pattern, page] of ROUTES) {
    const match = location.pathname.match(pattern);
    if (match) {
      const args = match.slice(1).map(decodeURIComponent);
      return page(...args, new URLSearchParams(location.search));
    }
  }
  render("Not found", h("p", {}, link("/console", "Back to the overview")));
}

document.getElementById("sign-out").addEventListener("click", () => {
  session.signOut();
  clearError();
  renderSignIn();
});
markCurrentPage();
run().catch(handle);
