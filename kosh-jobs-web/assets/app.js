// kosh-jobs dashboard. Plain script, no build step, no dependencies.
//
// Every value that comes from a job (payload, error, name, unique key, queue) is put in the
// page with DOM APIs as text (textContent, createTextNode, setAttribute): never through an
// HTML parser, so a hostile payload shows as the text it is.
'use strict';

(function () {
  // The router's root: this script is at ROOT/assets/app.js.
  const ROOT = new URL('..', document.currentScript.src);
  const STATES = ['scheduled', 'ready', 'running', 'completed', 'failed', 'cancelled'];
  const JOB_ACTIONS = ['retry', 'cancel', 'delete', 'promote'];
  const PAGE = 50;
  // Which states each action applies to (as `AdminAction::applies_to`).
  const APPLIES = {
    retry: ['failed', 'cancelled'],
    cancel: ['scheduled', 'ready', 'running'],
    delete: ['completed', 'failed', 'cancelled'],
    promote: ['scheduled'],
  };

  const app = {
    meta: null,
    skew: 0, // server clock minus this browser's clock, in ms
    paused: false,
    timer: null,
    view: null, // {refresh: async fn}
    seq: 0, // bumps on each navigation; stale answers are dropped
  };

  // ---------- DOM helpers ----------

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k === 'testid') e.setAttribute('data-testid', v);
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    append(e, children);
    return e;
  }

  function append(parent, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      parent.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return parent;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  function svg(tag, attrs) {
    const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  }

  const $ = (id) => document.getElementById(id);
  const main = () => $('main');

  // ---------- formatting ----------

  const fmt = (n) => Number(n || 0).toLocaleString('en-US');
  const now = () => Date.now() + app.skew;
  const pad = (n, w = 2) => String(n).padStart(w, '0');

  function abs(ms) {
    const d = new Date(ms);
    if (isNaN(d.getTime())) return String(ms);
    return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
      `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}Z`;
  }

  function span(ms) {
    const s = Math.floor(ms / 1000);
    const pair = (a, ua, b, ub) => (b === 0 ? `${a} ${ua}` : `${a} ${ua} ${b} ${ub}`);
    if (s < 1) return `${Math.max(0, Math.round(ms))} ms`;
    if (s < 60) return `${s} s`;
    if (s < 3600) return pair(Math.floor(s / 60), 'min', s % 60, 's');
    if (s < 86400) return pair(Math.floor(s / 3600), 'h', Math.floor((s % 3600) / 60), 'min');
    return pair(Math.floor(s / 86400), 'd', Math.floor((s % 86400) / 3600), 'h');
  }

  function rel(ms) {
    const d = now() - ms;
    if (Math.abs(d) < 1000) return 'just now';
    return d > 0 ? `${span(d)} ago` : `in ${span(-d)}`;
  }

  // <time> showing the relative time, the absolute one in its title.
  function timeRel(ms) {
    if (ms === null || ms === undefined) return el('span', { class: 'muted', text: '–' });
    return el('time', { datetime: new Date(ms).toISOString(), title: abs(ms), text: rel(ms) });
  }

  // "2025-06-01 02:10:00Z (3 min ago)".
  function timeBoth(ms) {
    if (ms === null || ms === undefined) return el('span', { class: 'muted', text: '–' });
    return el('time', { datetime: new Date(ms).toISOString(), text: `${abs(ms)} (${rel(ms)})` });
  }

  function stateBadge(state) {
    return el('span', { class: `state state-${state}`, 'data-state': state, text: state });
  }

  function plural(n, word) {
    return `${fmt(n)} ${word}${n === 1 ? '' : 's'}`;
  }

  // ---------- API ----------

  async function api(path, init) {
    const res = await fetch(new URL(path, ROOT), Object.assign({
      credentials: 'same-origin',
      headers: { Accept: 'application/json' },
    }, init || {}));
    let body = null;
    try { body = await res.json(); } catch (_) { body = null; }
    if (!res.ok) {
      const err = new Error((body && body.error) || `the server answered ${res.status}`);
      err.status = res.status;
      throw err;
    }
    if (body && typeof body.now === 'number') app.skew = body.now - Date.now();
    return body;
  }

  function post(path, body) {
    const init = { method: 'POST', headers: { Accept: 'application/json' } };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    return api(path, init);
  }

  const allowed = (action) => !!(app.meta && app.meta.allowed.includes(action));

  // ---------- banner, confirm ----------

  function banner(text, isError) {
    const b = $('banner');
    $('banner-text').textContent = text;
    b.classList.toggle('error', !!isError);
    b.setAttribute('role', isError ? 'alert' : 'status');
    b.hidden = false;
  }

  function hideBanner() { $('banner').hidden = true; }

  function confirmDialog(text, okLabel) {
    const d = $('confirm');
    $('confirm-text').textContent = text;
    $('confirm-yes').textContent = okLabel || 'Confirm';
    if (typeof d.showModal !== 'function') return Promise.resolve(window.confirm(text));
    return new Promise((resolve) => {
      d.returnValue = 'cancel';
      d.addEventListener('close', () => resolve(d.returnValue === 'ok'), { once: true });
      d.showModal();
      $('confirm-no').focus();
    });
  }

  // ---------- live updates ----------

  function setUpdated() {
    $('updated').textContent = app.paused ? 'Updates paused' : `Updated ${abs(now()).slice(11)}`;
  }

  async function tick() {
    if (app.paused || document.hidden || !app.view || !app.view.refresh) return;
    const seq = app.seq;
    try {
      await app.view.refresh();
      if (seq === app.seq) setUpdated();
    } catch (e) {
      if (seq === app.seq) $('updated').textContent = `Update failed: ${e.message}`;
    }
  }

  function startPolling() {
    if (app.timer) clearInterval(app.timer);
    app.timer = setInterval(tick, (app.meta && app.meta.poll_ms) || 5000);
  }

  function toggleLive() {
    app.paused = !app.paused;
    const b = $('live-toggle');
    b.setAttribute('aria-pressed', String(app.paused));
    b.textContent = app.paused ? 'Resume updates' : 'Pause updates';
    setUpdated();
    if (!app.paused) tick();
  }

  // ---------- routing ----------

  function parseHash() {
    const raw = location.hash.replace(/^#/, '') || '/';
    const [path, query] = raw.split('?');
    return { parts: path.split('/').filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(query || '') };
  }

  function queueHref(queue, params) {
    const q = params ? new URLSearchParams(params).toString() : '';
    return `#/queues/${encodeURIComponent(queue)}${q ? `?${q}` : ''}`;
  }

  const jobHref = (id) => `#/jobs/${encodeURIComponent(id)}`;

  function groupsHref(queue, after) {
    const q = after ? `?${new URLSearchParams({ after })}` : '';
    return `#/queues/${encodeURIComponent(queue)}/groups${q}`;
  }

  async function route() {
    app.seq += 1;
    app.view = null;
    hideBannerOnNav();
    const { parts, params } = parseHash();
    for (const a of document.querySelectorAll('.nav a')) a.removeAttribute('aria-current');
    let view;
    try {
      if (parts.length === 0) {
        $('nav-overview').setAttribute('aria-current', 'page');
        view = overviewView();
      } else if (parts[0] === 'queues' && parts.length === 2) {
        view = queueView(parts[1], params);
      } else if (parts[0] === 'queues' && parts.length === 3 && parts[2] === 'groups') {
        view = groupsView(parts[1], params);
      } else if (parts[0] === 'jobs' && parts.length === 2) {
        view = jobView(parts[1]);
      } else if (parts[0] === 'workers' && parts.length === 1) {
        $('nav-workers').setAttribute('aria-current', 'page');
        view = workersView();
      } else if (parts[0] === 'schedules' && parts.length === 1) {
        $('nav-schedules').setAttribute('aria-current', 'page');
        view = schedulesView();
      } else {
        renderNotFound('There is no such page.');
        return;
      }
      const seq = app.seq;
      await view.refresh(true);
      if (seq !== app.seq) return;
      app.view = view;
      setUpdated();
    } catch (e) {
      showLoadError(e);
    }
  }

  let keepBanner = false;
  function hideBannerOnNav() {
    if (keepBanner) keepBanner = false; else hideBanner();
  }

  function navigate(hash, keepMessage) {
    keepBanner = !!keepMessage;
    if (location.hash === hash) route(); else location.hash = hash;
  }

  function renderNotFound(text) {
    document.title = `Not found · ${app.meta ? app.meta.title : 'kosh-jobs'}`;
    clear(main()).appendChild(el('div', { class: 'empty', testid: 'not-found' },
      el('h2', { text: 'Not found' }), el('p', { text }),
      el('p', {}, el('a', { href: '#/', text: 'Back to the overview' }))));
  }

  function showLoadError(e) {
    if (e && e.status === 404) { renderNotFound(e.message); return; }
    clear(main()).appendChild(el('div', { class: 'empty', testid: 'load-error' },
      el('h2', { text: 'Cannot load this page' }), el('p', { text: e ? e.message : 'unknown error' }),
      el('p', { class: 'muted', text: 'The page retries on its own while updates are on.' })));
    app.view = { refresh: async () => { await route(); } };
  }

  // ---------- overview ----------

  function chart(points) {
    const w = 240; const hgt = 48; const bw = w / points.length;
    let max = 1;
    for (const p of points) max = Math.max(max, p.completed + p.failed);
    const s = svg('svg', { class: 'chart', viewBox: `0 0 ${w} ${hgt + 2}`, preserveAspectRatio: 'none', role: 'img' });
    const done = points.reduce((a, p) => a + p.completed, 0);
    const failed = points.reduce((a, p) => a + p.failed, 0);
    const t = svg('title');
    t.textContent = `Last hour, per minute: ${fmt(done)} completed, ${fmt(failed)} failed (peak ${fmt(max)} a minute)`;
    s.appendChild(t);
    s.setAttribute('aria-label', t.textContent);
    points.forEach((p, i) => {
      const hc = (p.completed / max) * hgt;
      const hf = (p.failed / max) * hgt;
      if (hc > 0) s.appendChild(svg('rect', { class: 'c', x: i * bw + 0.5, y: hgt - hc, width: bw - 1, height: hc }));
      if (hf > 0) s.appendChild(svg('rect', { class: 'f', x: i * bw + 0.5, y: hgt - hc - hf, width: bw - 1, height: hf }));
    });
    s.appendChild(svg('line', { class: 'axis', x1: 0, y1: hgt + 1, x2: w, y2: hgt + 1 }));
    return s;
  }

  function ratioText(r) {
    return r === null || r === undefined ? '–' : `${(r * 100).toFixed(r > 0 && r < 0.01 ? 2 : 1)}%`;
  }

  function queueCard(name) {
    const refs = { counts: {} };
    const counts = el('div', { class: 'counts' });
    for (const st of STATES) {
      const n = el('span', { class: 'n', testid: `count-${name}-${st}`, text: '0' });
      counts.appendChild(el('a', { class: `count state-${st}`, href: queueHref(name, { state: st }) }, n,
        el('span', { class: 'label', text: st })));
      refs.counts[st] = n;
    }
    refs.paused = el('span', { class: 'badge paused', testid: `paused-${name}`, text: 'paused', hidden: true });
    refs.oldest = el('b', { testid: `oldest-${name}`, text: '–' });
    refs.hour = el('b', { testid: `hour-${name}`, text: '–' });
    refs.ratio = el('b', { testid: `ratio-${name}`, text: '–' });
    refs.limits = el('p', { class: 'limits muted', testid: `limits-${name}`, hidden: true });
    refs.chart = el('div', { testid: `chart-${name}` });
    refs.actions = el('div');
    refs.card = el('section', { class: 'card', 'data-queue': name, testid: `queue-card-${name}`, 'aria-label': `Queue ${name}` },
      el('div', { class: 'card-head' },
        el('a', { class: 'name', href: queueHref(name), testid: `queue-link-${name}`, text: name }), refs.paused),
      counts,
      el('div', { class: 'metrics' },
        el('div', {}, el('span', { class: 'muted', text: 'Oldest ready' }), refs.oldest),
        el('div', {}, el('span', { class: 'muted', text: 'Last hour ✓ / ✗' }), refs.hour),
        el('div', {}, el('span', { class: 'muted', text: 'Failure ratio' }), refs.ratio)),
      refs.limits,
      refs.chart,
      el('div', { class: 'legend muted' }, el('span', { class: 'c', text: 'completed' }), el('span', { class: 'f', text: 'failed' }),
        el('span', { text: 'per minute, last hour' })),
      refs.actions);
    return refs;
  }

  function queueActions(name, paused) {
    const canPause = allowed(paused ? 'resume' : 'pause');
    const canPurge = allowed('purge');
    if (!canPause && !canPurge) return null;
    const body = el('div');
    if (canPause) {
      body.appendChild(el('div', { class: 'row' }, el('button', {
        type: 'button', class: 'btn', testid: `${paused ? 'resume' : 'pause'}-${name}`,
        text: paused ? 'Resume queue' : 'Pause queue',
        onclick: async () => {
          try {
            await post(`api/queues/${encodeURIComponent(name)}/${paused ? 'resume' : 'pause'}`);
            banner(paused ? `Queue ${name} resumed.` : `Queue ${name} paused: workers take no new jobs from it.`);
            await app.view.refresh(true);
          } catch (e) { banner(e.message, true); }
        },
      })));
    }
    if (canPurge) {
      const age = el('select', { id: `purge-age-${name}`, testid: `purge-age-${name}` },
        [['3600', '1 hour'], ['86400', '1 day'], ['604800', '7 days'], ['2592000', '30 days']].map(([v, t]) =>
          el('option', { value: v, text: t, selected: v === '604800' })));
      const form = el('form', { class: 'row', testid: `purge-form-${name}` },
        el('label', { class: 'inline', for: `purge-age-${name}` }, 'Finished more than', age, 'ago'),
        el('button', { type: 'submit', class: 'btn danger', testid: `purge-${name}`, text: 'Purge…' }));
      form.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        const secs = Number(age.value);
        const before = now() - secs * 1000;
        const label = age.options[age.selectedIndex].text;
        try {
          const c = await api(`api/count?${new URLSearchParams({ action: 'delete', queue: name, states: 'completed,failed,cancelled', finished_until: String(before) })}`);
          if (c.count === 0) { banner(`Nothing to purge: ${name} has no finished jobs older than ${label}.`); return; }
          if (!await confirmDialog(`Delete ${plural(c.count, 'finished job')} of ${name} that finished more than ${label} ago? This cannot be undone.`, 'Delete')) return;
          const r = await post(`api/queues/${encodeURIComponent(name)}/purge`, { finished_before: before });
          banner(`Purged ${plural(r.deleted, 'job')} from ${name}.`);
          await app.view.refresh(true);
        } catch (e) { banner(e.message, true); }
      });
      body.appendChild(form);
    }
    return el('details', { class: 'queue-actions', testid: `queue-actions-${name}` }, el('summary', { text: 'Queue actions' }), body);
  }

  // A queue's limits in words: "Limits: 1 of 2 running · 37 of 100 starts per 1 s ·
  // 1 running per group, 3 groups full · held, starts again in 20 s".
  function limitsText(l) {
    const parts = [];
    if (l.concurrency !== null) parts.push(`${fmt(l.running)} of ${fmt(l.concurrency)} running`);
    if (l.rate !== null) {
      let r = `${fmt(l.starts_in_window)} of ${fmt(l.rate.max)} starts per ${span(l.rate.per_ms)}`;
      if (l.next_start_at !== null) r += `, next ${rel(l.next_start_at)}`;
      parts.push(r);
    }
    if (l.group_concurrency !== null || l.group_rate !== null) {
      const per = [];
      if (l.group_concurrency !== null) per.push(`${fmt(l.group_concurrency)} running`);
      if (l.group_rate !== null) per.push(`${fmt(l.group_rate.max)} starts per ${span(l.group_rate.per_ms)}`);
      const full = l.groups_at_limit === 1 ? '1 group full' : `${fmt(l.groups_at_limit)} groups full`;
      const waiting = l.held_in_groups > 0 ? `, ${plural(l.held_in_groups, 'job')} waiting for their group` : '';
      parts.push(`${per.join(' and ')} per group, ${full}${waiting}`);
    }
    if (l.held_until !== null) parts.push(`held, starts again ${rel(l.held_until)}`);
    return `Limits: ${parts.join(' · ')}`;
  }

  function updateCard(refs, q) {
    refs.limits.hidden = !q.limits;
    refs.limits.textContent = q.limits ? limitsText(q.limits) : '';
    for (const st of STATES) refs.counts[st].textContent = fmt(q.counts[st]);
    refs.paused.hidden = !q.paused;
    refs.oldest.textContent = q.oldest_ready_age_ms === null ? 'none ready' : span(q.oldest_ready_age_ms);
    refs.hour.textContent = `${fmt(q.last_hour.completed)} / ${fmt(q.last_hour.failed)}`;
    refs.ratio.textContent = ratioText(q.last_hour.failure_ratio);
    clear(refs.chart).appendChild(chart(q.per_minute));
    if (refs.wasPaused !== q.paused || !refs.actionsDrawn) {
      const open = refs.actions.querySelector('details[open]');
      clear(refs.actions);
      const a = queueActions(q.queue, q.paused);
      if (a) { if (open) a.open = true; refs.actions.appendChild(a); }
      refs.wasPaused = q.paused;
      refs.actionsDrawn = true;
    }
  }

  function overviewView() {
    const cards = new Map();
    let grid = null;
    let summary = null;
    let empty = null;
    return {
      async refresh() {
        const seq = app.seq;
        const o = await api('api/overview');
        if (seq !== app.seq) return;
        document.title = `Overview · ${app.meta.title}`;
        if (!grid) {
          summary = el('p', { class: 'summary', testid: 'overview-summary' });
          grid = el('div', { class: 'cards', testid: 'queues' });
          empty = el('div', { class: 'empty', testid: 'overview-empty', hidden: true },
            el('h2', { text: 'No queues yet' }),
            el('p', { text: 'Queues appear here as soon as your application enqueues a job (Client::enqueue) or pauses a queue.' }),
            el('p', { class: 'muted', text: 'Check that the dashboard and your application use the same store URL (and key prefix).' }));
          clear(main()).append(el('h1', { text: 'Queues' }), summary, empty, grid);
        }
        clear(summary).append(
          el('a', { href: '#/workers', testid: 'workers-summary', text: `${plural(o.workers.live, 'live worker')}` }),
          el('span', { class: 'muted', text: `running ${plural(o.workers.running, 'job')}` }));
        empty.hidden = o.queues.length > 0;
        const seen = new Set();
        o.queues.forEach((q, i) => {
          seen.add(q.queue);
          let refs = cards.get(q.queue);
          if (!refs) {
            refs = queueCard(q.queue);
            cards.set(q.queue, refs);
          }
          // Keep the cards in the server's (name) order without rebuilding them.
          if (grid.children[i] !== refs.card) grid.insertBefore(refs.card, grid.children[i] || null);
          updateCard(refs, q);
        });
        for (const [name, refs] of cards) {
          if (!seen.has(name)) { refs.card.remove(); cards.delete(name); }
        }
      },
    };
  }

  // ---------- a queue ----------

  // datetime-local value <-> ms, in this browser's time zone.
  function toLocalInput(ms) {
    if (!ms) return '';
    const d = new Date(Number(ms));
    if (isNaN(d.getTime())) return '';
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }

  function fromLocalInput(v) {
    if (!v) return '';
    const t = new Date(v).getTime();
    return isNaN(t) ? '' : String(t);
  }

  // The API's filter parameters from the page's.
  function apiFilter(queue, p) {
    const f = { queue };
    if (p.get('state')) f.states = p.get('state');
    if (p.get('name')) f.name = p.get('name');
    if (p.get('search')) f.search = p.get('search');
    const field = p.get('field') === 'finished' ? 'finished' : 'created';
    if (p.get('from')) f[`${field}_from`] = p.get('from');
    if (p.get('until')) f[`${field}_until`] = p.get('until');
    return f;
  }

  function describeFilter(queue, p) {
    const bits = [`queue ${queue}`];
    if (p.get('state')) bits.push(`state ${p.get('state')}`);
    if (p.get('name')) bits.push(`name ${p.get('name')}`);
    if (p.get('search')) bits.push(`text “${p.get('search')}”`);
    const field = p.get('field') === 'finished' ? 'finished' : 'created';
    if (p.get('from')) bits.push(`${field} from ${abs(Number(p.get('from')))}`);
    if (p.get('until')) bits.push(`${field} before ${abs(Number(p.get('until')))}`);
    return bits.join(', ');
  }

  function filterForm(queue, p) {
    const field = p.get('field') === 'finished' ? 'finished' : 'created';
    const input = (id, label, attrs) => {
      const i = el('input', Object.assign({ id, name: id, testid: id }, attrs));
      return { i, l: el('label', { for: id }, label, i) };
    };
    const name = input('filter-name', 'Job name', { type: 'text', value: p.get('name') || '', placeholder: 'exact, e.g. import_csv', autocomplete: 'off' });
    const search = input('filter-search', 'Text in payload, error or key', { type: 'search', value: p.get('search') || '', maxlength: 256, autocomplete: 'off' });
    const fieldSel = el('select', { id: 'filter-field', testid: 'filter-field' },
      el('option', { value: 'created', text: 'Enqueued', selected: field === 'created' }),
      el('option', { value: 'finished', text: 'Finished', selected: field === 'finished' }));
    const from = input('filter-from', 'From', { type: 'datetime-local', value: toLocalInput(p.get('from')) });
    const until = input('filter-until', 'Until', { type: 'datetime-local', value: toLocalInput(p.get('until')) });
    const order = el('select', { id: 'filter-order', testid: 'filter-order' },
      el('option', { value: 'newest', text: 'Newest first', selected: p.get('order') !== 'oldest' }),
      el('option', { value: 'oldest', text: 'Oldest first', selected: p.get('order') === 'oldest' }));
    const form = el('form', { class: 'filter', testid: 'filter-form', role: 'search', 'aria-label': 'Filter jobs' },
      name.l, search.l,
      el('label', { for: 'filter-field' }, 'Time', fieldSel), from.l, until.l,
      el('label', { for: 'filter-order' }, 'Order', order),
      el('div', { class: 'row' },
        el('button', { type: 'submit', class: 'btn primary', testid: 'filter-apply', text: 'Apply' }),
        el('a', { class: 'btn', href: queueHref(queue, p.get('state') ? { state: p.get('state') } : null), testid: 'filter-clear', text: 'Clear' })));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const next = new URLSearchParams();
      if (p.get('state')) next.set('state', p.get('state'));
      if (name.i.value.trim()) next.set('name', name.i.value.trim());
      if (search.i.value) next.set('search', search.i.value);
      const f = fromLocalInput(from.i.value); const u = fromLocalInput(until.i.value);
      if (f || u) next.set('field', fieldSel.value);
      if (f) next.set('from', f);
      if (u) next.set('until', u);
      if (order.value === 'oldest') next.set('order', 'oldest');
      navigate(queueHref(queue, next));
    });
    return form;
  }

  function jobRow(j, selected, onSelect, selectable) {
    const box = selectable ? el('input', {
      type: 'checkbox', class: 'pick', 'aria-label': `Select job ${j.id}`, testid: `select-${j.id}`,
      checked: selected.has(j.id), onchange: (ev) => onSelect(j.id, ev.target.checked),
    }) : null;
    const refs = {
      state: el('td', {}, stateBadge(j.state)),
      attempts: el('td', { class: 'num', text: `${j.attempts}/${j.max_attempts}` }),
      when: el('td', { class: 'hide-sm' }, timeRel(j.finished_at || j.started_at || j.run_at)),
      error: el('td', { class: 'err hide-sm', text: j.last_error || '' }),
    };
    refs.row = el('tr', { 'data-id': j.id, testid: `job-row-${j.id}` },
      selectable ? el('td', {}, box) : null,
      el('td', {}, el('a', { href: jobHref(j.id), testid: `job-link-${j.id}`, text: `#${j.id}` })),
      refs.state,
      el('td', { class: 'mono', text: j.name }),
      refs.attempts,
      el('td', { class: 'hide-sm' }, timeRel(j.created_at)),
      refs.when, refs.error);
    return refs;
  }

  function updateRow(refs, j) {
    clear(refs.state).appendChild(stateBadge(j.state));
    refs.attempts.textContent = `${j.attempts}/${j.max_attempts}`;
    clear(refs.when).appendChild(timeRel(j.finished_at || j.started_at || j.run_at));
    refs.error.textContent = j.last_error || '';
  }

  function queueView(queue, p) {
    const state = p.get('state') || '';
    const selected = new Set();
    let rows = new Map(); // id -> row refs
    let shownIds = '';
    let dom = null;
    // The actions this request may do, and that apply to the state shown (all on "All").
    const actions = JOB_ACTIONS.filter(allowed).filter((a) => !state || APPLIES[a].includes(state));
    const selectable = actions.length > 0;
    const listParams = () => {
      const q = new URLSearchParams(apiFilter(queue, p));
      q.set('order', p.get('order') === 'oldest' ? 'oldest' : 'newest');
      q.set('limit', String(PAGE));
      if (p.get('after')) q.set('after', p.get('after'));
      return q;
    };

    function updateSelection() {
      if (!dom) return;
      dom.selCount.textContent = `${plural(selected.size, 'job')} selected`;
      for (const b of dom.selButtons) b.disabled = selected.size === 0;
    }

    async function actOnSelected(action) {
      const ids = [...selected];
      if (ids.length === 0) return;
      if (!await confirmDialog(`${cap(action)} ${plural(ids.length, 'selected job')}?`, cap(action))) return;
      try {
        const r = await post('api/bulk', { action, ids });
        banner(resultText(action, r));
        selected.clear();
        await view.refresh(true);
      } catch (e) { banner(e.message, true); }
    }

    async function actOnFilter(action) {
      const f = apiFilter(queue, p);
      try {
        const c = await api(`api/count?${new URLSearchParams(Object.assign({ action }, f))}`);
        const what = describeFilter(queue, p);
        if (c.count === 0) { banner(`No ${c.states.join(' or ')} jobs match (${what}): nothing to ${action}.`); return; }
        if (!await confirmDialog(`${cap(action)} ${plural(c.count, 'job')} matching ${what} (${c.states.join(', ')})?`, `${cap(action)} ${fmt(c.count)}`)) return;
        const r = await post('api/bulk', { action, filter: f });
        banner(resultText(action, r));
        selected.clear();
        await view.refresh(true);
      } catch (e) { banner(e.message, true); }
    }

    function draw(list, overview) {
      const q = overview.queues.find((x) => x.queue === queue);
      const tabs = el('nav', { class: 'tabs', 'aria-label': 'Job states', testid: 'state-tabs' });
      const base = new URLSearchParams(p); base.delete('after'); base.delete('state');
      const allParams = new URLSearchParams(base);
      tabs.appendChild(el('a', { href: queueHref(queue, allParams), testid: 'tab-all', 'aria-current': state ? null : 'page', text: 'All' }));
      for (const st of STATES) {
        const tp = new URLSearchParams(base); tp.set('state', st);
        tabs.appendChild(el('a', {
          href: queueHref(queue, tp), testid: `tab-${st}`, class: `state-tab`, 'aria-current': state === st ? 'page' : null,
        }, `${st} `, el('span', { testid: `tab-count-${st}`, text: q ? fmt(q.counts[st]) : '0' })));
      }
      const selCount = el('span', { class: 'muted', testid: 'selected-count' });
      const selButtons = actions.map((a) => el('button', {
        type: 'button', class: `btn${a === 'delete' ? ' danger' : ''}`, testid: `bulk-${a}-selected`,
        text: `${cap(a)} selected`, disabled: true, onclick: () => actOnSelected(a),
      }));
      const bulkAction = el('select', { id: 'bulk-filter-action', testid: 'bulk-filter-action', 'aria-label': 'Action for every matching job' },
        actions.map((a) => el('option', { value: a, text: cap(a) })));
      const filterButtons = [el('label', { class: 'inline', for: 'bulk-filter-action' }, 'Every matching job:', bulkAction),
        el('button', { type: 'button', class: 'btn', testid: 'bulk-filter-go', text: 'Count and confirm…', onclick: () => actOnFilter(bulkAction.value) })];
      const notice = el('div', { class: 'notice', testid: 'list-changed', hidden: true },
        el('span', { text: 'The list has changed since it was drawn.' }),
        el('button', { type: 'button', class: 'btn small', testid: 'list-show-latest', text: 'Show latest', onclick: () => view.refresh(true) }));
      const tbody = el('tbody', { testid: 'job-rows' });
      const selectAll = selectable ? el('input', {
        type: 'checkbox', 'aria-label': 'Select every job on this page', testid: 'select-all',
        onchange: (ev) => {
          for (const [id, r] of rows) {
            const box = r.row.querySelector('input.pick');
            if (box) box.checked = ev.target.checked;
            if (ev.target.checked) selected.add(id); else selected.delete(id);
          }
          updateSelection();
        },
      }) : null;
      const table = el('div', { class: 'table-wrap' }, el('table', { testid: 'jobs-table' },
        el('thead', {}, el('tr', {},
          selectable ? el('th', {}, selectAll) : null,
          el('th', { text: 'Job' }), el('th', { text: 'State' }), el('th', { text: 'Name' }),
          el('th', { class: 'num', text: 'Attempts' }), el('th', { class: 'hide-sm', text: 'Enqueued' }),
          el('th', { class: 'hide-sm', text: 'Last change' }), el('th', { class: 'hide-sm', text: 'Last error' }))),
        tbody));
      const footer = el('div', { class: 'pager', testid: 'pager' });
      const empty = el('div', { class: 'empty', testid: 'jobs-empty', hidden: true });
      dom = { tbody, footer, empty, notice, selCount, selButtons, tabs, table, selectAll };
      clear(main()).append(
        el('p', { class: 'small' }, el('a', { href: '#/', text: '← Overview' })),
        el('h1', {}, el('span', { testid: 'queue-name', text: queue }),
          q && q.paused ? el('span', { class: 'badge paused', text: 'paused' }) : null),
        q && q.limits ? el('p', { class: 'small' }, el('span', { class: 'muted', testid: 'queue-limits', text: limitsText(q.limits) }), ' ',
          el('a', { href: groupsHref(queue), testid: 'groups-link', text: 'Groups →' })) : null,
        tabs, filterForm(queue, p),
        selectable ? el('div', { class: 'bulk', testid: 'bulk-bar' }, selCount, selButtons, el('span', { class: 'muted', text: '·' }), filterButtons) : null,
        notice, empty, table, footer);
      fillRows(list);
      updateSelection();
    }

    function fillRows(list) {
      clear(dom.tbody);
      rows = new Map();
      for (const id of [...selected]) if (!list.jobs.some((j) => j.id === id)) selected.delete(id);
      for (const j of list.jobs) {
        const r = jobRow(j, selected, (id, on) => { if (on) selected.add(id); else selected.delete(id); updateSelection(); }, selectable);
        rows.set(j.id, r);
        dom.tbody.appendChild(r.row);
      }
      if (dom.selectAll) dom.selectAll.checked = false;
      shownIds = list.jobs.map((j) => j.id).join(',');
      dom.notice.hidden = true;
      dom.table.hidden = list.jobs.length === 0;
      dom.empty.hidden = list.jobs.length > 0;
      if (list.jobs.length === 0) {
        const filtered = ['name', 'search', 'from', 'until'].some((k) => p.get(k));
        clear(dom.empty).append(
          el('h2', { text: filtered ? 'No jobs match this filter' : `No ${state || ''} jobs in ${queue}`.replace('  ', ' ') }),
          el('p', { text: filtered ? 'Widen the time range, check the spelling of the name, or clear the filter.'
            : state === 'failed' ? 'Nothing has failed for good here. Jobs that run out of attempts land in this list.'
              : 'Jobs show up here as your application enqueues them and workers run them.' }),
          list.partial ? el('p', { class: 'muted', text: `The search looked at ${fmt(list.examined)} jobs so far; more may match further on.` }) : null,
          filtered ? el('p', {}, el('a', { href: queueHref(queue, state ? { state } : null), text: 'Clear the filter' })) : null);
      }
      clear(dom.footer);
      const total = list.total ? `${fmt(list.total.count)}${list.total.exact ? '' : '+'}` : null;
      dom.footer.append(el('span', { testid: 'list-summary', text:
        `${plural(list.jobs.length, 'job')} shown${total !== null ? ` of ${total} matching` : ''}` }),
      el('span', { class: 'muted small', text: `(examined ${fmt(list.examined)})` }));
      if (p.get('after')) {
        const first = new URLSearchParams(p); first.delete('after');
        dom.footer.appendChild(el('a', { class: 'btn small', href: queueHref(queue, first), testid: 'page-first', text: 'First page' }));
      }
      if (list.next !== null) {
        const nx = new URLSearchParams(p); nx.set('after', String(list.next));
        dom.footer.appendChild(el('a', { class: 'btn small', href: queueHref(queue, nx), testid: 'page-next',
          text: list.partial ? 'Search further' : 'Next page' }));
      }
    }

    const view = {
      async refresh(force) {
        const seq = app.seq;
        const [list, overview] = await Promise.all([api(`api/jobs?${listParams()}`), api('api/overview')]);
        if (seq !== app.seq) return;
        document.title = `${queue} · ${app.meta.title}`;
        if (!dom || force === true) { draw(list, overview); return; }
        const q = overview.queues.find((x) => x.queue === queue);
        for (const st of STATES) {
          const n = dom.tabs.querySelector(`[data-testid="tab-count-${st}"]`);
          if (n) n.textContent = q ? fmt(q.counts[st]) : '0';
        }
        // Rows still listed are updated where they are; a changed list waits for the reader.
        const ids = list.jobs.map((j) => j.id).join(',');
        if (ids === shownIds) {
          for (const j of list.jobs) { const r = rows.get(j.id); if (r) updateRow(r, j); }
        } else {
          for (const j of list.jobs) { const r = rows.get(j.id); if (r) updateRow(r, j); }
          dom.notice.hidden = false;
        }
      },
    };
    return view;
  }

  const cap = (s) => s.charAt(0).toUpperCase() + s.slice(1);

  function resultText(action, r) {
    const done = { retry: 'Retried', cancel: 'Cancelled', delete: 'Deleted', promote: 'Promoted' }[action] || action;
    let t = `${done} ${plural(r.applied, 'job')}.`;
    const left = (r.skipped || 0) + (r.not_found || 0);
    if (left > 0) t += ` ${plural(left, 'job')} left as they were (they changed state or went away).`;
    if (r.conflicts > 0) t += ` ${plural(r.conflicts, 'job')} not retried: another live job holds the same unique key.`;
    return t;
  }

  // ---------- a job ----------

  function jsonBlock(value, testid) {
    return el('pre', { class: 'json', testid, text: JSON.stringify(value, null, 2) });
  }

  async function copyText(text, button) {
    try {
      if (navigator.clipboard && window.isSecureContext) {
        await navigator.clipboard.writeText(text);
      } else {
        const ta = el('textarea', { class: 'offscreen', readonly: true });
        ta.value = text;
        document.body.appendChild(ta);
        ta.select();
        document.execCommand('copy');
        ta.remove();
      }
      button.textContent = 'Copied';
    } catch (_) {
      button.textContent = 'Copy failed: select the text';
    }
    setTimeout(() => { button.textContent = 'Copy'; }, 2000);
  }

  function timeline(job) {
    if (job.history.length === 0 && job.errors.length === 0) {
      return el('p', { class: 'muted', testid: 'attempts-empty', text: 'No attempt yet: the job has not been picked up by a worker.' });
    }
    if (job.history.length === 0) {
      return el('ol', { class: 'timeline', testid: 'attempts' }, job.errors.map((e) => el('li', { class: 't-failed' },
        el('div', { class: 'head' }, el('b', { text: `Attempt ${e.attempt}` }), timeBoth(e.at)),
        el('pre', { class: 'error', testid: `attempt-error-${e.attempt}`, text: e.error }))));
    }
    return el('ol', { class: 'timeline', testid: 'attempts' }, job.history.map((a, i) => {
      const outcome = a.outcome || 'running';
      const cls = { completed: 'completed', running: 'running', released: 'ready', cancelled: 'cancelled', retry_scheduled: 'scheduled', snoozed: 'scheduled' }[outcome] || 'failed';
      const took = a.ended_at !== null ? `took ${span(a.duration_ms)}` : `running for ${span(now() - a.started_at)}`;
      return el('li', { class: `t-${cls}`, testid: `attempt-${i + 1}` },
        el('div', { class: 'head' },
          el('b', { text: `Attempt ${a.attempt}` }),
          el('span', { class: `state state-${cls}`, testid: `attempt-outcome-${i + 1}`, text: outcome.replace('_', ' ') }),
          el('span', {}, 'started ', timeBoth(a.started_at)),
          el('span', { class: 'muted', text: took }),
          el('span', { class: 'muted' }, 'worker ', el('code', { text: a.worker }))),
        a.error ? el('pre', { class: 'error', testid: `attempt-error-${i + 1}`, text: a.error }) : null);
    }));
  }

  function jobView(idText) {
    let last = '';
    let payloadDrawn = false;
    let parts = null;

    async function act(job, action) {
      if ((action === 'delete' || action === 'cancel') &&
        !await confirmDialog(`${cap(action)} job ${job.id} (${job.name} on ${job.queue})?${action === 'delete' ? ' This cannot be undone.' : ''}`, cap(action))) return;
      try {
        const r = await post(`api/jobs/${encodeURIComponent(job.id)}/${action}`);
        if (action === 'delete') {
          banner(`Job ${job.id} deleted.`);
          navigate(queueHref(job.queue), true);
          return;
        }
        banner(`Job ${job.id}: ${action} done; it is now ${r.state}.`);
        await view.refresh(true);
      } catch (e) { banner(e.message, true); }
    }

    function draw(job) {
      const facts = el('dl', { class: 'facts', testid: 'job-facts' });
      const fact = (k, v, testid) => facts.append(el('dt', { text: k }), el('dd', { testid }, v));
      fact('Name', el('code', { text: job.name }), 'job-name');
      fact('Queue', el('a', { href: queueHref(job.queue), text: job.queue }), 'job-queue');
      fact('State', stateBadge(job.state), 'job-state');
      fact('Attempts', `${job.attempts} of ${job.max_attempts}`, 'job-attempts');
      fact('Priority', String(job.priority), 'job-priority');
      fact('Unique key', job.unique_key === null ? el('span', { class: 'muted', text: 'none' }) : el('code', { text: job.unique_key }), 'job-unique-key');
      fact('Group', job.group == null ? el('span', { class: 'muted', text: 'none' }) : el('code', { text: job.group }), 'job-group');
      fact('Enqueued', timeBoth(job.created_at), 'job-created');
      fact('Run at', timeBoth(job.run_at), 'job-run-at');
      fact('Started', timeBoth(job.started_at), 'job-started');
      fact('Finished', timeBoth(job.finished_at), 'job-finished');
      if (job.lease_expires_at !== null) fact('Lease ends', timeBoth(job.lease_expires_at), 'job-lease');
      // The traceparent it was enqueued with (the `opentelemetry` feature): its trace id finds
      // the trace in the tracing backend.
      if (job.trace != null) fact('Trace', el('code', { text: job.trace }), 'job-trace');

      const actions = el('div', { class: 'actions', testid: 'job-actions' });
      for (const a of job.actions) {
        actions.appendChild(el('button', {
          type: 'button', class: `btn${a === 'delete' ? ' danger' : a === 'retry' ? ' primary' : ''}`,
          testid: `action-${a}`, id: `action-${a}`, text: cap(a), onclick: () => act(job, a),
        }));
      }
      if (job.actions.length === 0 && job.applicable_actions.length > 0 && app.meta.allowed.length === 0) {
        actions.appendChild(el('span', { class: 'muted', text: 'Read-only: actions are off.' }));
      }

      parts.head.replaceChildren(
        el('span', { testid: 'job-title', text: `Job ${job.id}` }), stateBadge(job.state));
      parts.actions.replaceWith(actions); parts.actions = actions;
      parts.facts.replaceWith(facts); parts.facts = facts;
      const timelineNode = timeline(job);
      parts.timeline.replaceWith(timelineNode); parts.timeline = timelineNode;
      const prog = job.progress === null ? el('p', { class: 'muted', testid: 'progress', text: 'No progress reported.' }) : jsonBlock(job.progress, 'progress');
      parts.progress.replaceWith(prog); parts.progress = prog;
      const res = job.result === null ? el('p', { class: 'muted', testid: 'result', text: job.state === 'completed' ? 'The handler returned no result.' : 'No result yet.' }) : jsonBlock(job.result, 'result');
      parts.result.replaceWith(res); parts.result = res;
      if (!payloadDrawn) {
        const copy = el('button', { type: 'button', class: 'btn small', testid: 'copy-payload', text: 'Copy' });
        copy.addEventListener('click', () => copyText(job.payload, copy));
        parts.payload.replaceChildren(
          el('div', { class: 'section-head' }, el('h2', { text: 'Payload' }), copy,
            job.payload_is_json ? null : el('span', { class: 'muted small', text: '(not valid JSON: shown as stored)' })),
          el('pre', { class: 'json', testid: 'payload', text: job.payload_pretty }));
        payloadDrawn = true;
      }
    }

    const view = {
      async refresh(force) {
        const seq = app.seq;
        const job = await api(`api/jobs/${encodeURIComponent(idText)}`);
        if (seq !== app.seq) return;
        document.title = `Job ${job.id} · ${app.meta.title}`;
        const text = JSON.stringify(job);
        if (!parts) {
          parts = {
            head: el('h1', {}), actions: el('div'), facts: el('dl'), timeline: el('div'),
            progress: el('div'), result: el('div'), payload: el('section', { testid: 'payload-section' }),
          };
          clear(main()).append(
            el('p', { class: 'small' }, el('a', { href: queueHref(job.queue), testid: 'back-to-queue', text: `← ${job.queue}` })),
            parts.head, parts.actions,
            el('div', { class: 'grid2' },
              el('section', {}, el('h2', { text: 'Details' }), parts.facts,
                el('h2', { text: 'Progress' }), parts.progress,
                el('h2', { text: 'Result' }), parts.result),
              el('section', {}, el('h2', { text: 'Attempts' }), parts.timeline)),
            parts.payload);
        } else if (text === last && force !== true) {
          return;
        }
        last = text;
        draw(job);
      },
    };
    return view;
  }

  // ---------- workers ----------

  function workersView() {
    let last = '';
    return {
      async refresh(force) {
        const seq = app.seq;
        const w = await api('api/workers');
        if (seq !== app.seq) return;
        document.title = `Workers · ${app.meta.title}`;
        const text = JSON.stringify(w.workers.map((x) => [x.id, x.jobs, x.last_seen]));
        if (text === last && force !== true) {
          for (const t of main().querySelectorAll('time[data-ms]')) t.textContent = rel(Number(t.getAttribute('data-ms')));
          return;
        }
        last = text;
        const out = [el('h1', { text: 'Workers' })];
        if (w.workers.length === 0) {
          out.push(el('div', { class: 'empty', testid: 'workers-empty' },
            el('h2', { text: 'No live workers' }),
            el('p', { text: 'Start a worker (Worker::builder(backend)…run()) with the same store URL: it registers itself and shows up here within a minute.' }),
            el('p', { class: 'muted', text: 'A worker that stops refreshing its registration drops off this list after about two and a half minutes.' })));
        } else {
          const relTime = (ms) => { const t = timeRel(ms); t.setAttribute('data-ms', String(ms)); return t; };
          out.push(el('div', { class: 'table-wrap' }, el('table', { testid: 'workers-table' },
            el('thead', {}, el('tr', {}, ['Worker', 'Queues', 'Running now', 'Concurrency', 'Started', 'Last seen'].map((t) => el('th', { text: t })))),
            el('tbody', {}, w.workers.map((x) => el('tr', { testid: `worker-${x.id}`, 'data-worker': x.id },
              el('td', {}, el('code', { text: x.id }), el('div', { class: 'muted small', text: `${x.host} · pid ${x.pid} · v${x.version}` })),
              el('td', {}, x.queues.map((q, i) => [i ? ', ' : '', el('a', { href: queueHref(q), text: q })])),
              el('td', { testid: `worker-jobs-${x.id}` }, x.jobs.length === 0 ? el('span', { class: 'muted', text: 'idle' })
                : el('ul', { class: 'plain' }, x.jobs.map((j) => el('li', {},
                  el('a', { href: jobHref(j.id), text: `#${j.id}` }),
                  j.name ? ` ${j.name} on ${j.queue}` : '',
                  j.started_at ? [' · started ', relTime(j.started_at)] : '')))),
              el('td', { class: 'num', text: `${x.jobs.length} / ${x.concurrency}` }),
              el('td', {}, relTime(x.started_at)),
              el('td', {}, relTime(x.last_seen))))))));
        }
        clear(main()).append(...out);
      },
    };
  }

  // ---------- a queue's groups ----------

  // Where a group stands: "may start", "full until a running job ends", "full, opens in 4 s".
  function groupState(g) {
    if (!g.at_limit) return el('span', { class: 'muted', text: 'may start' });
    if (g.next_start_at !== null) return el('span', {}, 'full, opens ', timeRel(g.next_start_at));
    return el('span', { text: 'full until a running job ends' });
  }

  function groupsView(queue, p) {
    const after = p.get('after') || '';
    let last = '';
    return {
      async refresh(force) {
        const seq = app.seq;
        const q = new URLSearchParams({ limit: '50' });
        if (after) q.set('after', after);
        const g = await api(`api/queues/${encodeURIComponent(queue)}/groups?${q}`);
        if (seq !== app.seq) return;
        document.title = `Groups of ${queue} · ${app.meta.title}`;
        const text = JSON.stringify([g.groups, g.limits, g.next]);
        if (text === last && force !== true) return;
        last = text;
        const out = [
          el('p', { class: 'small' }, el('a', { href: queueHref(queue), text: `← ${queue}` })),
          el('h1', {}, 'Groups of ', el('span', { testid: 'groups-queue', text: queue })),
          el('p', { class: 'muted', testid: 'groups-limits', text: g.limits ? limitsText(g.limits) : 'No group limits: groups only take turns.' }),
        ];
        if (g.groups.length === 0) {
          out.push(el('div', { class: 'empty', testid: 'groups-empty' },
            el('h2', { text: after ? 'No more groups' : `No group of ${queue} has a ready or running job` }),
            el('p', { text: 'Jobs enqueued with a group key (.with().group("user-42"), or #[job(group = field)]) show up here by group.' })));
        } else {
          out.push(el('div', { class: 'table-wrap' }, el('table', { testid: 'groups-table' },
            el('thead', {}, el('tr', {}, el('th', { text: 'Group' }), el('th', { class: 'num', text: 'Ready' }),
              el('th', { class: 'num', text: 'Running' }), el('th', { class: 'num', text: 'Starts in window' }), el('th', { text: 'State' }))),
            el('tbody', { testid: 'group-rows' }, g.groups.map((x) => el('tr', { 'data-group': x.group, class: x.at_limit ? 'at-limit' : null },
              el('td', {}, el('code', { text: x.group })),
              el('td', { class: 'num', text: `${fmt(x.ready.count)}${x.ready.exact ? '' : '+'}` }),
              el('td', { class: 'num', text: fmt(x.running) }),
              el('td', { class: 'num', text: g.limits && g.limits.group_rate ? fmt(x.starts_in_window) : '–' }),
              el('td', {}, groupState(x))))))));
        }
        const pager = el('div', { class: 'pager', testid: 'groups-pager' },
          el('span', { testid: 'groups-summary', text: `${plural(g.groups.length, 'group')} shown, ${fmt(g.groups.filter((x) => x.at_limit).length)} at the limit` }));
        if (after) pager.appendChild(el('a', { class: 'btn small', href: groupsHref(queue), testid: 'groups-first', text: 'First page' }));
        if (g.next !== null) pager.appendChild(el('a', { class: 'btn small', href: groupsHref(queue, g.next), testid: 'groups-next', text: 'Next page' }));
        out.push(pager);
        clear(main()).append(...out);
      },
    };
  }

  // ---------- schedules ----------

  // When a schedule fires, in words: "0 3 * * * (Asia/Kolkata)", "every 30 s".
  function everyText(e) {
    if (e && e.cron) return `${e.cron.expr} (${e.cron.tz})`;
    if (e && e.interval) return `every ${span(e.interval.ms)}`;
    return JSON.stringify(e);
  }

  // The policies in words: "missed: latest, overlap: skip".
  function policyText(s) {
    const m = s.missed || {};
    let missed = String(m.policy);
    if (m.policy === 'latest' && m.grace_ms !== null && m.grace_ms !== undefined) missed = `latest within ${span(m.grace_ms)}`;
    if (m.policy === 'all') missed = `all (at most ${fmt(m.max)})`;
    return `missed: ${missed}, overlap: ${s.overlap}`;
  }

  function schedulesView() {
    let last = '';

    async function act(s, op) {
      const path = `api/schedules/${encodeURIComponent(s.id)}/${op}`;
      if (op === 'delete' &&
        !await confirmDialog(`Remove schedule ${s.id}? It fires no more jobs; the jobs it enqueued stay. This cannot be undone.`, 'Remove')) return;
      try {
        const r = await post(path);
        if (op === 'pause') banner(`Schedule ${s.id} paused: it fires nothing until resumed.`);
        else if (op === 'resume') banner(`Schedule ${s.id} resumed${r.next_fire === null ? '' : `: next tick ${abs(r.next_fire)}`}.`);
        else if (op === 'trigger') banner(`Schedule ${s.id}: enqueued job ${r.job}.`);
        else banner(`Schedule ${s.id} removed.`);
        await view.refresh(true);
      } catch (e) { banner(e.message, true); }
    }

    function buttons(s) {
      const b = [];
      const btn = (op, label, cls) => el('button', {
        type: 'button', class: `btn small${cls ? ` ${cls}` : ''}`, testid: `schedule-${op}-${s.id}`,
        'data-op': op, text: label, onclick: () => act(s, op),
      });
      if (s.paused && allowed('resume_schedule')) b.push(btn('resume', 'Resume'));
      if (!s.paused && allowed('pause_schedule')) b.push(btn('pause', 'Pause'));
      if (allowed('trigger_schedule')) b.push(btn('trigger', 'Run now'));
      if (allowed('remove_schedule')) b.push(btn('delete', 'Delete…', 'danger'));
      return b.length ? el('div', { class: 'actions' }, b) : el('span', { class: 'muted', text: '–' });
    }

    function row(s) {
      const next = s.paused ? el('span', { class: 'muted', text: 'paused' })
        : s.next_fire === null ? el('span', { class: 'muted', text: 'ended' }) : timeBoth(s.next_fire);
      const status = s.paused
        ? el('span', { class: 'badge paused', testid: `schedule-paused-${s.id}`, text: 'paused' })
        : el('span', { class: 'badge', testid: `schedule-active-${s.id}`, text: s.next_fire === null ? 'ended' : 'active' });
      return el('tr', { testid: `schedule-${s.id}`, 'data-schedule': s.id },
        el('td', {}, el('code', { text: s.id }), ' ', status,
          el('details', { class: 'small' }, el('summary', { text: 'Payload' }),
            el('pre', { class: 'json', testid: `schedule-payload-${s.id}`, text: JSON.stringify(s.payload, null, 2) }))),
        el('td', { text: everyText(s.every) }),
        el('td', {}, el('code', { text: s.job }), ' on ', el('a', { href: queueHref(s.queue), text: s.queue })),
        el('td', { testid: `schedule-next-${s.id}` }, next),
        el('td', {}, s.last_fire === null ? el('span', { class: 'muted', text: 'never' }) : timeBoth(s.last_fire),
          s.last_job === null ? null : el('div', { class: 'small' }, el('a', { href: jobHref(s.last_job), text: `job #${s.last_job}` }))),
        el('td', { class: 'num', text: s.max_runs === null ? fmt(s.runs) : `${fmt(s.runs)} of ${fmt(s.max_runs)}` }),
        el('td', { class: 'small', text: policyText(s) }),
        el('td', {}, buttons(s)));
    }

    const view = {
      async refresh(force) {
        const seq = app.seq;
        const r = await api('api/schedules');
        if (seq !== app.seq) return;
        document.title = `Schedules · ${app.meta.title}`;
        const text = JSON.stringify(r.schedules);
        if (text === last && force !== true) {
          // Only the relative times move.
          for (const s of r.schedules) {
            const cell = main().querySelector(`td[data-testid="schedule-next-${CSS.escape(s.id)}"]`);
            if (cell && !s.paused && s.next_fire !== null) cell.replaceChildren(timeBoth(s.next_fire));
          }
          return;
        }
        last = text;
        const out = [el('h1', { text: 'Schedules' })];
        if (r.schedules.length === 0) {
          out.push(el('div', { class: 'empty', testid: 'schedules-empty' },
            el('h2', { text: 'No schedules' }),
            el('p', {}, 'Declare a periodic job on its type with ', el('code', { text: '#[job(cron = "0 3 * * *")]' }),
              ', or at run time with ', el('code', { text: 'Client::upsert_schedule' }), '.'),
            el('p', { class: 'muted', text: 'Schedules are stored in the job store: a worker running with the same store URL fires them.' })));
        } else {
          out.push(el('div', { class: 'table-wrap' }, el('table', { testid: 'schedules-table' },
            el('thead', {}, el('tr', {}, ['Schedule', 'Every', 'Job', 'Next', 'Last', 'Runs', 'Policies', 'Actions'].map((t) => el('th', { text: t })))),
            el('tbody', {}, r.schedules.map(row)))));
        }
        clear(main()).append(...out);
      },
    };
    return view;
  }

  // ---------- start ----------

  async function start() {
    $('live-toggle').addEventListener('click', toggleLive);
    $('banner-close').addEventListener('click', hideBanner);
    window.addEventListener('hashchange', () => { route(); });
    document.addEventListener('visibilitychange', () => { if (!document.hidden) tick(); });
    try {
      app.meta = await api('api/meta');
    } catch (e) {
      showLoadError(e);
      app.meta = { title: 'kosh-jobs', allowed: [], poll_ms: 5000, read_only: true };
      startPolling();
      return;
    }
    $('title').textContent = app.meta.title;
    document.title = app.meta.title;
    if (app.meta.backend) $('backend').textContent = app.meta.backend;
    if (app.meta.read_only) $('mode').hidden = false;
    startPolling();
    await route();
  }

  start();
}());
