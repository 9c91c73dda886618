// The operations page in a real browser (issue 13), run by scripts/browser-test.sh against a
// server it started: Debian's Chromium, driven by playwright-core.
//
//  1. An admin signs in on /admin (a wrong password first is refused); the page goes live,
//     and the tokens are nowhere but in the page's memory (no storage, no cookie, not in
//     the URL).
//  2. While the page is open, a seller lists a product of STOCK units and the buyers (one
//     token each in BUYER_TOKENS) order one each over the API, in quick waves of four.
//     Exactly STOCK orders must be placed, the rest refused `out_of_stock`.
//  3. The page shows the product's `available` fall to 0 and `sold` reach STOCK, and the
//     refusal chart counts `out_of_stock`. Then some buyers pay (two are declined) and
//     take coupons of a new campaign, and the page shows the paid orders, the payments by
//     outcome and the campaign's `issued / total`. The access token (short-lived here)
//     was refreshed without the page losing its session. A screenshot is saved.
//     Then the server is paused (SIGSTOP): the page says "connection lost" and greys its
//     figures out, and goes live again by itself when the server resumes.
//  4. A buyer signs in on a fresh page: "admin only", and no figure on the page.
//
// One PASS line per check; the first failure prints FAIL with what was seen, saves a
// screenshot of the page as it was, and exits 1.

import { chromium } from 'playwright-core';
import { mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`FAIL setup: ${name} is not set (scripts/browser-test.sh sets it)`);
    process.exit(2);
  }
  return value;
}

const BASE = required('STAMPEDE_URL');
const ADMIN = { email: required('ADMIN_EMAIL'), password: required('ADMIN_PASSWORD') };
const BUYER = { email: required('BUYER_EMAIL'), password: required('BUYER_PASSWORD') };
const TOKENS = readFileSync(required('BUYER_TOKENS'), 'utf8').split('\n').filter(Boolean);
const STOCK = Number(process.env.STOCK || 20);
const ARTIFACTS = resolve(process.env.ARTIFACTS_DIR || 'bench-out/browser');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
// The server's process, paused for a moment to take the connection away (optional).
const SERVER_PID = Number(process.env.SERVER_PID || 0);
// Buyers per wave of the drop, and the pause between waves.
const WAVE = 4;
const WAVE_PAUSE_MS = 350;
// Of the orders placed, this many are paid, and this many payments declined.
const PAID = Math.min(12, STOCK);
const DECLINED = Math.min(2, STOCK - PAID);
// A coupon campaign of CAMPAIGN coupons, of which ISSUED are taken by the buyers.
const CAMPAIGN = 50;
const ISSUED = Math.min(30, TOKENS.length);
// How long the page may take to show what the API already did.
const PAGE_WAIT_MS = 20000;
// The whole run, past which something hangs.
const RUN_LIMIT_MS = 100000;

const pages = [];
let passed = 0;

function pass(name, detail) {
  passed += 1;
  console.log(`  PASS ${name}${detail ? `: ${detail}` : ''}`);
}

class Failure extends Error {}
function check(ok, name, detail) {
  if (!ok) throw new Failure(`${name}: ${detail}`);
  pass(name, detail);
}

// --- the API, as the drop's clients use it ---------------------------------------------

async function api(method, path, { token, body, key } = {}) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (key) headers['idempotency-key'] = key;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(`${BASE}/api/v1${path}`, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { json = text; }
  return { status: response.status, body: json };
}

async function expectStatus(promise, status, what) {
  const reply = await promise;
  if (reply.status !== status) {
    throw new Failure(`${what}: HTTP ${reply.status} ${JSON.stringify(reply.body)}`);
  }
  return reply.body;
}

async function login({ email, password }) {
  const body = await expectStatus(api('POST', '/auth/login', { body: { email, password } }), 200,
    `login ${email}`);
  return body.access_token;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// One buyer's attempt, followed through the waiting room if the writers were busy:
// {outcome: 'placed' or the refusal's code, order, token}.
async function attempt(token, productId, i) {
  const reply = await api('POST', '/orders', {
    token, key: `browser-drop-${i}`, body: { items: [{ product_id: productId, quantity: 1 }] },
  });
  if (reply.status === 201) return { outcome: 'placed', order: reply.body, token };
  if (reply.status === 202) return { ...(await followTicket(token, reply.body.ticket)), token };
  const code = reply.body && reply.body.error ? reply.body.error.code : `http_${reply.status}`;
  return { outcome: code, token };
}

async function followTicket(token, ticket) {
  const deadline = Date.now() + PAGE_WAIT_MS;
  while (Date.now() < deadline) {
    const { status, body } = await api('GET', `/queue/${ticket}`, { token });
    if (status !== 200) return { outcome: `ticket_http_${status}` };
    if (body.status === 'placed' || body.status === 'replayed') {
      return { outcome: 'placed', order: body.order };
    }
    if (body.status === 'rejected') return { outcome: body.error.code };
    if (body.status === 'failed') return { outcome: 'failed' };
    await sleep(200);
  }
  return { outcome: 'ticket_unresolved' };
}

// The buyers arrive in waves a little apart, so the page's sparkline has a shape.
async function drop(productId) {
  const outcomes = [];
  for (let start = 0; start < TOKENS.length; start += WAVE) {
    const wave = TOKENS.slice(start, start + WAVE);
    outcomes.push(...await Promise.all(wave.map((t, j) => attempt(t, productId, start + j))));
    await sleep(WAVE_PAUSE_MS);
  }
  return outcomes;
}

// The simulated gateway approves any key of the client's own, and declines one that
// starts with "decline" (README, Payments).
async function pay(placed, approved, declined) {
  const replies = await Promise.all(placed.slice(0, approved + declined).map(({ order, token }, i) =>
    api('POST', `/orders/${order.id}/pay`, {
      token,
      body: { payment_key: `${i < approved ? 'browser-pay' : 'decline'}-${order.id}`, amount: order.payable },
    })));
  return replies.map((r) => r.status);
}

// --- the page --------------------------------------------------------------------------

async function openPage(browser, name) {
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const page = await context.newPage();
  const seen = { problems: [], refreshed: 0, dashboard: [] };
  page.on('pageerror', (e) => seen.problems.push(`script error: ${e.message}`));
  page.on('console', (m) => {
    // A blocked resource or inline code would mean the page breaks its own policy.
    if (/Content Security Policy|Refused to/i.test(m.text())) seen.problems.push(m.text());
  });
  page.on('response', (r) => {
    const url = r.url();
    if (url.endsWith('/api/v1/auth/refresh') && r.status() === 200) seen.refreshed += 1;
    if (url.endsWith('/api/v1/admin/dashboard')) seen.dashboard.push(r.status());
  });
  pages.push({ name, page });
  const reply = await page.goto(`${BASE}/admin`);
  check(reply && reply.status() === 200, `${name}: /admin loads`, `HTTP ${reply && reply.status()}`);
  return { page, seen };
}

async function signIn(page, { email, password }) {
  await page.fill('#email', email);
  await page.fill('#password', password);
  await page.click('#sign-in-button');
}

const text = async (page, testid) =>
  ((await page.locator(`[data-testid="${testid}"]`).first().textContent()) || '').trim();
const number = (s) => Number(String(s).replace(/,/g, ''));

// Waits until the element shows `want` (a string, or a predicate of its text).
async function shows(page, testid, want, what) {
  const ok = typeof want === 'function' ? want : (t) => t === String(want);
  const deadline = Date.now() + PAGE_WAIT_MS;
  let last = '';
  while (Date.now() < deadline) {
    last = await text(page, testid).catch(() => '');
    if (ok(last)) return last;
    await page.waitForTimeout(200);
  }
  throw new Failure(`${what}: [data-testid=${testid}] shows "${last}" after ${PAGE_WAIT_MS} ms`);
}

// Waits until `selector` is visible; a failure says what the page's status showed.
async function visible(page, selector, what, timeout = PAGE_WAIT_MS) {
  try {
    await page.waitForSelector(selector, { state: 'visible', timeout });
  } catch (_) {
    const status = await text(page, 'status').catch(() => '?');
    const note = await page.locator('#connecting-text, #sign-in-error').allInnerTexts()
      .then((t) => t.filter(Boolean).join(' ')).catch(() => '');
    throw new Failure(`${what}: not within ${timeout} ms (status "${status}"${note ? `; "${note}"` : ''})`);
  }
}

// --- the run ---------------------------------------------------------------------------

async function adminWatchesADrop(browser) {
  const { page, seen } = await openPage(browser, 'admin');
  await signIn(page, { email: ADMIN.email, password: 'not-the-password' });
  await visible(page, '[data-testid="sign-in-error"]', 'admin: a wrong password is said so');
  check(/wrong email or password/i.test(await text(page, 'sign-in-error')) &&
    await page.locator('[data-testid="dashboard"]').isHidden(),
  'admin: a wrong password is refused', await text(page, 'sign-in-error'));
  await signIn(page, ADMIN);
  await visible(page, '[data-testid="status"][data-state="live"]', 'admin: the page goes live');
  await visible(page, '[data-testid="dashboard"]', 'admin: the dashboard shows');
  pass('admin: the page goes live', await text(page, 'status'));
  const kept = await page.evaluate(() => ({
    storage: localStorage.length + sessionStorage.length, cookie: document.cookie, url: location.href,
  }));
  check(kept.storage === 0 && kept.cookie === '' && kept.url === `${BASE}/admin`,
    'admin: tokens in memory only', JSON.stringify(kept));

  // The drop: a seller of a new partner lists the product while the page is open.
  const admin = await login(ADMIN);
  const partner = await expectStatus(api('POST', '/partners', {
    token: admin, body: { name: 'Browser Test Kicks', commission_rate_bps: 1000 },
  }), 201, 'create partner');
  const seller = { email: `seller-${Date.now()}@browser-test.invalid`, password: 'seller-pass-1' };
  await expectStatus(api('POST', `/partners/${partner.id}/sellers`, { token: admin, body: seller }),
    201, 'create seller');
  const product = await expectStatus(api('POST', '/products', {
    token: await login(seller),
    body: { name: 'Browser Drop Sneaker', price: 129000, stock: STOCK, max_per_user: 1 },
  }), 201, 'create product');
  const id = product.id;
  await shows(page, `product-${id}-available`, STOCK, 'the new product on the page');
  pass('admin: the product appears', `#${id}, available ${STOCK}`);

  const outcomes = await drop(id);
  const tally = {};
  for (const { outcome } of outcomes) tally[outcome] = (tally[outcome] || 0) + 1;
  check(tally.placed === STOCK && tally.placed + (tally.out_of_stock || 0) === TOKENS.length,
    'drop: exactly the stock sold, the rest out_of_stock', JSON.stringify(tally));

  await shows(page, `product-${id}-available`, '0', 'available after the drop');
  await shows(page, `product-${id}-sold`, String(STOCK), 'sold after the drop');
  pass('admin: the page shows the drop sold out', `available 0, sold ${STOCK}`);
  if (TOKENS.length > STOCK) {
    // A fresh server: its counters hold this drop's refusals and nothing else.
    const refused = await shows(page, 'refused-out_of_stock', String(tally.out_of_stock),
      'the out_of_stock bar');
    pass('admin: refusals by reason', `out_of_stock ${refused}`);
  }
  const placed = await shows(page, 'funnel-placed', (t) => number(t) >= STOCK, 'the funnel');
  pass('admin: the funnel counts the orders', `placed ${placed}`);

  // Some buyers pay (two are declined), and a coupon campaign is half taken.
  const paid = await pay(outcomes.filter((o) => o.outcome === 'placed'), PAID, DECLINED);
  check(paid.filter((s) => s === 200).length === PAID && paid.filter((s) => s === 402).length === DECLINED,
    'drop: payments approved and declined', paid.join(','));
  const campaign = await expectStatus(api('POST', '/coupons', {
    token: admin,
    body: { name: 'Drop day 10%', discount_type: 'percent', discount_value: 10, total_quantity: CAMPAIGN },
  }), 201, 'create coupon campaign');
  const issued = await Promise.all(TOKENS.slice(0, ISSUED).map((token) =>
    api('POST', `/coupons/${campaign.id}/issue`, { token })));
  check(issued.every((r) => r.status === 201), 'drop: coupons issued',
    `${issued.filter((r) => r.status === 201).length} of ${ISSUED}`);
  await shows(page, 'funnel-paid', String(PAID), 'paid orders in the funnel');
  await shows(page, 'payments-approved', String(PAID), 'approved payments');
  if (DECLINED) await shows(page, 'payments-declined', String(DECLINED), 'declined payments');
  await shows(page, `coupon-${campaign.id}-issued`, `${ISSUED} / ${CAMPAIGN}`, 'the campaign');
  pass('admin: payments and coupons', `paid ${PAID}, declined ${DECLINED}, coupons ${ISSUED} / ${CAMPAIGN}`);

  // The access token lives a few seconds here (STAMPEDE_ACCESS_TOKEN_TTL_SECS): the page
  // must have renewed it, and still be live.
  const deadline = Date.now() + PAGE_WAIT_MS;
  while (seen.refreshed === 0 && Date.now() < deadline) await page.waitForTimeout(250);
  await visible(page, '[data-testid="status"][data-state="live"]', 'admin: still live', 5000);
  check(seen.refreshed > 0 && !seen.dashboard.includes(403),
    'admin: token refreshed, session kept', `${seen.refreshed} refresh(es), dashboard answers ${[...new Set(seen.dashboard)].join(',')}`);
  check(seen.problems.length === 0, 'admin: no script error, nothing blocked by the policy',
    seen.problems.join(' | ') || 'none');

  // Let the sparklines and the latency chart show the drop, then keep the picture.
  await page.waitForTimeout(2000);
  const shot = join(ARTIFACTS, 'admin.png');
  await page.screenshot({ path: shot, fullPage: true });
  pass('admin: screenshot', shot);
  await connectionLost(page);
  await page.context().close();
}

// The server stops answering (paused with SIGSTOP): the page must say so and stop calling
// its figures live, then recover by itself once the server answers again.
async function connectionLost(page) {
  if (!SERVER_PID) return;
  process.kill(SERVER_PID, 'SIGSTOP');
  try {
    await visible(page, '[data-testid="stale-banner"]', 'admin: "connection lost" while the server is paused');
    const state = await page.evaluate(() => ({
      status: document.getElementById('status').dataset.state,
      greyed: document.getElementById('dashboard').classList.contains('stale'),
    }));
    check(state.status === 'lost' && state.greyed, 'admin: connection lost, figures not shown as live',
      `${await text(page, 'status')}; ${(await text(page, 'stale-banner')).replace(/\s+/g, ' ')}`);
    await page.screenshot({ path: join(ARTIFACTS, 'admin-connection-lost.png') });
  } finally {
    process.kill(SERVER_PID, 'SIGCONT');
  }
  await visible(page, '[data-testid="status"][data-state="live"]', 'admin: live again after the pause');
  check(await page.locator('[data-testid="stale-banner"]').isHidden(), 'admin: live again, retrying by itself',
    await text(page, 'status'));
}

async function buyerIsRefused(browser) {
  const { page, seen } = await openPage(browser, 'buyer');
  await signIn(page, BUYER);
  await visible(page, '[data-testid="refusal"]', 'buyer: the refusal');
  const message = (await page.locator('[data-testid="refusal"]').innerText()).replace(/\s+/g, ' ');
  check(/admin only/i.test(message), 'buyer: refused, "admin only"', message);
  const leaked = await page.evaluate(() => ({
    dashboardShown: !document.getElementById('dashboard').hidden,
    products: document.querySelectorAll('#products-body tr').length,
    placed: document.querySelector('[data-testid="kpi-placed"]').textContent,
  }));
  check(!leaked.dashboardShown && leaked.products === 0 && leaked.placed === '–',
    'buyer: no data on the page', JSON.stringify(leaked));
  check(seen.dashboard.length > 0 && seen.dashboard.every((s) => s === 403),
    'buyer: the dashboard answered 403', seen.dashboard.join(','));
  await page.screenshot({ path: join(ARTIFACTS, 'buyer-refused.png') });
  await page.context().close();
}

async function main() {
  mkdirSync(ARTIFACTS, { recursive: true });
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // As root Chromium needs --no-sandbox; the rest keeps it off the network it would
    // otherwise call at start (none is reachable on CI machines).
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const watchdog = setTimeout(() => {
    console.error(`FAIL the run took more than ${RUN_LIMIT_MS / 1000} s`);
    process.exit(1);
  }, RUN_LIMIT_MS);
  try {
    await adminWatchesADrop(browser);
    await buyerIsRefused(browser);
    console.log(`browser: ${passed} passed, 0 failed`);
  } catch (e) {
    console.error(`  FAIL ${e instanceof Failure ? e.message : e.stack}`);
    for (const { name, page } of pages) {
      if (page.isClosed()) continue;
      const shot = join(ARTIFACTS, `failure-${name}.png`);
      await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
      console.error(`  the ${name} page as it was: ${shot}`);
    }
    console.log(`browser: ${passed} passed, 1 failed`);
    process.exitCode = 1;
  } finally {
    clearTimeout(watchdog);
    await browser.close();
  }
}

await main();
