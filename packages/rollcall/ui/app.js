// The Rollcall dashboard page: renders what /events streams. No framework, no build step.
// Every value from the registry is set as text (never as HTML): instance metadata is untrusted.

const state = {
  backend: undefined,
  connection: undefined,
  live: false,
  names: [],
  services: new Map(),
  selected: decodeURIComponent((location.hash.match(/service=([^&]+)/) ?? [])[1] ?? ''),
  kv: undefined,
  locks: undefined,
  migration: undefined,
};

const $ = (id) => document.getElementById(id);

/** An element with attributes (`class`, `data-*`, `title`, ...) and children (strings become text). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    if (name === 'onclick') node.addEventListener('click', value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) node.append(child instanceof Node ? child : String(child));
  return node;
}

function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

function badge(node, text, kind) {
  node.textContent = text;
  node.className = `badge ${kind}`;
}

function note(id, text) {
  const node = $(id);
  node.hidden = !text;
  node.textContent = text ?? '';
}

/** Splits `a, b c` into words. */
const words = (text) => text.split(/[\s,]+/).filter(Boolean);

function instanceFilter() {
  const tags = words($('tag-filter').value);
  const meta = words($('meta-filter').value).map((pair) => {
    const at = pair.indexOf('=');
    return at < 0 ? [pair, undefined] : [pair.slice(0, at), pair.slice(at + 1)];
  });
  return (instance) => {
    const own = instance.tags ?? [];
    const metadata = instance.metadata ?? {};
    return (
      tags.every((t) => own.includes(t)) &&
      meta.every(([k, v]) => Object.hasOwn(metadata, k) && (v === undefined || metadata[k] === v))
    );
  };
}

function addTagFilter(tag) {
  const input = $('tag-filter');
  if (!words(input.value).includes(tag)) input.value = [...words(input.value), tag].join(', ');
  renderInstances();
}

function renderHeader() {
  const b = state.backend;
  $('backend').textContent = b ? `${b.name}${b.server ? ` · ${b.server}` : ''}` : '…';
  const c = state.connection;
  if (!c) badge($('connection'), 'checking backend', '');
  else if (c.reachable) badge($('connection'), 'backend reachable', 'ok');
  else badge($('connection'), `backend unreachable${c.error ? `: ${c.error}` : ''}`, 'bad');
  badge($('live'), state.live ? 'live' : 'reconnecting', state.live ? 'ok' : 'warn');
}

function renderServices() {
  const body = $('services').tBodies[0];
  const rows = state.names.map((name) => {
    const view = state.services.get(name);
    const count = view ? `${view.healthy} / ${view.total}` : '…';
    const status = !view ? '' : view.stale ? 'stale' : 'live';
    return el(
      'tr',
      {
        'data-service': name,
        class: name === state.selected ? 'selected' : undefined,
        onclick: () => select(name),
      },
      el('td', {}, name),
      el('td', { class: 'count' }, count),
      el(
        'td',
        { title: view ? `confirmed ${new Date(view.syncedAt).toLocaleTimeString()}` : undefined },
        status ? el('span', { class: `badge ${status === 'live' ? 'ok' : 'warn'}` }, status) : '',
      ),
    );
  });
  body.replaceChildren(...rows);
  $('services-empty').hidden = rows.length > 0;
}

function renderInstances() {
  const view = state.services.get(state.selected);
  $('instances-title').textContent = state.selected ? `Instances of ${state.selected}` : 'Instances';
  const all = view?.instances ?? [];
  const shown = all.filter(instanceFilter());
  $('filter-count').textContent = view ? `${shown.length} of ${all.length} shown` : '';
  note(
    'instances-note',
    view?.stale
      ? `Backend unreachable: last known list, confirmed ${ago(view.syncedAt)}${view.error ? ` (${view.error})` : ''}.`
      : '',
  );
  const rows = shown.map((i) =>
    el(
      'tr',
      { 'data-id': i.id },
      el('td', {}, i.id),
      el('td', {}, i.host.includes(':') ? `[${i.host}]:${i.port}` : `${i.host}:${i.port}`),
      el('td', {}, i.version ?? '–'),
      el('td', {}, String(i.weight ?? 1)),
      el(
        'td',
        {},
        (i.tags ?? []).map((t) =>
          el('button', { class: 'chip', title: 'filter by this tag', onclick: () => addTagFilter(t) }, t),
        ),
      ),
      el(
        'td',
        {},
        Object.entries(i.metadata ?? {}).map(([k, v]) => el('span', { class: 'chip meta' }, `${k}=${v}`)),
      ),
      el(
        'td',
        { class: 'since', title: new Date(i.since).toLocaleString() },
        i.before ? `before ${new Date(i.since).toLocaleTimeString()}` : ago(i.since),
      ),
    ),
  );
  $('instances').tBodies[0].replaceChildren(...rows);
  $('instances-empty').hidden = rows.length > 0;
  $('instances-empty').textContent = !state.selected
    ? 'Select a service.'
    : all.length === 0
      ? 'No instances.'
      : 'No instance matches the filters.';
}

function renderKv() {
  const kv = state.kv;
  $('kv-prefix').textContent = kv?.prefix ? kv.prefix : '(all keys)';
  note(
    'kv-note',
    kv?.stale ? `Backend unreachable: last known values${kv.error ? ` (${kv.error})` : ''}.` : '',
  );
  const rows = (kv?.entries ?? []).map((e) =>
    el(
      'tr',
      { 'data-key': e.key },
      el('td', {}, el('code', {}, e.key)),
      e.masked ? el('td', { class: 'masked' }, 'hidden (secret-looking key)') : el('td', {}, e.value),
    ),
  );
  $('kv').tBodies[0].replaceChildren(...rows);
  $('kv-empty').hidden = rows.length > 0;
}

function renderLocks() {
  const listable = state.backend?.locksListable;
  note(
    'locks-note',
    listable === false ? 'This backend cannot list lock holders.' : (state.locks?.error ?? ''),
  );
  const rows = (state.locks?.items ?? []).map((l) =>
    el(
      'tr',
      { 'data-lock': `${l.kind}:${l.name}` },
      el('td', {}, l.kind),
      el('td', {}, l.name),
      el('td', {}, l.holder ?? '–'),
      el('td', {}, l.token ?? '–'),
      el('td', {}, String(l.waiters)),
    ),
  );
  $('locks').tBodies[0].replaceChildren(...rows);
  $('locks-empty').hidden = rows.length > 0 || listable === false;
}

function renderMigration() {
  const panel = $('migration-panel');
  panel.hidden = !state.backend?.migration;
  if (panel.hidden) return;
  const m = state.migration;
  badge($('phase'), m ? m.phase : '…', 'warn');
  note('migration-note', m?.error ?? '');
  const rows = (m?.comparisons ?? []).map((c) =>
    el(
      'tr',
      { 'data-compare': c.service },
      el('td', {}, c.service),
      el('td', {}, String(c.from)),
      el('td', {}, String(c.to)),
      el('td', {}, c.onlyInFrom.join(', ') || '–'),
      el('td', {}, c.onlyInTo.join(', ') || '–'),
      el('td', {}, el('span', { class: `badge ${c.verdict === 'ok' ? 'ok' : 'bad'}` }, c.verdict)),
    ),
  );
  $('migration').tBodies[0].replaceChildren(...rows);
}

function renderAll() {
  renderHeader();
  renderServices();
  renderInstances();
  renderKv();
  renderLocks();
  renderMigration();
}

function select(name) {
  state.selected = name;
  history.replaceState(
    null,
    '',
    `${location.pathname}${location.search}#service=${encodeURIComponent(name)}`,
  );
  renderServices();
  renderInstances();
}

function connect() {
  // The token (when the dashboard has one) is the one this page was opened with.
  const token = new URLSearchParams(location.search).get('token');
  const events = new EventSource(token ? `events?token=${encodeURIComponent(token)}` : 'events');
  const on = (name, handle) =>
    events.addEventListener(name, (message) => {
      handle(JSON.parse(message.data));
    });
  events.addEventListener('open', () => {
    state.live = true;
    renderHeader();
  });
  events.addEventListener('error', () => {
    state.live = false;
    renderHeader();
  });
  on('backend', (backend) => {
    state.backend = backend;
    renderAll();
  });
  on('connection', (connection) => {
    state.connection = connection;
    renderHeader();
  });
  on('services', ({ names }) => {
    state.names = names;
    if (!state.selected && names.length > 0) state.selected = names[0];
    renderServices();
    renderInstances();
  });
  on('service', (view) => {
    state.services.set(view.service, view);
    renderServices();
    if (view.service === state.selected) renderInstances();
  });
  on('service-removed', ({ service }) => {
    state.services.delete(service);
    state.names = state.names.filter((n) => n !== service);
    renderServices();
    renderInstances();
  });
  on('kv', (kv) => {
    state.kv = kv;
    renderKv();
  });
  on('locks', (locks) => {
    state.locks = locks;
    renderLocks();
  });
  on('migration', (migration) => {
    state.migration = migration;
    renderMigration();
  });
}

$('tag-filter').addEventListener('input', renderInstances);
$('meta-filter').addEventListener('input', renderInstances);
// Ages ("3 s ago") move on by themselves.
setInterval(renderInstances, 1000);
renderAll();
connect();
