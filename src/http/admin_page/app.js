// The operations page: signs an admin in, polls GET /api/v1/admin/dashboard every second
// and draws what it answers. No library and no build step: the binary serves this file as
// it is (src/http/admin_page/mod.rs).
//
// Every counter the endpoint sends is cumulative since the nodes started, so rates and
// windows come from successive snapshots kept here; a negative delta (a node restarted and
// its counters began again) counts as zero.
//
// The tokens live in this closure only: never in storage, a cookie or a URL, so closing the
// tab ends the session and nothing on disk can sign in again.
'use strict';

(() => {
  const API = '/api/v1';
  const POLL_MS = 1000;
  // A poll without an answer by then counts as lost: the next one starts on time.
  const REQUEST_TIMEOUT_MS = 4000;
  // Past this without a fresh snapshot the figures are marked as not live.
  const STALE_AFTER_MS = 2500;
  // Snapshots kept: the sparklines and the charts show the last minute.
  const HISTORY_MS = 60000;
  // The window of the latency quantiles and of the headline rates.
  const LATENCY_WINDOW_MS = 10000;
  const RATE_WINDOW_MS = 5000;
  // Height of one bar of a bar chart, in CSS pixels.
  const BAR_ROW_PX = 30;
  // Refresh the access token when this share of its lifetime has passed.
  const REFRESH_AT_SHARE = 0.75;
  const MIN_REFRESH_SECS = 5;

  const COLORS = {
    text: '#1f2937', muted: '#6b7280', grid: '#e5e7eb', accent: '#2563eb',
    accentFill: 'rgba(37, 99, 235, 0.14)', good: '#15803d', bad: '#b91c1c', warn: '#b45309',
    p99: '#c2410c', room: '#7c3aed', roomFill: 'rgba(124, 58, 237, 0.12)',
  };
  const FUNNEL_COLORS = ['#94a3b8', '#2563eb', '#0891b2', '#15803d'];
  const REFUSAL_COLORS = ['#b91c1c', '#c2410c', '#b45309', '#a16207', '#9d174d', '#6b21a8'];

  const $ = (id) => document.getElementById(id);

  // --- session -------------------------------------------------------------------------

  const session = { token: null, refreshToken: null, email: null, refreshTimer: null };
  // Bumped at every sign-in and sign-out: an answer that arrives for an older session is
  // dropped rather than drawn.
  let generation = 0;
  let pollTimer = null;

  async function postJson(path, body, token) {
    const headers = { 'content-type': 'application/json' };
    if (token) headers.authorization = `Bearer ${token}`;
    return fetch(API + path, {
      method: 'POST', headers, body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store', credentials: 'omit',
    });
  }

  async function errorMessage(response, fallback) {
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) return body.error.message;
    } catch (_) { /* not JSON: the fallback says it */ }
    return fallback;
  }

  async function signIn(email, password) {
    showSignInError(null);
    $('sign-in-button').disabled = true;
    try {
      const response = await postJson('/auth/login', { email, password });
      if (response.ok) {
        startSession(email, await response.json());
        return;
      }
      if (response.status === 401) {
        showSignInError('Wrong email or password.');
      } else if (response.status === 429) {
        const wait = response.headers.get('retry-after');
        showSignInError(`Too many attempts; try again${wait ? ` in ${wait} s` : ' later'}.`);
      } else {
        showSignInError(await errorMessage(response, `Sign-in failed (HTTP ${response.status}).`));
      }
    } catch (_) {
      showSignInError('The server cannot be reached.');
    } finally {
      $('sign-in-button').disabled = false;
    }
  }

  function startSession(email, pair) {
    generation += 1;
    session.email = email;
    takeTokens(pair);
    $('password').value = '';
    resetData();
    $('session-email').textContent = email;
    $('session').hidden = false;
    setStatus('connecting', 'connecting…');
    $('connecting-text').textContent = 'Loading the first figures…';
    show('connecting');
    poll(generation);
  }

  function takeTokens(pair) {
    session.token = pair.access_token;
    session.refreshToken = pair.refresh_token;
    clearTimeout(session.refreshTimer);
    const secs = Math.max(MIN_REFRESH_SECS, Number(pair.expires_in) * REFRESH_AT_SHARE);
    const mine = generation;
    session.refreshTimer = setTimeout(() => { refreshTokens(mine); }, secs * 1000);
  }

  // A new pair before the access token expires. Returns whether the session goes on. One
  // at a time: the server rotates refresh tokens and takes a second use of one as theft.
  let refreshing = null; // {mine, promise}
  function refreshTokens(mine) {
    if (!refreshing || refreshing.mine !== mine) {
      const promise = refreshOnce(mine).finally(() => {
        if (refreshing && refreshing.promise === promise) refreshing = null;
      });
      refreshing = { mine, promise };
    }
    return refreshing.promise;
  }

  async function refreshOnce(mine) {
    if (mine !== generation || !session.refreshToken) return false;
    try {
      const response = await postJson('/auth/refresh', { refresh_token: session.refreshToken });
      if (mine !== generation) return false;
      if (response.ok) {
        takeTokens(await response.json());
        return true;
      }
      if (response.status === 401) {
        endSession('Your session ended; sign in again.');
        return false;
      }
    } catch (_) { /* unreachable: the next poll shows it and tries again */ }
    // Not refused, only not answered: try again soon, while the old token may still work.
    if (mine === generation) {
      clearTimeout(session.refreshTimer);
      session.refreshTimer = setTimeout(() => { refreshTokens(mine); }, 2000);
    }
    return false;
  }

  // Forgets the tokens and every figure. `message` goes on the sign-in form.
  function endSession(message) {
    generation += 1;
    clearTimeout(session.refreshTimer);
    clearTimeout(pollTimer);
    session.token = null;
    session.refreshToken = null;
    session.email = null;
    resetData();
    $('session').hidden = true;
    setStatus('signed-out', 'signed out');
    show('sign-in');
    showSignInError(message);
  }

  // Ends the session on the server too (both tokens stop working), then here.
  function signOut(message) {
    const token = session.token;
    endSession(message);
    if (token) postJson('/auth/logout', undefined, token).catch(() => {});
  }

  function refuse() {
    const email = session.email;
    signOut(null);
    $('refusal-email').textContent = email || 'This account';
    show('refusal');
  }

  // --- polling -------------------------------------------------------------------------

  async function poll(mine) {
    if (mine !== generation) return;
    const started = Date.now();
    await pollOnce(mine, true);
    if (mine !== generation) return;
    pollTimer = setTimeout(() => { poll(mine); }, Math.max(0, POLL_MS - (Date.now() - started)));
  }

  async function pollOnce(mine, mayRefresh) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
    let response;
    try {
      response = await fetch(`${API}/admin/dashboard`, {
        headers: { authorization: `Bearer ${session.token}` },
        cache: 'no-store', credentials: 'omit', signal: controller.signal,
      });
    } catch (_) {
      if (mine === generation) connectionLost('no answer');
      return;
    } finally {
      clearTimeout(timer);
    }
    if (mine !== generation) return;
    if (response.ok) {
      let snapshot;
      try { snapshot = await response.json(); } catch (_) { connectionLost('unreadable answer'); return; }
      if (mine === generation) received(snapshot);
    } else if (response.status === 401) {
      // The access token expired or was revoked: one refresh, then the poll again. A
      // refused refresh has ended the session; one not answered is tried again shortly.
      if (!mayRefresh) endSession('Your session ended; sign in again.');
      else if (await refreshTokens(mine)) await pollOnce(mine, false);
      else if (mine === generation) connectionLost('the session could not be renewed yet');
    } else if (response.status === 403) {
      refuse();
    } else {
      connectionLost(`HTTP ${response.status}`);
    }
  }

  let lastFreshAt = 0; // client clock, ms: when the last snapshot arrived

  function received(snapshot) {
    lastFreshAt = Date.now();
    ingest(snapshot);
    show('dashboard');
    $('dashboard').classList.remove('stale');
    $('stale-banner').hidden = true;
    setStatus('live', 'live');
    render();
  }

  function connectionLost(why) {
    if (!session.token) return;
    if (!lastFreshAt) {
      setStatus('lost', 'connection lost, retrying…');
      $('connecting-text').textContent = `The dashboard did not answer (${why}); retrying every second…`;
      return;
    }
    markStale();
  }

  function markStale() {
    setStatus('lost', 'connection lost, retrying…');
    $('dashboard').classList.add('stale');
    $('stale-banner').hidden = false;
    $('stale-age').textContent = fmtAge(Date.now() - lastFreshAt);
  }

  // A poll that hangs is no answer either: the figures stop being called live.
  setInterval(() => {
    if (session.token && lastFreshAt && Date.now() - lastFreshAt > STALE_AFTER_MS) markStale();
  }, 500);

  // --- the snapshots and what is derived from them --------------------------------------

  let history = [];               // [{at, snap}], oldest first
  let productSeries = new Map();  // product id -> [{at, v}] units sold per second
  let latencySeries = [];         // [{at, p50, p99}] seconds, null without orders
  let roomSeries = [];            // [{at, waiting, rate}]

  function resetData() {
    history = [];
    productSeries = new Map();
    latencySeries = [];
    roomSeries = [];
    lastFreshAt = 0;
    $('products-body').replaceChildren();
    $('refused-body').replaceChildren();
    $('coupons').replaceChildren();
    $('payments').replaceChildren();
    $('nodes-body').replaceChildren();
    for (const el of document.querySelectorAll('#dashboard [data-testid]')) {
      if (!el.children.length && el.tagName !== 'CANVAS') el.textContent = '–';
    }
    for (const part of ['database', 'redis', 'broker']) {
      $(`health-${part}`).dataset.state = 'unknown';
      $(`health-${part}`).textContent = part;
    }
    $('dashboard').hidden = true;
  }

  const delta = (now, then) => Math.max(0, (now || 0) - (then || 0));
  const perSecond = (d, ms) => (ms > 0 ? (d * 1000) / ms : 0);
  const trim = (series, at) => { while (series.length && series[0].at < at - HISTORY_MS) series.shift(); };

  function ingest(snap) {
    const prev = history.length ? history[history.length - 1].snap : null;
    // Behind a load balancer two nodes' clocks may disagree a little: time never runs back.
    if (prev && snap.at <= prev.at) snap.at = prev.at + 1;
    history.push({ at: snap.at, snap });
    trim(history, snap.at);
    const dt = prev ? snap.at - prev.at : 0;

    const seen = new Set();
    for (const p of snap.products || []) {
      seen.add(p.id);
      const series = productSeries.get(p.id) || [];
      const before = prev && (prev.products || []).find((q) => q.id === p.id);
      if (before) series.push({ at: snap.at, v: perSecond(delta(p.sold, before.sold), dt) });
      trim(series, snap.at);
      productSeries.set(p.id, series);
    }
    for (const id of [...productSeries.keys()]) if (!seen.has(id)) productSeries.delete(id);

    const q = latencyQuantiles(snap);
    latencySeries.push({ at: snap.at, p50: q.p50, p99: q.p99 });
    trim(latencySeries, snap.at);

    const room = snap.waiting_room || {};
    const rate = prev ? perSecond(delta(room.admitted, (prev.waiting_room || {}).admitted), dt) : 0;
    roomSeries.push({ at: snap.at, waiting: room.waiting || 0, rate });
    trim(roomSeries, snap.at);
  }

  // The snapshot to measure a window of `ms` from: the newest one at least `ms` older than
  // the latest, else the oldest kept (the window is shorter just after sign-in).
  function baseFor(ms) {
    const latest = history[history.length - 1];
    let base = history[0];
    for (const h of history) {
      if (h.at <= latest.at - ms) base = h; else break;
    }
    return base === latest ? null : base;
  }

  function windowRate(pick, ms) {
    const base = baseFor(ms);
    if (!base) return null;
    const latest = history[history.length - 1];
    return perSecond(delta(pick(latest.snap), pick(base.snap)), latest.at - base.at);
  }

  // --- latency: histogram_quantile over bucket deltas ---------------------------------

  const upperBound = (le) => (le === null || le === undefined ? Infinity : Number(le));

  // The order endpoint's histogram over the window: cumulative bucket counts now minus the
  // same buckets at the window's start, per bucket (a reset counts as zero), then made
  // monotone again as Prometheus does before it interpolates.
  function windowBuckets(now, then) {
    const before = new Map();
    for (const b of (then && then.buckets) || []) before.set(upperBound(b.le), b.count);
    const buckets = ((now && now.buckets) || [])
      .map((b) => ({ le: upperBound(b.le), count: delta(b.count, before.get(upperBound(b.le))) }))
      .sort((a, b) => a.le - b.le);
    let running = 0;
    for (const b of buckets) { running = Math.max(running, b.count); b.count = running; }
    return buckets;
  }

  // The q-quantile of cumulative buckets ending with +Inf, in seconds, or null without
  // observations. Inside a bucket observations are taken as spread evenly; a rank in the
  // +Inf bucket answers the largest finite bound, as histogram_quantile does.
  function histogramQuantile(q, buckets) {
    const n = buckets.length;
    if (n < 2 || buckets[n - 1].le !== Infinity) return null;
    const total = buckets[n - 1].count;
    if (total <= 0) return null;
    const rank = q * total;
    let i = 0;
    while (i < n - 1 && buckets[i].count < rank) i += 1;
    if (i === n - 1) return buckets[n - 2].le;
    const upper = buckets[i].le;
    const lower = i > 0 ? buckets[i - 1].le : 0;
    const below = i > 0 ? buckets[i - 1].count : 0;
    if (i === 0 && upper <= 0) return upper;
    const inside = buckets[i].count - below;
    return inside > 0 ? lower + ((upper - lower) * (rank - below)) / inside : upper;
  }

  function latencyQuantiles(snap) {
    const base = baseFor(LATENCY_WINDOW_MS);
    if (!base) return { p50: null, p99: null, count: 0, windowMs: 0 };
    const buckets = windowBuckets(snap.latency, base.snap.latency);
    const count = buckets.length ? buckets[buckets.length - 1].count : 0;
    return {
      p50: histogramQuantile(0.5, buckets),
      p99: histogramQuantile(0.99, buckets),
      count,
      windowMs: snap.at - base.at,
    };
  }

  // --- rendering -----------------------------------------------------------------------

  function render() {
    const snap = history[history.length - 1].snap;
    renderHeadline(snap);
    renderProducts(snap);
    renderFunnel(snap.orders || {});
    renderRefusals(snap.orders || {});
    renderLatency(snap);
    renderRoom(snap.waiting_room || {});
    renderCoupons(snap.coupons || []);
    renderPayments(snap.payments || {});
    renderEvents(snap.events || {});
    renderNodes(snap);
    renderHealth(snap.health || {});
    $('updated-at').textContent = new Date(snap.at).toLocaleTimeString('en-GB');
  }

  const refusedTotal = (orders) =>
    Object.values(orders.refused || {}).reduce((a, b) => a + (Number(b) || 0), 0);

  function setText(id, text) { $(id).textContent = text; }

  function renderHeadline(snap) {
    const orders = snap.orders || {};
    setText('kpi-placed', fmtInt(orders.placed));
    setText('kpi-refused', fmtInt(refusedTotal(orders)));
    setText('kpi-placed-rate', fmtRate(windowRate((s) => (s.orders || {}).placed, RATE_WINDOW_MS)));
    setText('kpi-refused-rate', fmtRate(windowRate((s) => refusedTotal(s.orders || {}), RATE_WINDOW_MS)));
  }

  function renderProducts(snap) {
    const body = $('products-body');
    const rows = new Map([...body.children].map((tr) => [tr.dataset.id, tr]));
    const products = snap.products || [];
    products.forEach((p, index) => {
      const key = String(p.id);
      let tr = rows.get(key);
      if (!tr) tr = productRow(p.id);
      rows.delete(key);
      if (body.children[index] !== tr) body.insertBefore(tr, body.children[index] || null);
      fillProductRow(tr, p);
    });
    for (const tr of rows.values()) tr.remove();
    $('products-empty').hidden = products.length > 0;
  }

  function cell(tr, className, testid) {
    const td = document.createElement('td');
    if (className) td.className = className;
    if (testid) td.dataset.testid = testid;
    tr.appendChild(td);
    return td;
  }

  function productRow(id) {
    const tr = document.createElement('tr');
    tr.dataset.id = String(id);
    tr.dataset.testid = `product-${id}`;
    const name = cell(tr, 'name');
    const title = document.createElement('div');
    title.className = 'title';
    title.dataset.testid = `product-${id}-name`;
    const sub = document.createElement('div');
    sub.className = 'muted small';
    name.append(title, sub);
    for (const field of ['on_hand', 'held', 'available', 'sold']) {
      cell(tr, `num ${field}`, `product-${id}-${field}`);
    }
    const bar = cell(tr, 'stockbar');
    const track = document.createElement('div');
    track.className = 'track stock';
    for (const part of ['paid', 'held', 'available']) {
      const seg = document.createElement('span');
      seg.className = `seg ${part}`;
      track.appendChild(seg);
    }
    bar.appendChild(track);
    const spark = cell(tr, 'spark');
    const canvas = document.createElement('canvas');
    canvas.dataset.testid = `product-${id}-sparkline`;
    spark.appendChild(canvas);
    return tr;
  }

  function fillProductRow(tr, p) {
    const [nameCell, onHand, held, available, sold, bar, spark] = tr.children;
    nameCell.children[0].textContent = p.name;
    nameCell.children[1].textContent = `#${p.id} · ${fmtWon(p.price)}`;
    onHand.textContent = fmtInt(p.on_hand);
    held.textContent = fmtInt(p.held);
    available.textContent = fmtInt(p.available);
    available.classList.toggle('out', Number(p.available) === 0);
    sold.textContent = fmtInt(p.sold);
    // The bar is every unit the product has had: paid for (`sold` counts held units too),
    // held by orders awaiting payment, and still available.
    const [segPaid, segHeld, segAvail] = bar.firstChild.children;
    const heldNow = Math.max(0, Number(p.held) || 0);
    const paid = Math.max(0, (Number(p.sold) || 0) - heldNow);
    const left = Math.max(0, Number(p.available) || 0);
    const whole = Math.max(1, paid + heldNow + left);
    segPaid.style.width = `${(100 * paid) / whole}%`;
    segHeld.style.width = `${(100 * heldNow) / whole}%`;
    segAvail.style.width = `${(100 * left) / whole}%`;
    bar.title = `${fmtInt(paid)} paid, ${fmtInt(heldNow)} held, ${fmtInt(left)} available`;
    const series = productSeries.get(p.id) || [];
    const last = series.length ? series[series.length - 1].v : 0;
    spark.title = `${fmtRate(last)} units/s now`;
    drawSparkline(spark.firstChild, series);
  }

  function renderFunnel(orders) {
    const steps = ['attempted', 'placed', 'paid', 'confirmed'];
    for (const s of steps) setText(`funnel-${s}`, fmtInt(orders[s]));
    setText('funnel-cancelled', fmtInt(orders.cancelled));
    const top = Number(orders.attempted) || 0;
    drawHBars($('funnel-chart'), steps.map((s, i) => ({
      label: s,
      value: Number(orders[s]) || 0,
      note: top > 0 && i > 0 ? `${fmtPct((Number(orders[s]) || 0) / top)}` : '',
      color: FUNNEL_COLORS[i],
    })));
  }

  function renderRefusals(orders) {
    const reasons = Object.entries(orders.refused || {})
      .map(([reason, total]) => ({ reason, total: Number(total) || 0 }))
      .sort((a, b) => b.total - a.total || a.reason.localeCompare(b.reason));
    const body = $('refused-body');
    body.replaceChildren();
    reasons.forEach(({ reason, total }) => {
      const rate = windowRate((s) => ((s.orders || {}).refused || {})[reason], RATE_WINDOW_MS);
      const tr = document.createElement('tr');
      const name = cell(tr, 'reason');
      name.textContent = reason;
      cell(tr, 'num', `refused-${reason}`).textContent = fmtInt(total);
      cell(tr, 'num', `refused-${reason}-rate`).textContent = fmtRate(rate);
      body.appendChild(tr);
    });
    $('refused-empty').hidden = reasons.length > 0;
    $('refused-chart').hidden = reasons.length === 0;
    if (reasons.length) {
      drawHBars($('refused-chart'), reasons.map((r, i) => ({
        label: r.reason, value: r.total, color: REFUSAL_COLORS[i % REFUSAL_COLORS.length],
      })));
    }
  }

  function renderLatency(snap) {
    const q = latencyQuantiles(snap);
    setText('latency-p50', fmtSeconds(q.p50));
    setText('latency-p99', fmtSeconds(q.p99));
    const secs = Math.round(q.windowMs / 1000);
    setText('latency-count', q.windowMs ? `${fmtInt(q.count)} orders in ${secs} s` : 'measuring…');
    drawLines($('latency-chart'), [
      { points: latencySeries.map((p) => ({ at: p.at, v: p.p50 })), color: COLORS.accent },
      { points: latencySeries.map((p) => ({ at: p.at, v: p.p99 })), color: COLORS.p99 },
    ], fmtAxisSeconds, ['p50', 'p99']);
  }

  function renderRoom(room) {
    setText('room-waiting', fmtInt(room.waiting));
    setText('room-waiting-2', fmtInt(room.waiting));
    setText('room-entered', fmtInt(room.entered));
    setText('room-admitted', fmtInt(room.admitted));
    setText('room-full', fmtInt(room.full));
    setText('room-rate', fmtRate(windowRate((s) => (s.waiting_room || {}).admitted, RATE_WINDOW_MS)));
    drawLines($('room-chart'), [
      { points: roomSeries.map((p) => ({ at: p.at, v: p.waiting })), color: COLORS.room, fill: COLORS.roomFill },
      { points: roomSeries.map((p) => ({ at: p.at, v: p.rate })), color: COLORS.good },
    ], fmtRate, ['waiting', 'admitted/s']);
  }

  function meterItem(testid, label, value, share, tone) {
    const li = document.createElement('li');
    const head = document.createElement('div');
    head.className = 'row';
    const name = document.createElement('span');
    name.textContent = label;
    const figure = document.createElement('span');
    figure.className = 'num';
    figure.dataset.testid = testid;
    figure.textContent = value;
    head.append(name, figure);
    const track = document.createElement('div');
    track.className = 'track';
    const fill = document.createElement('span');
    fill.className = `fill ${tone || ''}`;
    fill.style.width = `${Math.max(0, Math.min(1, share)) * 100}%`;
    track.appendChild(fill);
    li.append(head, track);
    return li;
  }

  function renderCoupons(coupons) {
    $('coupons').replaceChildren(...coupons.map((c) => {
      const total = Number(c.total) || 0;
      const issued = Number(c.issued) || 0;
      const li = meterItem(`coupon-${c.id}-issued`, c.name, `${fmtInt(issued)} / ${fmtInt(total)}`,
        total > 0 ? issued / total : 0, issued >= total && total > 0 ? 'done' : '');
      return li;
    }));
    $('coupons-empty').hidden = coupons.length > 0;
  }

  function renderPayments(payments) {
    const entries = Object.entries(payments).map(([k, v]) => [k, Number(v) || 0])
      .sort((a, b) => b[1] - a[1]);
    const all = entries.reduce((a, [, v]) => a + v, 0);
    $('payments').replaceChildren(...entries.map(([outcome, n]) =>
      meterItem(`payments-${outcome}`, outcome, fmtInt(n), all ? n / all : 0,
        outcome === 'approved' ? 'good' : 'bad')));
    $('payments-empty').hidden = entries.length > 0;
  }

  function renderEvents(events) {
    setText('events-outbox', fmtInt(events.outbox_pending));
    setText('events-lag', fmtInt(events.relay_lag_events));
    setText('events-dead', fmtInt(events.dead_letters));
    $('events-dead').classList.toggle('bad', Number(events.dead_letters) > 0);
  }

  function renderNodes(snap) {
    const body = $('nodes-body');
    body.replaceChildren(...(snap.nodes || []).map((n) => {
      const tr = document.createElement('tr');
      tr.dataset.testid = `node-${n.id}`;
      cell(tr, 'mono').textContent = n.id;
      const state = !n.alive ? 'gone' : n.draining ? 'draining' : 'alive';
      const pill = document.createElement('span');
      pill.className = 'pill';
      pill.dataset.state = { alive: 'up', draining: 'warn', gone: 'down' }[state];
      pill.textContent = state;
      cell(tr, '', `node-${n.id}-state`).appendChild(pill);
      cell(tr, 'num').textContent = fmtAge(snap.at - n.seen_at);
      cell(tr, 'num').textContent = fmtDuration(snap.at - n.started_at);
      return tr;
    }));
  }

  function renderHealth(health) {
    for (const part of ['database', 'redis', 'broker']) {
      const el = $(`health-${part}`);
      const state = health[part] || 'unknown';
      el.dataset.state = state;
      el.title = `${part}: ${state}`;
      el.textContent = `${part} ${state}`;
    }
  }

  // --- charts --------------------------------------------------------------------------

  // What a chart shows, for screen readers (a canvas is only pixels).
  function describe(canvas, summary) {
    canvas.setAttribute('role', 'img');
    canvas.setAttribute('aria-label', summary);
  }

  // Sizes the canvas for its box and the screen's pixel ratio; draws in CSS pixels.
  function fit(canvas) {
    const ratio = window.devicePixelRatio || 1;
    const w = Math.max(1, canvas.clientWidth);
    const h = Math.max(1, canvas.clientHeight);
    if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(h * ratio)) {
      canvas.width = Math.round(w * ratio);
      canvas.height = Math.round(h * ratio);
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.font = '12px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
    ctx.textBaseline = 'middle';
    return { ctx, w, h };
  }

  // Labelled horizontal bars, scaled to the largest value; the canvas grows with the rows.
  function drawHBars(canvas, items) {
    canvas.style.height = `${Math.max(1, items.length) * BAR_ROW_PX + 4}px`;
    describe(canvas, items.map((i) => `${i.label} ${fmtInt(i.value)}`).join(', '));
    const { ctx, w, h } = fit(canvas);
    const labelW = Math.min(130, w * 0.32);
    const valueW = 110;
    const rowH = h / Math.max(1, items.length);
    const barH = Math.min(22, rowH * 0.62);
    const max = Math.max(1, ...items.map((i) => i.value));
    items.forEach((item, i) => {
      const y = i * rowH + rowH / 2;
      ctx.fillStyle = COLORS.text;
      ctx.textAlign = 'left';
      ctx.fillText(item.label, 0, y, labelW - 8);
      const span = Math.max(0, w - labelW - valueW);
      const len = item.value > 0 ? Math.max(2, (span * item.value) / max) : 0;
      ctx.fillStyle = COLORS.grid;
      roundRect(ctx, labelW, y - barH / 2, span, barH, 3);
      ctx.fillStyle = item.color;
      if (len) roundRect(ctx, labelW, y - barH / 2, len, barH, 3);
      ctx.fillStyle = COLORS.text;
      ctx.fillText(fmtInt(item.value) + (item.note ? `  (${item.note})` : ''), labelW + span + 8, y);
    });
  }

  function roundRect(ctx, x, y, w, h, r) {
    const rr = Math.min(r, w / 2, h / 2);
    ctx.beginPath();
    ctx.moveTo(x + rr, y);
    ctx.arcTo(x + w, y, x + w, y + h, rr);
    ctx.arcTo(x + w, y + h, x, y + h, rr);
    ctx.arcTo(x, y + h, x, y, rr);
    ctx.arcTo(x, y, x + w, y, rr);
    ctx.closePath();
    ctx.fill();
  }

  // The last minute of one product's orders per second, scaled to its own peak.
  function drawSparkline(canvas, series) {
    const { ctx, w, h } = fit(canvas);
    const now = series.length ? series[series.length - 1].v : 0;
    describe(canvas, `units sold per second over the last minute; now ${fmtRate(now)}`);
    const latest = history.length ? history[history.length - 1].at : 0;
    const x = (at) => w - ((latest - at) / HISTORY_MS) * w;
    const max = Math.max(1, ...series.map((p) => p.v));
    const y = (v) => h - 2 - (v / max) * (h - 6);
    ctx.strokeStyle = COLORS.grid;
    ctx.beginPath(); ctx.moveTo(0, h - 1.5); ctx.lineTo(w, h - 1.5); ctx.stroke();
    if (series.length < 2) return;
    ctx.beginPath();
    ctx.moveTo(x(series[0].at), h - 2);
    for (const p of series) ctx.lineTo(x(p.at), y(p.v));
    ctx.lineTo(x(series[series.length - 1].at), h - 2);
    ctx.closePath();
    ctx.fillStyle = COLORS.accentFill;
    ctx.fill();
    ctx.beginPath();
    series.forEach((p, i) => (i ? ctx.lineTo(x(p.at), y(p.v)) : ctx.moveTo(x(p.at), y(p.v))));
    ctx.strokeStyle = COLORS.accent;
    ctx.lineWidth = 1.5;
    ctx.stroke();
    ctx.fillStyle = COLORS.muted;
    ctx.textAlign = 'left';
    ctx.textBaseline = 'top';
    ctx.fillText(`peak ${fmtRate(max)}/s`, 2, 1);
  }

  // Lines over the last minute with a zero-based axis; a null value breaks its line.
  function drawLines(canvas, lines, format, names) {
    const { ctx, w, h } = fit(canvas);
    describe(canvas, lines.map((l, i) => {
      const last = l.points.length ? l.points[l.points.length - 1].v : null;
      return `${(names || [])[i] || 'value'} now ${last === null ? 'none' : format(last)}`;
    }).join(', '));
    const left = 64; const bottom = 18; const top = 8;
    const plotW = w - left - 4; const plotH = h - top - bottom;
    const latest = history.length ? history[history.length - 1].at : 0;
    const values = lines.flatMap((l) => l.points.map((p) => p.v)).filter((v) => v !== null);
    const max = niceCeiling(Math.max(0, ...values));
    const x = (at) => left + plotW - ((latest - at) / HISTORY_MS) * plotW;
    const y = (v) => top + plotH - (max > 0 ? (v / max) * plotH : 0);
    ctx.strokeStyle = COLORS.grid;
    ctx.fillStyle = COLORS.muted;
    ctx.textAlign = 'right';
    ctx.lineWidth = 1;
    for (let i = 0; i <= 2; i += 1) {
      const v = (max * i) / 2;
      ctx.beginPath(); ctx.moveTo(left, y(v)); ctx.lineTo(left + plotW, y(v)); ctx.stroke();
      ctx.fillText(max > 0 || i === 0 ? format(v) : '', left - 6, y(v));
    }
    ctx.textAlign = 'center';
    for (const s of [60, 30, 0]) {
      ctx.fillText(s ? `−${s} s` : 'now', Math.min(left + plotW - 12, x(latest - s * 1000) + (s === 60 ? 14 : 0)), h - 8);
    }
    lines.forEach((line) => {
      const pts = line.points.filter((p) => p.at >= latest - HISTORY_MS);
      if (line.fill) fillUnder(ctx, pts, x, y, top + plotH, line.fill);
      ctx.strokeStyle = line.color;
      ctx.lineWidth = 1.8;
      ctx.beginPath();
      let drawing = false;
      for (const p of pts) {
        if (p.v === null) { drawing = false; continue; }
        if (drawing) ctx.lineTo(x(p.at), y(p.v)); else ctx.moveTo(x(p.at), y(p.v));
        drawing = true;
      }
      ctx.stroke();
    });
    if (names) {
      ctx.textAlign = 'left';
      let lx = left + 8;
      lines.forEach((line, i) => {
        ctx.fillStyle = line.color;
        ctx.fillRect(lx, top + 4, 10, 3);
        ctx.fillStyle = COLORS.text;
        ctx.fillText(names[i], lx + 14, top + 6);
        lx += ctx.measureText(names[i]).width + 30;
      });
    }
  }

  function fillUnder(ctx, pts, x, y, base, color) {
    const shown = pts.filter((p) => p.v !== null);
    if (shown.length < 2) return;
    ctx.beginPath();
    ctx.moveTo(x(shown[0].at), base);
    for (const p of shown) ctx.lineTo(x(p.at), y(p.v));
    ctx.lineTo(x(shown[shown.length - 1].at), base);
    ctx.closePath();
    ctx.fillStyle = color;
    ctx.fill();
  }

  // 1, 2 or 5 times a power of ten, at or above v: round numbers on the axis.
  function niceCeiling(v) {
    if (!(v > 0)) return 0;
    const power = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 5, 10]) if (m * power >= v) return m * power;
    return 10 * power;
  }

  // --- formatting ----------------------------------------------------------------------

  function fmtInt(n) {
    if (n === null || n === undefined || Number.isNaN(Number(n))) return '–';
    return Number(n).toLocaleString('en-US');
  }
  function fmtRate(r) {
    if (r === null || r === undefined) return '–';
    if (r === 0) return '0';
    return r < 10 ? r.toFixed(1) : Math.round(r).toLocaleString('en-US');
  }
  function fmtPct(share) { return `${(share * 100).toFixed(share < 0.1 ? 1 : 0)}%`; }
  function fmtWon(n) { return `₩${fmtInt(n)}`; }
  function fmtSeconds(s) {
    if (s === null || s === undefined) return '–';
    if (s === 0) return '0';
    const ms = s * 1000;
    if (ms < 10) return `${ms.toFixed(2)} ms`;
    if (ms < 100) return `${ms.toFixed(1)} ms`;
    if (ms < 1000) return `${Math.round(ms)} ms`;
    return `${s.toFixed(2)} s`;
  }
  // Axis labels: three significant digits at most, no trailing zeros ("50 ms", "2.5 ms").
  function fmtAxisSeconds(s) {
    if (!s) return '0';
    return s < 1 ? `${Number((s * 1000).toPrecision(3))} ms` : `${Number(s.toPrecision(3))} s`;
  }
  function fmtAge(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    return `${Math.floor(s / 3600)} h ago`;
  }
  function fmtDuration(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
    return `${Math.floor(s / 86400)} d`;
  }

  // --- views ---------------------------------------------------------------------------

  function show(view) {
    $('sign-in').hidden = view !== 'sign-in';
    $('connecting').hidden = view !== 'connecting';
    $('refusal').hidden = view !== 'refusal';
    $('dashboard').hidden = view !== 'dashboard';
  }

  function showSignInError(message) {
    const el = $('sign-in-error');
    el.textContent = message || '';
    el.hidden = !message;
  }

  function setStatus(state, text) {
    $('status').dataset.state = state;
    $('status-text').textContent = text;
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('sign-in-form').addEventListener('submit', (event) => {
      event.preventDefault();
      signIn($('email').value.trim(), $('password').value);
    });
    $('sign-out').addEventListener('click', () => signOut(null));
    $('refusal-back').addEventListener('click', () => { show('sign-in'); $('email').focus(); });
    // Redraw the charts at the new size rather than stretched.
    window.addEventListener('resize', () => { if (history.length) render(); });
    show('sign-in');
  });

  // For scripts/browser/quantile.test.mjs, which runs this file under Node to check the
  // arithmetic; a browser has no `module`, and the page exports nothing.
  if (typeof module === 'object' && module) module.exports = { histogramQuantile, windowBuckets };
})();
