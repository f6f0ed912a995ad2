// Orion's web dashboard: hash-routed views over the public API (/v1/…), kept
// live by one EventSource on /v1/events that re-fetches the current view.
// Plain JavaScript, no build step, no library.
//
// Every piece of data reaches the page through textContent or an attribute
// (the `h` helper), never through innerHTML: a job name or a log line holding
// markup shows as text. Test hooks: `data-job`, `data-alloc`, `data-node`,
// `.bar[data-kind]`, and the editor's `#editor-text`, `#plan-btn`, `#run-btn`,
// `#editor-result`.
'use strict';

const MAX_LOG_LINES = 2000;
const MAX_EVENTS = 200;
const REFRESH_DELAY_MS = 250;
const STATS_POLL_MS = 10000;
const TOPICS = ['Job', 'Allocation', 'Node', 'Deployment', 'Volume'];

// ---- DOM and formatting helpers ---------------------------------------------

/** An element with attributes (`on*` are listeners) and children (text or nodes). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Replaces `el`'s children (text or nodes, nested arrays, nulls skipped). */
function fill(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c != null && c !== false));
  return el;
}

const enc = encodeURIComponent;
const badge = (word) => h('span', { class: `badge status-${word}` }, word);
const kv = (k, v) => h('span', {}, h('b', {}, k), v);
const table = (heads, rows) =>
  h('table', {}, h('thead', {}, h('tr', {}, heads.map((x) => h('th', {}, x)))), h('tbody', {}, rows));

function fmtBytes(n) {
  if (n == null) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}
const fmtMb = (mb) => fmtBytes(mb * 1024 * 1024);
const fmtCpu = (c) => `${+(c || 0).toFixed(2)} cpu`;
const fmtPct = (p) => (p == null ? '–' : `${p.toFixed(p < 10 ? 2 : 1)}%`);
const fmtTime = (ms) => (ms ? new Date(ms).toLocaleString() : '–');

/** A stable colour per job name, for the topology. */
function hue(s) {
  let x = 0;
  for (const c of s) x = (x * 31 + c.charCodeAt(0)) >>> 0;
  return x % 360;
}

// ---- The API -----------------------------------------------------------------

const token = () => localStorage.getItem('orion.token') || '';

/** Fetches `path`; its JSON (or text), or throws an Error carrying `status` and `body`. */
async function api(path, opts = {}) {
  const headers = Object.assign({ Accept: 'application/json' }, opts.headers);
  if (token()) headers.Authorization = `Bearer ${token()}`;
  let r;
  try {
    r = await fetch(path, Object.assign({}, opts, { headers }));
  } catch (e) {
    throw Object.assign(new Error(`cannot reach the node: ${e.message}`), { status: 0 });
  }
  const text = await r.text();
  let body = text;
  try { body = text ? JSON.parse(text) : null; } catch (_) { /* plain text */ }
  if (!r.ok) {
    const msg = (body && body.error) || (typeof body === 'string' && body) || `${r.status} ${r.statusText}`;
    throw Object.assign(new Error(msg), { status: r.status, body });
  }
  return body;
}

/** An EventSource URL: EventSource sends no headers, so the token rides in the query. */
function withToken(url) {
  const t = token();
  return t ? `${url}${url.includes('?') ? '&' : '?'}token=${enc(t)}` : url;
}

/** An API error as the API said it: `error`, then each of `errors[]`; a 421 links to the right node. */
function errorBox(err, allocId) {
  const body = err.body && typeof err.body === 'object' ? err.body : {};
  if (err.status === 421 && body.node_http) {
    const url = `http://${body.node_http}/ui/#/allocs/${enc(allocId || '')}`;
    return h('div', { class: 'note', 'data-elsewhere': body.node },
      `Node ${body.node || '?'} runs this allocation: `, h('a', { href: url }, 'open its dashboard'), '.');
  }
  const box = h('div', { class: 'error api-error' }, body.error || err.message);
  if (Array.isArray(body.errors) && body.errors.length) {
    box.append(h('ul', {}, body.errors.map((e) => h('li', {}, h('code', {}, e.field), ': ', e.problem))));
  }
  return box;
}

const loads = new WeakMap();
/** Replaces `target`'s content with what `fn` builds (or the error), dropping stale answers. */
async function load(target, fn) {
  const seq = (loads.get(target) || 0) + 1;
  loads.set(target, seq);
  let content;
  try { content = await fn(); } catch (err) { content = errorBox(err); }
  if (loads.get(target) === seq && content) fill(target, content);
}

/** Runs an action from a button, showing its error (or `done`'s text) in `out`. */
async function act(button, out, fn) {
  button.disabled = true;
  out.replaceChildren();
  try {
    const msg = await fn();
    if (msg) out.replaceChildren(h('span', { class: 'ok' }, msg));
  } catch (err) {
    out.replaceChildren(errorBox(err));
  } finally {
    button.disabled = false;
  }
}

// ---- Charts and logs (shared by the job and allocation pages) --------------

/** Draws lines of [x, y] points (y null = a gap) on a canvas, y from 0 to `yMax`. */
function drawLines(canvas, lines, yMax, yLabel) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 360, hgt = canvas.clientHeight || 110;
  canvas.width = w * dpr; canvas.height = hgt * dpr;
  const g = canvas.getContext('2d');
  g.scale(dpr, dpr);
  g.clearRect(0, 0, w, hgt);
  const pad = { l: 56, r: 6, t: 6, b: 14 };
  const xs = lines.flatMap((l) => l.points.map((p) => p[0]));
  const x0 = Math.min(...xs), x1 = Math.max(...xs);
  const X = (x) => pad.l + (x1 > x0 ? (x - x0) / (x1 - x0) : 1) * (w - pad.l - pad.r);
  const Y = (y) => hgt - pad.b - (y / (yMax || 1)) * (hgt - pad.t - pad.b);
  g.strokeStyle = '#dde1e8'; g.fillStyle = '#6b7385'; g.font = '10px system-ui'; g.lineWidth = 1;
  for (const f of [0, 0.5, 1]) {
    g.beginPath(); g.moveTo(pad.l, Y(yMax * f)); g.lineTo(w - pad.r, Y(yMax * f)); g.stroke();
    g.fillText(yLabel(yMax * f), 2, Y(yMax * f) + 3);
  }
  if (xs.length) g.fillText(`${Math.round((x1 - x0) / 60000)} min`, w - 40, hgt - 2);
  for (const line of lines) {
    g.strokeStyle = line.color; g.lineWidth = line.width || 1.5; g.setLineDash(line.dash || []);
    g.beginPath();
    let pen = false;
    for (const [x, y] of line.points) {
      if (y == null) { pen = false; continue; }
      if (pen) g.lineTo(X(x), Y(y)); else g.moveTo(X(x), Y(y));
      pen = true;
    }
    if (line.points.length === 1 && pen) g.arc(X(line.points[0][0]), Y(line.points[0][1]), 2, 0, 7);
    g.stroke();
  }
}

/** A CPU and memory chart of one allocation from its stats history; `update()` re-reads it. */
function chartCard(id) {
  const cpu = h('canvas', { 'data-kind': 'cpu' });
  const mem = h('canvas', { 'data-kind': 'memory' });
  const cpuLegend = h('div', { class: 'legend' }), memLegend = h('div', { class: 'legend' });
  const plots = h('div', { class: 'plots' }, cpuLegend, cpu, memLegend, mem);
  const msg = h('div', { class: 'muted' }, 'loading stats…');
  const el = h('div', { class: 'chart', 'data-alloc': id },
    h('h3', {}, h('a', { href: `#/allocs/${enc(id)}` }, id)), msg, plots);
  plots.hidden = true;
  async function update() {
    let s;
    try {
      s = await api(`/v1/allocations/${enc(id)}/stats?history=true`);
    } catch (err) {
      plots.hidden = true;
      msg.replaceChildren(errorBox(err, id));
      return;
    }
    const cur = s.current || {};
    const hist = (s.history && s.history.length) ? s.history
      : [{ at_ms: Date.now(), cpu_percent: cur.cpu_percent, memory_bytes: cur.memory_bytes, memory_limit_bytes: cur.memory_limit_bytes }];
    msg.replaceChildren();
    plots.hidden = false;
    cpuLegend.textContent = `CPU ${fmtPct(cur.cpu_percent)} · pids ${cur.pids ?? '–'}`;
    memLegend.textContent = `Memory ${fmtBytes(cur.memory_bytes)} of ${fmtBytes(cur.memory_limit_bytes)} (${fmtPct(cur.memory_percent)})`;
    const cpuPts = hist.map((p) => [p.at_ms, p.cpu_percent]);
    const cpuMax = Math.max(1, ...cpuPts.map((p) => p[1] || 0)) * 1.2;
    drawLines(cpu, [{ points: cpuPts, color: '#2f6fdf' }], cpuMax, (v) => `${v.toFixed(v < 10 ? 1 : 0)}%`);
    const limit = Math.max(...hist.map((p) => p.memory_limit_bytes || 0));
    const memPts = hist.map((p) => [p.at_ms, p.memory_bytes]);
    const memMax = limit || Math.max(1, ...memPts.map((p) => p[1] || 0)) * 1.2;
    const lines = [{ points: memPts, color: '#1f9d55' }];
    if (limit) lines.push({ points: hist.map((p) => [p.at_ms, p.memory_limit_bytes]), color: '#d33c3c', dash: [4, 3], width: 1 });
    drawLines(mem, lines, memMax, fmtBytes);
  }
  return { el, update };
}

/** An allocation's output as it comes (SSE, numbered lines); `stop()` closes it. */
function logPanel(id) {
  const path = `/v1/allocations/${enc(id)}/logs`;
  const pre = h('pre', { id: 'logs', class: 'logs', 'data-alloc': id });
  const status = h('div', { id: 'logs-status', class: 'muted' }, 'connecting…');
  const es = new EventSource(withToken(`${path}?follow=true`));
  const add = (ev) => {
    let l;
    try { l = JSON.parse(ev.data); } catch (_) { return; }
    const stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
    pre.append(h('div', { class: `log-line ${l.stream}`, 'data-seq': l.seq }, l.line));
    while (pre.childElementCount > MAX_LOG_LINES) pre.firstChild.remove();
    if (stick) pre.scrollTop = pre.scrollHeight;
  };
  es.addEventListener('stdout', add);
  es.addEventListener('stderr', add);
  es.addEventListener('open', () => { status.textContent = `following ${id}`; });
  es.addEventListener('error', (ev) => {
    if (ev.data) { status.replaceChildren(h('span', { class: 'error' }, ev.data)); return; }
    if (es.readyState === EventSource.CLOSED) {
      // Not an event stream (an error answer): ask again to show its error.
      api(path).then(() => { status.textContent = 'output ended'; },
        (err) => status.replaceChildren(errorBox(err, id)));
    } else {
      status.textContent = 'output ended or connection lost: reconnecting…';
    }
  });
  return { el: h('div', { class: 'log-panel' }, status, pre), stop: () => es.close() };
}

/** The allocations of one job as table rows. */
function allocRows(allocs) {
  return allocs.map((a) => h('tr', { 'data-alloc': a.id, 'data-state': a.state },
    h('td', {}, h('a', { href: `#/allocs/${enc(a.id)}` }, a.id)),
    h('td', {}, a.node || '–'),
    h('td', {}, `v${a.job_version}`),
    h('td', {}, badge(a.state), a.desired === 'stop' ? ' (stopping)' : ''),
    h('td', {}, allocHealth(a)),
    h('td', {}, portLinks(a)),
    h('td', {}, a.restarts || 0),
    h('td', { class: 'muted' }, a.message || '')));
}
const ALLOC_HEADS = ['id', 'node', 'version', 'state', 'health', 'ports', 'restarts', 'message'];

function allocHealth(a) {
  if (a.health && a.health.status) return badge(a.health.status);
  if (a.deploy_healthy === true) return badge('healthy');
  if (a.deploy_healthy === false) return badge('unhealthy');
  return '–';
}

function portLinks(a) {
  return (a.ports || []).map((p, i) => {
    const label = `${p.name} ${p.container_port}→${p.host_port ?? '?'}`;
    const sep = i ? ', ' : '';
    if (!p.host_port || p.protocol === 'udp') return [sep, label];
    const host = !p.host_ip || p.host_ip === '0.0.0.0' || p.host_ip === '::' ? location.hostname : p.host_ip;
    const hostPart = host.includes(':') ? `[${host}]` : host;
    return [sep, h('a', { href: `http://${hostPart}:${p.host_port}`, target: '_blank', rel: 'noopener', 'data-port': p.name }, label)];
  });
}

// ---- Views: each draws into `root` and returns {refresh, stop, onEvent} ---------

function viewJobs(root) {
  const body = h('div', { class: 'panel', id: 'jobs' }, h('p', { class: 'muted' }, 'Loading…'));
  root.append(h('h1', {}, 'Jobs'), body);
  const refresh = () => load(body, async () => {
    const [jobs, deps] = await Promise.all([api('/v1/jobs'), api('/v1/deployments').catch(() => [])]);
    const latest = {};
    for (const d of deps) if (!latest[d.job] || d.id > latest[d.job].id) latest[d.job] = d;
    if (!jobs.length) return h('p', { class: 'muted' }, 'No jobs yet. ', h('a', { href: '#/editor' }, 'Run one'), '.');
    return table(['name', 'type', 'version', 'status', 'health', 'replicas', 'latest deployment'],
      jobs.map((j) => h('tr', { 'data-job': j.name, 'data-health': j.health },
        h('td', {}, h('a', { href: `#/jobs/${enc(j.name)}` }, j.name)),
        h('td', {}, j.type),
        h('td', {}, `v${j.version}`),
        h('td', {}, badge(j.status)),
        h('td', {}, badge(j.health)),
        h('td', {}, `${j.running}/${j.replicas}`),
        h('td', {}, latest[j.name] ? [badge(latest[j.name].status), ' ', h('span', { class: 'muted' }, latest[j.name].description)] : '–'))));
  });
  refresh();
  return { refresh };
}

function viewJob(root, name) {
  const head = h('div', { class: 'panel', id: 'job-head' }, 'Loading…');
  const allocs = h('div', { class: 'panel', id: 'job-allocs' });
  const charts = h('div', { class: 'charts', id: 'job-charts' });
  const logSelect = h('select', { id: 'log-alloc' });
  const logBox = h('div', {});
  const out = h('div', { id: 'action-result' });
  const scale = h('input', { id: 'scale-input', type: 'number', min: 0, step: 1 });
  const revertTo = h('select', { id: 'revert-version' });
  const btn = (id, label, cls, fn) => h('button', { id, class: cls, onclick: (e) => act(e.target, out, fn) }, label);
  const actions = h('div', { class: 'panel' },
    h('div', { class: 'row' },
      btn('stop-btn', 'Stop', 'danger', async () => {
        if (!window.confirm(`Stop job ${name}?`)) return '';
        await api(`/v1/jobs/${enc(name)}`, { method: 'DELETE' });
        return `job ${name} stopping`;
      }),
      'replicas', scale,
      btn('scale-btn', 'Scale', '', async () => {
        const job = await api(`/v1/jobs/${enc(name)}`);
        const spec = Object.assign({}, job.spec, { replicas: Number(scale.value) });
        const done = await api('/v1/jobs', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(spec) });
        return `scaled to ${spec.replicas}: version ${done.version}`;
      }),
      'revert to', revertTo,
      btn('revert-btn', 'Revert', '', async () => {
        if (!revertTo.value) throw new Error('no earlier version to revert to');
        const done = await api(`/v1/jobs/${enc(name)}/revert`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ version: Number(revertTo.value) }) });
        return `reverted to version ${revertTo.value}: now version ${done.version}`;
      })),
    out);
  root.append(h('h1', {}, 'Job ', h('span', { id: 'job-name' }, name)), head, actions,
    h('h2', {}, 'Allocations'), allocs, h('h2', {}, 'Resource use'), charts,
    h('h2', {}, 'Logs ', logSelect), logBox);

  const cards = new Map();
  let logs = null;
  const openLogs = (id) => {
    if (logs) logs.stop();
    logs = id ? logPanel(id) : null;
    logBox.replaceChildren(logs ? logs.el : h('p', { class: 'muted' }, 'No allocation to follow.'));
  };
  logSelect.addEventListener('change', () => openLogs(logSelect.value));

  let refreshes = 0, stopped = false;
  async function refresh() {
    const seq = ++refreshes;
    let job, versions;
    try {
      [job, versions] = await Promise.all([api(`/v1/jobs/${enc(name)}`), api(`/v1/jobs/${enc(name)}/versions`).catch(() => [])]);
    } catch (err) {
      if (!stopped && seq === refreshes) head.replaceChildren(errorBox(err));
      return;
    }
    if (stopped || seq !== refreshes) return; // left, or a newer answer comes
    const d = job.deployment;
    fill(head, h('div', { class: 'meta', 'data-job': name, 'data-health': job.health },
      kv('health', badge(job.health)), kv('status', badge(job.status)), kv('type', job.spec.type),
      kv('version', `v${job.version}`), kv('running', `${job.running}/${job.spec.replicas}`),
      kv('image', job.spec.task && job.spec.task.image ? h('code', {}, job.spec.task.image) : '–')),
      d ? h('div', { class: 'meta' }, kv('deployment', [badge(d.status), ` #${d.id} of v${d.job_version}: ${d.description}`]),
        kv('placed', `${d.placed}/${d.desired}`), kv('healthy', d.healthy), kv('unhealthy', d.unhealthy)) : null,
      job.waiting ? h('div', { class: 'note' }, job.waiting) : null);
    if (!scale.dataset.set) { scale.value = job.spec.replicas; scale.dataset.set = 'yes'; } // then the user's
    const older = versions.filter((v) => v.version !== job.version).reverse();
    const chosen = revertTo.value;
    revertTo.replaceChildren(...older.map((v) => h('option', { value: v.version }, `v${v.version}${v.stable ? ' (stable)' : ''}`)));
    if (chosen) revertTo.value = chosen;
    document.getElementById('revert-btn').disabled = !older.length;

    allocs.replaceChildren(job.allocations.length ? table(ALLOC_HEADS, allocRows(job.allocations.slice(0, 30)))
      : h('p', { class: 'muted' }, 'No allocations.'));
    const live = job.allocations.filter((a) => a.desired === 'run' && a.state === 'running');
    for (const [id, c] of cards) if (!live.some((a) => a.id === id)) { c.el.remove(); cards.delete(id); }
    for (const a of live) {
      if (cards.has(a.id)) continue;
      const c = chartCard(a.id);
      cards.set(a.id, c);
      charts.append(c.el);
      c.update();
    }
    if (!live.length) charts.replaceChildren(h('p', { class: 'muted' }, 'No running allocation.'));
    else charts.querySelectorAll(':scope > p').forEach((p) => p.remove());

    const ids = job.allocations.map((a) => a.id);
    const pick = logSelect.value;
    logSelect.replaceChildren(...job.allocations.map((a) => h('option', { value: a.id }, `${a.id} (${a.state})`)));
    if (ids.includes(pick)) logSelect.value = pick;
    if (!logs || !ids.includes(pick)) {
      const first = live[0] || job.allocations[0];
      logSelect.value = first ? first.id : '';
      openLogs(first ? first.id : '');
    }
  }
  refresh();
  const timer = setInterval(() => cards.forEach((c) => c.update()), STATS_POLL_MS);
  return { refresh, stop: () => { stopped = true; clearInterval(timer); if (logs) logs.stop(); } };
}

function viewAlloc(root, id) {
  const head = h('div', { class: 'panel', id: 'alloc-head' }, 'Loading…');
  const card = chartCard(id);
  const logs = logPanel(id);
  root.append(h('h1', {}, 'Allocation ', h('span', { id: 'alloc-id' }, id)), head,
    h('h2', {}, 'Resource use'), h('div', { class: 'charts' }, card.el), h('h2', {}, 'Logs'), logs.el);
  const refresh = () => load(head, async () => {
    const a = await api(`/v1/allocations/${enc(id)}`);
    return h('div', { 'data-alloc': a.id, 'data-state': a.state },
      h('div', { class: 'meta' }, kv('job', h('a', { href: `#/jobs/${enc(a.job)}` }, a.job)), kv('version', `v${a.job_version}`),
        kv('node', a.node || '–'), kv('state', badge(a.state)), kv('desired', a.desired), kv('health', allocHealth(a))),
      h('div', { class: 'meta' }, kv('ports', (a.ports || []).length ? portLinks(a) : '–'), kv('restarts', a.restarts || 0),
        kv('started', fmtTime(a.started_ms)), a.exit_code != null ? kv('exit code', a.exit_code) : null),
      a.message ? h('div', { class: 'note' }, a.message) : null);
  });
  refresh();
  card.update();
  const timer = setInterval(card.update, STATS_POLL_MS);
  return { refresh, stop: () => { clearInterval(timer); logs.stop(); } };
}

/** A labelled bar of `used` against `cap`. */
function bar(kind, used, cap, fmt) {
  const pct = cap > 0 ? Math.min(100, (used / cap) * 100) : 0;
  const level = h('div', { class: 'fill' });
  level.style.width = `${pct.toFixed(1)}%`;
  const cls = pct >= 90 ? 'bar full' : pct >= 70 ? 'bar high' : 'bar';
  return h('div', { class: 'bar-row' }, h('span', {}, kind),
    h('div', { class: cls, 'data-kind': kind, 'data-used': used, 'data-capacity': cap, title: `${pct.toFixed(1)}%` }, level),
    h('span', { class: 'muted' }, `${fmt(used)} / ${fmt(cap)}`));
}

function viewNodes(root) {
  const body = h('div', { class: 'cards', id: 'nodes' }, 'Loading…');
  const out = h('div', { id: 'action-result' });
  root.append(h('h1', {}, 'Nodes'), out, body);
  const refresh = () => load(body, async () => {
    const nodes = await api('/v1/nodes');
    if (!nodes.length) return h('p', { class: 'muted' }, 'No nodes.');
    return nodes.map((n) => {
      const cap = n.capacity || {}, used = n.used || {};
      const verb = n.draining ? 'undrain' : 'drain';
      return h('div', { class: 'panel node-card', 'data-node': n.id, 'data-status': n.status },
        h('h2', {}, n.id, badge(n.status), n.draining ? badge('draining') : null),
        h('div', { class: 'meta' }, kv('role', n.role), kv('address', n.host_ip || '–'),
          kv('allocations', n.allocations), kv('api', n.addrs ? n.addrs.http : '–')),
        n.health ? h('div', { class: 'note' }, n.health) : null,
        h('div', { class: 'tags' }, Object.entries(n.tags || {}).map(([k, v]) => h('span', { class: 'tag' }, `${k}=${v}`))),
        bar('cpu', used.cpu || 0, cap.cpu || 0, fmtCpu),
        bar('memory', used.memory_mb || 0, cap.memory_mb || 0, fmtMb),
        cap.disk_mb ? bar('disk', used.disk_mb || 0, cap.disk_mb, fmtMb) : null,
        h('div', { class: 'row' }, h('button', {
          'data-action': verb,
          onclick: (e) => act(e.target, out, async () => {
            await api(`/v1/nodes/${enc(n.id)}/${verb}`, { method: 'POST' });
            refresh();
            return `node ${n.id}: ${verb === 'drain' ? 'draining' : 'no longer draining'}`;
          }),
        }, verb === 'drain' ? 'Drain' : 'Undrain')));
    });
  });
  refresh();
  return { refresh };
}

function viewTopology(root) {
  const body = h('div', { class: 'topo', id: 'topology' }, 'Loading…');
  root.append(h('h1', {}, 'Topology'), h('p', { class: 'muted' }, 'Each node is a box filled by its live allocations, sized by the memory they reserve.'), body);
  const refresh = () => load(body, async () => {
    const [nodes, allocs] = await Promise.all([api('/v1/nodes'), api('/v1/allocations')]);
    const live = allocs.filter((a) => a.desired === 'run' && !['complete', 'stopped', 'lost'].includes(a.state));
    const boxes = nodes.map((n) => {
      const mine = live.filter((a) => a.node === n.id);
      const cap = (n.capacity && n.capacity.memory_mb) || 1;
      return h('div', { class: n.status === 'down' ? 'topo-node down' : 'topo-node', 'data-node': n.id, 'data-status': n.status },
        h('h3', {}, h('span', {}, n.id), badge(n.draining ? 'draining' : n.status)),
        h('div', { class: 'topo-box' }, mine.map((a) => {
          const el = h('a', { class: 'topo-alloc', href: `#/allocs/${enc(a.id)}`, 'data-alloc': a.id, title: `${a.id}: ${a.state}, ${fmtCpu(a.resources.cpu)}, ${fmtMb(a.resources.memory_mb)}` }, a.job);
          const share = Math.max(4, (a.resources.memory_mb / cap) * 100);
          el.style.width = `${Math.min(100, Math.sqrt(share) * 10)}%`;
          el.style.height = `${Math.min(100, Math.sqrt(share) * 10)}%`;
          el.style.background = `hsl(${hue(a.job)} 55% ${a.state === 'running' ? 45 : 65}%)`;
          return el;
        })),
        h('div', { class: 'muted' }, `${mine.length} allocations · ${fmtMb(n.used ? n.used.memory_mb : 0)} of ${fmtMb(cap)}`));
    });
    const unplaced = live.filter((a) => !a.node);
    if (unplaced.length) {
      boxes.push(h('div', { class: 'topo-node', 'data-node': '' }, h('h3', {}, 'Not placed'),
        h('ul', {}, unplaced.map((a) => h('li', {}, h('a', { href: `#/allocs/${enc(a.id)}` }, a.id), ' ', a.message || '')))));
    }
    return boxes.length ? boxes : h('p', { class: 'muted' }, 'No nodes.');
  });
  refresh();
  return { refresh };
}

function viewEditor(root) {
  const text = h('textarea', { id: 'editor-text', spellcheck: 'false', placeholder: 'Paste a job spec, YAML or JSON:\n\nname: web\nreplicas: 2\ntask:\n  image: …' });
  text.value = sessionStorage.getItem('orion.editor') || '';
  const result = h('div', { id: 'editor-result' });
  const plan = h('button', { id: 'plan-btn' }, 'Plan');
  const run = h('button', { id: 'run-btn', class: 'primary', disabled: true }, 'Run');
  let planned = null; // {text, plan} of the last good plan: Run submits exactly that text
  root.append(h('h1', {}, 'Run a job'), h('div', { class: 'panel' }, text,
    h('div', { class: 'row' }, plan, run, h('span', { class: 'muted' }, 'Plan first: Run submits the planned spec, if the job did not change since.')), result));
  const ctype = (s) => (/^\s*[[{]/.test(s) ? 'application/json' : 'application/yaml');
  text.addEventListener('input', () => {
    sessionStorage.setItem('orion.editor', text.value);
    run.disabled = !planned || planned.text !== text.value;
  });
  plan.addEventListener('click', async () => {
    const src = text.value;
    planned = null;
    run.disabled = true;
    result.replaceChildren(h('p', { class: 'muted' }, 'Planning…'));
    try {
      const p = await api('/v1/jobs/plan', { method: 'POST', headers: { 'Content-Type': ctype(src) }, body: src });
      planned = { text: src, plan: p };
      run.disabled = text.value !== src;
      result.replaceChildren(planView(p));
    } catch (err) {
      result.replaceChildren(errorBox(err));
    }
  });
  run.addEventListener('click', async () => {
    if (!planned) return;
    const { text: src, plan: p } = planned;
    run.disabled = true;
    try {
      const done = await api(`/v1/jobs?check_index=${p.modify_index}`, { method: 'POST', headers: { 'Content-Type': ctype(src) }, body: src });
      planned = null;
      result.replaceChildren(h('p', { class: 'ok', id: 'run-done', 'data-job': done.name },
        `Job ${done.name} submitted: version ${done.version}${done.changed ? '' : ' (unchanged)'}. `,
        h('a', { href: `#/jobs/${enc(done.name)}` }, 'Open it'), '.'));
    } catch (err) {
      result.replaceChildren(errorBox(err));
    }
  });
  return {};
}

function planView(p) {
  return h('div', { class: 'plan', 'data-job': p.name, 'data-changed': p.changed, 'data-create': p.create, 'data-stop': p.stop },
    h('div', { class: 'meta' }, kv('job', p.name), kv('now', p.version == null ? 'new job' : `v${p.version}`),
      kv('changed', p.changed ? 'yes' : 'no'), kv('create', p.create), kv('stop', p.stop), kv('in place', p.in_place),
      p.rollout ? kv('rollout', p.rollout) : null),
    p.unplaced && p.unplaced.length
      ? h('div', { class: 'error' }, 'Would not place:', h('ul', {}, p.unplaced.map((u) => h('li', {}, u)))) : null,
    p.diff ? h('pre', { class: 'diff' }, p.diff.split('\n').map((l) => h('div', {
      class: l.startsWith('@@') ? 'hunk' : l.startsWith('+') ? 'add' : l.startsWith('-') ? 'del' : '',
    }, l || ' '))) : h('p', { class: 'muted' }, 'No change to the spec.'));
}

const EVENT_LINKS = { Job: '#/jobs/', Deployment: '#/jobs/', Allocation: '#/allocs/', Node: '#/nodes', Volume: null };

function eventRow(ev) {
  const o = ev.object;
  const what = o == null ? 'removed' : o.state || o.status || '';
  const link = EVENT_LINKS[ev.topic];
  const target = link == null ? ev.key : link.endsWith('/') ? link + enc(ev.key) : link;
  return h('tr', { 'data-index': ev.index, 'data-topic': ev.topic },
    h('td', { class: 'mono' }, ev.index), h('td', {}, ev.topic),
    h('td', {}, link ? h('a', { href: target }, ev.key) : ev.key),
    h('td', {}, what ? badge(what) : ''),
    h('td', { class: 'muted' }, (o && (o.description || o.message)) || ''));
}

function viewEvents(root) {
  const rows = h('tbody', {}, recent.map(eventRow));
  const empty = h('p', { class: 'muted' }, 'Waiting for changes…');
  empty.hidden = recent.length > 0;
  root.append(h('h1', {}, 'Events'), h('p', { class: 'muted' }, 'Committed changes, newest first: the last few before the dashboard opened, then each as it happens.'),
    h('div', { class: 'panel' }, empty,
      h('table', { id: 'events-list' }, h('thead', {}, h('tr', {}, ['index', 'topic', 'key', 'now', 'detail'].map((x) => h('th', {}, x)))), rows)));
  return {
    onEvent(ev) {
      empty.hidden = true;
      rows.prepend(eventRow(ev));
      while (rows.childElementCount > MAX_EVENTS) rows.lastChild.remove();
    },
  };
}

// ---- Routing, the event stream, the token -----------------------------------

const ROUTES = [
  ['jobs', /^\/jobs\/?$/, viewJobs],
  ['job', /^\/jobs\/(.+)$/, viewJob],
  ['alloc', /^\/allocs\/(.+)$/, viewAlloc],
  ['nodes', /^\/nodes\/?$/, viewNodes],
  ['topology', /^\/topology\/?$/, viewTopology],
  ['editor', /^\/editor\/?$/, viewEditor],
  ['events', /^\/events\/?$/, viewEvents],
];
const NAV_OF = { job: 'jobs', alloc: 'jobs' };

let current = {};
const recent = []; // the last events since the page loaded, newest first

function route() {
  if (current.stop) current.stop();
  const path = location.hash.replace(/^#/, '') || '/jobs';
  const root = document.getElementById('view');
  root.replaceChildren();
  const hit = ROUTES.find(([, re]) => re.test(path));
  let args = [];
  try { args = hit ? path.match(hit[1]).slice(1).map(decodeURIComponent) : []; } catch (_) { /* bad escape */ }
  const name = hit ? hit[0] : 'missing';
  root.dataset.view = name;
  document.title = `Orion · ${name}`;
  for (const a of document.querySelectorAll('[data-nav]')) a.classList.toggle('active', a.dataset.nav === (NAV_OF[name] || name));
  if (!hit) {
    root.append(h('h1', {}, 'No such page'), h('p', {}, h('code', {}, path), ' is not a page. ', h('a', { href: '#/jobs' }, 'To the jobs'), '.'));
    current = {};
    return;
  }
  current = hit[2](root, ...args) || {};
}

let refreshTimer = null;
function scheduleRefresh() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => { if (current.refresh) current.refresh(); }, REFRESH_DELAY_MS);
}

let stream = null;
function setLive(on) {
  const el = document.getElementById('live');
  el.className = `live ${on ? 'on' : 'off'}`;
  el.textContent = on ? 'live' : 'offline';
}

let connects = 0; // connect() calls, so a slow one yields to a later one
/**
 * Opens the one event stream. The first time it starts a few changes back (from
 * the replica's applied index, `x-orion-index`) so the events page has some
 * history; EventSource itself resumes with Last-Event-ID after a drop.
 */
async function connect() {
  const gen = ++connects;
  if (stream) stream.close();
  stream = null;
  let from = '';
  if (!recent.length) {
    try {
      const r = await fetch('/v1/status/leader', { headers: token() ? { Authorization: `Bearer ${token()}` } : {} });
      const index = Number(r.headers.get('x-orion-index'));
      if (index > 0) from = `?index=${Math.max(0, index - 30)}`;
    } catch (_) { /* start from now */ }
  }
  if (gen !== connects) return; // a later connect() took over
  const es = (stream = new EventSource(withToken(`/v1/events${from}`)));
  es.addEventListener('open', () => { setLive(true); scheduleRefresh(); });
  es.addEventListener('error', (ev) => {
    if (ev.data) { scheduleRefresh(); return; } // the node's notice: we missed some; re-read
    setLive(false);
    // EventSource retries by itself unless the answer was not a stream.
    if (es.readyState === EventSource.CLOSED && stream === es) setTimeout(() => { if (stream === es) connect(); }, 5000);
  });
  const onEvent = (msg) => {
    let ev;
    try { ev = JSON.parse(msg.data); } catch (_) { return; }
    recent.unshift(ev);
    if (recent.length > MAX_EVENTS) recent.pop();
    if (current.onEvent) current.onEvent(ev);
    scheduleRefresh();
  };
  for (const t of TOPICS) es.addEventListener(t, onEvent);
}

function start() {
  const input = document.getElementById('token');
  input.value = token();
  const apply = () => {
    if (input.value === token()) return;
    if (input.value) localStorage.setItem('orion.token', input.value);
    else localStorage.removeItem('orion.token');
    connect();
    route();
  };
  input.addEventListener('change', apply);
  document.getElementById('token-form').addEventListener('submit', (e) => { e.preventDefault(); apply(); });
  window.addEventListener('hashchange', route);
  route();
  connect();
}

start();
