// Recall's pages in a real browser: the distribution's Chromium, headless,
// driven by playwright-core (never a downloaded browser). Run by
// scripts/browser.sh, which starts Recall and sets:
//   RECALL_BASE            Recall's own origin (its RECALL_PUBLIC_URL)
//   RECALL_WEB_ADMIN       an admin user's name; RECALL_WEB_ADMIN_PASSWORD
//   RECALL_SCREENSHOTS     where the page screenshots go
//   CHROMIUM               the browser (default /usr/bin/chromium)
// Each browser context is one device with its own cookie jar.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import http from 'node:http';
import { chromium } from 'playwright-core';

const BASE = process.env.RECALL_BASE;
const ADMIN = process.env.RECALL_WEB_ADMIN;
const ADMIN_PASSWORD = process.env.RECALL_WEB_ADMIN_PASSWORD;
const SHOTS = process.env.RECALL_SCREENSHOTS || 'screenshots';
const SOON = { timeout: 15_000 };
const COOKIE = '__Host-recall_refresh';

const LAPTOP = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36';
const PHONE = 'Mozilla/5.0 (Linux; Android 15; Pixel 9) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Mobile Safari/537.36';

const user = `alice${Date.now() % 100000}`;
let password = 'first password 1';
let browser;
let admin; // the admin console, open (and streaming) through every test
let laptop;
let phone;

async function device(name, userAgent) {
  const ctx = await browser.newContext({ baseURL: BASE, userAgent, viewport: { width: 1180, height: 860 } });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.error(`[${name}] page error: ${e.message}`));
  const seen = [];
  page.on('response', (r) => {
    const path = new URL(r.url()).pathname;
    if (path.startsWith('/v1/') || path.startsWith('/web/')) seen.push({ path, status: r.status(), at: Date.now() });
  });
  return { name, ctx, page, seen };
}

async function logIn(d, name, pass, next = '/account') {
  await d.page.goto(next === '/admin' ? '/?next=admin' : '/');
  await d.page.fill('#login-username', name);
  await d.page.fill('#login-password', pass);
  await d.page.click('#login-submit');
  await d.page.waitForURL((u) => u.pathname === next, SOON);
}

const sessionRows = (d) => d.page.locator('#sessions tbody tr');

async function rowCount(d, n) {
  await d.page.waitForFunction((n) => document.querySelectorAll('#sessions tbody tr').length === n, n, SOON);
}

async function sentToLogin(d, reason) {
  await d.page.waitForURL((u) => u.pathname === '/' && u.searchParams.get('reason') === reason, SOON);
}

async function statusText(d) {
  const s = d.page.locator('#status');
  await s.waitFor({ state: 'visible', ...SOON });
  return s.textContent();
}

before(async () => {
  assert.ok(BASE, 'RECALL_BASE is set by scripts/browser.sh');
  mkdirSync(SHOTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  admin = await device('admin', LAPTOP);
  await logIn(admin, ADMIN, ADMIN_PASSWORD, '/admin');
  await admin.page.locator('#stream-state', { hasText: 'live' }).waitFor(SOON);
  laptop = await device('laptop', LAPTOP);
  phone = await device('phone', PHONE);
});

after(async () => {
  await browser?.close();
});

test('pages carry a strict Content-Security-Policy and no inline script', async () => {
  for (const path of ['/', '/account', '/admin']) {
    const res = await laptop.ctx.request.get(path);
    assert.equal(res.status(), 200);
    const csp = res.headers()['content-security-policy'];
    assert.ok(csp, `${path} has a CSP`);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.match(csp, /script-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    assert.doesNotMatch(await res.text(), /<script>(?!<\/script>)|<script(?![^>]*src=)[^>]*>/, 'no inline script');
  }
});

test('two devices: the second, logged out from the first, gets 401 and goes to login', async () => {
  await laptop.page.goto('/');
  await laptop.page.fill('#register-username', user);
  await laptop.page.fill('#register-password', password);
  await laptop.page.click('#register-submit');
  await laptop.page.waitForURL((u) => u.pathname === '/account', SOON);
  await logIn(phone, user, password);
  await rowCount(laptop, 2);
  await rowCount(phone, 2);
  // The laptop's own row says so, with the device, address and times.
  const mine = laptop.page.locator('#sessions tbody tr.current');
  assert.equal(await mine.locator('.this').textContent(), 'This device');
  assert.match(await mine.locator('.device').textContent(), /Chrome on Linux \(web\)/);
  assert.equal(await mine.locator('.ip').textContent(), '127.0.0.1');
  assert.notEqual(await mine.locator('.created').textContent(), '');
  assert.notEqual(await mine.locator('.last-used').textContent(), '');
  await laptop.page.screenshot({ path: `${SHOTS}/account.png`, fullPage: true });

  const since = Date.now();
  await laptop.page.locator('#sessions tbody tr:not(.current) button.logout').click();
  assert.match(await statusText(laptop), /Logged out Chrome on Android/);
  await rowCount(laptop, 1);
  await sentToLogin(phone, 'ended');
  const after = phone.seen.filter((r) => r.at >= since);
  assert.ok(
    after.some((r) => r.path.startsWith('/v1/') && r.status === 401),
    `the phone's next API call got 401: ${JSON.stringify(after)}`,
  );
  assert.match(await phone.page.locator('#notice').textContent(), /This device was logged out/);
});

test('page script cannot read the refresh cookie', async () => {
  const cookies = await laptop.ctx.cookies();
  const refresh = cookies.find((c) => c.name === COOKIE);
  assert.ok(refresh, 'the refresh cookie is set');
  assert.equal(refresh.httpOnly, true);
  assert.equal(refresh.secure, true);
  assert.equal(refresh.sameSite, 'Strict');
  assert.equal(refresh.path, '/');
  assert.equal(await laptop.page.evaluate(() => document.cookie), '');
  // Nor does the page keep a token anywhere script could later find it.
  assert.equal(await laptop.page.evaluate(() => localStorage.length + sessionStorage.length), 0);
});

test('a cross-origin POST with the cookie is refused', async () => {
  // Another origin on the same host (a sibling port: same site, so
  // SameSite alone is no defence there): its page POSTs to /web/refresh with credentials, in no-cors mode (it
  // cannot read the answer, but would be glad of the side effect).
  const evil = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(`<!doctype html><script>
      fetch(${JSON.stringify(BASE + '/web/refresh')}, { method: 'POST', credentials: 'include', mode: 'no-cors' }).catch(() => {});
    </script>`);
  });
  await new Promise((r) => evil.listen(0, '127.0.0.1', r));
  try {
    const page = await laptop.ctx.newPage();
    const answer = page.waitForResponse((r) => r.url().endsWith('/web/refresh'), SOON);
    await page.goto(`http://127.0.0.1:${evil.address().port}/`);
    const res = await answer;
    assert.equal(res.status(), 403, 'refused by the Origin check');
    await page.close();
  } finally {
    evil.close();
  }
  // The same POST carrying the laptop's real refresh cookie, from any
  // client that sends a foreign Origin, or none: refused, and nothing spent.
  const cookie = (await laptop.ctx.cookies()).find((c) => c.name === COOKIE);
  for (const origin of ['https://evil.example', `http://127.0.0.1:1`, null]) {
    const headers = { cookie: `${COOKIE}=${cookie.value}` };
    if (origin) headers.origin = origin;
    const res = await fetch(BASE + '/web/refresh', { method: 'POST', headers });
    assert.equal(res.status, 403, `Origin ${origin}`);
    assert.equal((await res.json()).error, 'forbidden');
  }
  // Had any of them been served, that refresh token would be spent and the
  // laptop's next refresh would be a reuse, ending its session.
  await laptop.page.reload();
  await rowCount(laptop, 1);
});

test('the access token is renewed silently before it expires', async () => {
  const since = Date.now();
  // RECALL_ACCESS_TTL_SECS is 10 here: renewal comes at 80% of that.
  await laptop.page.waitForTimeout(11_000);
  const seen = laptop.seen.filter((r) => r.at >= since);
  assert.ok(seen.some((r) => r.path === '/web/refresh' && r.status === 200), JSON.stringify(seen));
  assert.ok(!seen.some((r) => r.status === 401), `no call needed a retry: ${JSON.stringify(seen)}`);
  assert.equal(new URL(laptop.page.url()).pathname, '/account');
});

test('"Log out everywhere" ends every device', async () => {
  await logIn(phone, user, password);
  await rowCount(laptop, 2);
  await laptop.page.click('#logout-all');
  await sentToLogin(laptop, 'everywhere');
  assert.match(await laptop.page.locator('#notice').textContent(), /logged out everywhere/);
  await sentToLogin(phone, 'ended');
  const cookie = (await laptop.ctx.cookies()).find((c) => c.name === COOKIE);
  assert.ok(!cookie, 'the laptop cookie is cleared');
});

test('changing the password logs out the other devices', async () => {
  await logIn(laptop, user, password);
  await logIn(phone, user, password);
  await rowCount(laptop, 2);
  await laptop.page.fill('#current-password', password);
  await laptop.page.fill('#new-password', 'second password 2');
  await laptop.page.click('#password-submit');
  assert.match(await statusText(laptop), /Password changed\. 1 other device was logged out/);
  await sentToLogin(phone, 'ended');
  await rowCount(laptop, 1);
  // The old password no longer logs in; the new one does.
  await phone.page.fill('#login-username', user);
  await phone.page.fill('#login-password', password);
  await phone.page.click('#login-submit');
  await phone.page.locator('#error').waitFor({ state: 'visible', ...SOON });
  password = 'second password 2';
  await logIn(phone, user, password);
  await rowCount(laptop, 2);
});

test('the admin locks the user; the open pages notice within seconds', async () => {
  await admin.page.fill('#find-username', user);
  await admin.page.click('#find button[type=submit]');
  await admin.page.locator('#user-name', { hasText: user }).waitFor(SOON);
  assert.match(await statusText(admin), /2 live sessions/);
  await admin.page.selectOption('#lock-duration', '3600');
  await admin.page.fill('#lock-reason', 'stolen laptop');
  await admin.page.click('#lock-submit');
  await admin.page.locator('#status', { hasText: 'Locked' }).waitFor(SOON);
  assert.match(await admin.page.locator('#status').textContent(), new RegExp(`Locked ${user} until .*; 2 sessions ended`));
  await sentToLogin(laptop, 'locked');
  await sentToLogin(phone, 'locked');
  assert.match(await laptop.page.locator('#notice').textContent(), /locked/);
  // Locked: logging in is refused and says why.
  await laptop.page.fill('#login-username', user);
  await laptop.page.fill('#login-password', password);
  await laptop.page.click('#login-submit');
  await laptop.page.locator('#error', { hasText: /locked/ }).waitFor(SOON);
  await admin.page.click('#unlock');
  await admin.page.locator('#status', { hasText: `Unlocked ${user}` }).waitFor(SOON);
  await logIn(laptop, user, password);
  await rowCount(laptop, 1);
});

test('the admin rotates the key as compromised; the user page keeps working', async () => {
  const since = Date.now();
  await admin.page.click('#rotate-compromised');
  await admin.page.locator('#confirm-compromised').waitFor({ state: 'visible', ...SOON });
  await admin.page.click('#confirm-rotate');
  await admin.page.locator('#status', { hasText: 'is revoked' }).waitFor(SOON);
  await admin.page.locator('#keys td.status-revoked').first().waitFor(SOON);
  // The laptop's token died with its key: its next poll is refused (unless
  // its timer renewed it first), it renews silently from the cookie, and
  // goes on.
  const renewed = async () => {
    const seen = laptop.seen.filter((r) => r.at >= since);
    const fresh = seen.findIndex((r) => r.path === '/web/refresh' && r.status === 200);
    return fresh >= 0 && seen.slice(fresh).some((r) => r.path === '/v1/sessions' && r.status === 200);
  };
  for (let i = 0; i < 60 && !(await renewed()); i++) await laptop.page.waitForTimeout(250);
  assert.ok(await renewed(), JSON.stringify(laptop.seen.filter((r) => r.at >= since)));
  assert.equal(new URL(laptop.page.url()).pathname, '/account');
  await rowCount(laptop, 1);
  // The admin console renews its own token the same way.
  await admin.page.click('#find button[type=submit]');
  await admin.page.locator('#status', { hasText: '1 live session' }).waitFor(SOON);
});

test('the event stream shows each of these, filterable by user and type', async () => {
  const userId = (await admin.page.locator('#user-id').textContent()).trim();
  const kinds = [
    'login_succeeded',
    'session_revoked',
    'user_sessions_revoked',
    'password_changed',
    'user_locked',
    'user_unlocked',
    'key_rotated',
  ];
  for (const kind of kinds) {
    await admin.page.locator(`#events li[data-type=${kind}]`).first().waitFor({ state: 'attached', ...SOON });
  }
  await admin.page.click('#watch-user');
  await admin.page.selectOption('#filter-type', 'user_locked');
  const visible = admin.page.locator('#events li:visible');
  assert.ok((await visible.count()) >= 1);
  for (const li of await visible.all()) {
    assert.equal(await li.getAttribute('data-type'), 'user_locked');
    assert.equal(await li.getAttribute('data-user'), userId);
  }
  await admin.page.selectOption('#filter-type', '');
  await admin.page.screenshot({ path: `${SHOTS}/admin.png`, fullPage: true });
});

// An API call as a client outside the browser would make it (no cookies).
async function call(method, path, { token, body, headers = {} } = {}) {
  const h = { ...headers };
  if (token) h.authorization = 'Bearer ' + token;
  if (body !== undefined) h['content-type'] = 'application/json';
  const res = await fetch(BASE + path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

test('the admin binds mobile sessions to their network; /account and /admin show client and binding', async () => {
  const form = admin.page.locator('#policy-mobile');
  const field = (f) => admin.page.locator(`#policy-mobile-${f}`);
  // The three policies are shown, filled in from the server.
  for (const t of ['web', 'mobile', 'service']) {
    await admin.page.locator(`#policy-${t} button[type=submit]:enabled`).waitFor(SOON);
  }
  assert.equal(await field('binding').inputValue(), 'none');
  assert.equal(await field('idle_timeout_secs').inputValue(), '');
  assert.ok(await form.locator('.prefixes').isHidden(), 'no prefixes without network binding');

  // A value the server refuses: its error_description is shown.
  const ttl = await field('access_ttl_secs').inputValue();
  await field('access_ttl_secs').fill('3600');
  await form.locator('button[type=submit]').click();
  await admin.page.locator('#error', { hasText: 'access_ttl_secs' }).waitFor(SOON);

  // Network binding, /24, a day's idle timeout, and revoke on a mismatch.
  await field('access_ttl_secs').fill(ttl);
  await field('binding').selectOption('network');
  await form.locator('.prefixes').waitFor({ state: 'visible', ...SOON });
  assert.equal(await field('ipv4_prefix').inputValue(), '24');
  assert.equal(await field('ipv6_prefix').inputValue(), '56');
  await field('idle_timeout_secs').fill('86400');
  await field('on_mismatch').selectOption('revoke');
  await form.locator('button[type=submit]').click();
  const saved = await admin.page.locator('#status', { hasText: 'Saved' }).textContent();
  assert.match(saved, /^Saved: applies to logins from now on \(seq \d+\)/);
  assert.ok(await admin.page.locator('#error').isHidden());
  // The change is an event in the log, and the live stream shows it.
  const seq = saved.match(/seq (\d+)/)[1];
  await admin.page.locator(`#events li[data-type=policy_changed]`, { hasText: `#${seq} ` }).waitFor({ state: 'attached', ...SOON });

  // The PUT happened: the server says so over HTTP.
  const login = await call('POST', '/v1/auth/login', { body: { username: ADMIN, password: ADMIN_PASSWORD } });
  assert.equal(login.status, 200, JSON.stringify(login.body));
  const { status, body } = await call('GET', '/v1/admin/policies', { token: login.body.access_token });
  assert.equal(status, 200);
  assert.equal(body.policies.mobile.binding, 'network');
  assert.equal(body.policies.mobile.ipv4_prefix, 24);
  assert.equal(body.policies.mobile.ipv6_prefix, 56);
  assert.equal(body.policies.mobile.idle_timeout_secs, 86400);
  assert.equal(body.policies.mobile.on_mismatch, 'revoke');
  assert.equal(body.policies.mobile.access_ttl_secs, Number(ttl));
  assert.equal(body.policies.web.binding, 'none', 'the other client types are untouched');
  await call('POST', '/v1/auth/logout', { token: login.body.access_token });
  // Reloaded, the form shows what was saved.
  await admin.page.reload();
  await admin.page.locator('#policy-mobile button[type=submit]:enabled').waitFor(SOON);
  assert.equal(await field('binding').inputValue(), 'network');
  assert.equal(await field('idle_timeout_secs').inputValue(), '86400');
  await admin.page.locator('#policies').screenshot({ path: `${SHOTS}/policies.png` });

  // A phone app logs in after the change, through a proxy on loopback
  // (RECALL_TRUSTED_PROXIES trusts 127.0.0.0/8 by default): a mobile
  // session, bound to 203.0.113.0/24.
  const from = { 'x-forwarded-for': '203.0.113.5', 'user-agent': 'RecallPhone/3.1 (Android 15)' };
  const app = await call('POST', '/v1/auth/login', {
    headers: from,
    body: { username: user, password, client_type: 'mobile' },
  });
  assert.equal(app.status, 200, JSON.stringify(app.body));
  const mine = await call('GET', '/v1/sessions', { token: app.body.access_token, headers: from });
  assert.equal(mine.status, 200, JSON.stringify(mine.body));
  const recorded = mine.body.sessions.find((s) => s.session_id === app.body.session_id);
  assert.equal(recorded.client_type, 'mobile');
  assert.equal(recorded.binding, 'network');
  assert.equal(recorded.ip, '203.0.113.5');

  await rowCount(laptop, 2);
  const row = laptop.page.locator(`#sessions tbody tr[data-session="${app.body.session_id}"]`);
  assert.equal(await row.locator('.client').textContent(), 'mobile');
  assert.equal(await row.locator('.binding').textContent(), 'network');
  assert.equal(await row.locator('.ip').textContent(), recorded.ip);
  assert.match(await row.locator('.device').textContent(), /RecallPhone\/3\.1 on Android \(mobile\)/);
  const here = laptop.page.locator('#sessions tbody tr.current');
  assert.equal(await here.locator('.client').textContent(), 'web');
  assert.equal(await here.locator('.binding').textContent(), 'nothing');
  assert.deepEqual(
    await laptop.page.locator('#sessions thead th').allTextContents(),
    ['Device', 'Client', 'Bound to', 'IP', 'Created', 'Last used', '', ''],
  );
  await laptop.page.screenshot({ path: `${SHOTS}/account-bound.png`, fullPage: true });

  // The admin's view of the user's sessions says the same.
  await admin.page.locator('#stream-state', { hasText: 'live' }).waitFor(SOON);
  await admin.page.fill('#find-username', user);
  await admin.page.click('#find button[type=submit]');
  await admin.page.locator('#status', { hasText: '2 live sessions' }).waitFor(SOON);
  const adminRow = admin.page.locator(`#user-sessions tbody tr[data-session="${app.body.session_id}"]`);
  assert.equal(await adminRow.locator('.client').textContent(), 'mobile');
  assert.equal(await adminRow.locator('.binding').textContent(), 'network');

  // Its token used from another network: refused, and (on_mismatch revoke)
  // the session ends, so it leaves the user's page within seconds.
  const elsewhere = await call('GET', '/v1/me', {
    token: app.body.access_token,
    headers: { ...from, 'x-forwarded-for': '198.51.100.7' },
  });
  assert.equal(elsewhere.status, 401, JSON.stringify(elsewhere.body));
  await rowCount(laptop, 1);
});

// A local date-time as <input type=datetime-local step=1> takes it (the
// browser and this script share the machine's time zone).
function localInput(ms) {
  const d = new Date(ms);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

const pause = (ms) => new Promise((r) => setTimeout(r, ms));

test('the admin asks whether a token was valid at a past moment, and checks the log', async () => {
  const name = `bob${Date.now() % 100000}`;
  const made = await call('POST', '/v1/users', { body: { username: name, password: 'bob password 1' } });
  assert.equal(made.status, 201, JSON.stringify(made.body));
  const login = await call('POST', '/v1/auth/login', { body: { username: name, password: 'bob password 1' } });
  assert.equal(login.status, 200);
  await pause(1500);
  const whileLive = Date.now();
  await pause(1500);
  assert.equal((await call('POST', '/v1/auth/logout', { token: login.body.access_token })).status, 204);
  await pause(1500);
  const afterLogout = Date.now();

  const ask = async (subject, ms) => {
    await admin.page.fill('#validity-subject', subject);
    await admin.page.fill('#validity-at', localInput(ms));
    await admin.page.click('#validity-form button[type=submit]');
    await admin.page.locator('#status', { hasText: 'Replayed the log' }).waitFor(SOON);
    const verdict = await admin.page.locator('#validity-verdict').textContent();
    const reason = await admin.page.locator('#validity-reason').textContent();
    const events = await admin.page.locator('#validity-events li').allTextContents();
    await admin.page.evaluate(() => { document.getElementById('status').textContent = ''; });
    return { verdict, reason, events };
  };
  const before = await ask(login.body.access_token, whileLive);
  assert.equal(before.verdict, 'Valid', JSON.stringify(before));
  assert.ok(before.events.some((e) => e.startsWith('login_succeeded')), JSON.stringify(before));
  const later = await ask(login.body.access_token, afterLogout);
  assert.equal(later.verdict, 'Not valid', JSON.stringify(later));
  assert.match(later.reason, /^session_revoked/);
  assert.ok(later.events.some((e) => e.startsWith('logged_out')), JSON.stringify(later));
  const bySession = await ask(login.body.session_id, afterLogout);
  assert.equal(bySession.verdict, 'Not valid');

  await admin.page.click('#verify-log');
  await admin.page.locator('#verify-result', { hasText: 'Intact' }).waitFor(SOON);
  await admin.page.click('#sign-checkpoint');
  await admin.page.locator('#checkpoint-result', { hasText: 'Latest checkpoint' }).waitFor(SOON);
  await admin.page.locator('#integrity').screenshot({ path: `${SHOTS}/integrity.png` });
});

test('erasing a user asks for the username first, then ends everything', async () => {
  const name = `carol${Date.now() % 100000}`;
  const pass = 'carol password 1';
  assert.equal((await call('POST', '/v1/users', { body: { username: name, password: pass } })).status, 201);
  const login = await call('POST', '/v1/auth/login', { body: { username: name, password: pass } });
  assert.equal(login.status, 200);
  await admin.page.fill('#find-username', name);
  await admin.page.click('#find button[type=submit]');
  await admin.page.locator('#user-name', { hasText: name }).waitFor(SOON);
  await admin.page.click('#erase');
  await admin.page.locator('#confirm-erase').waitFor({ state: 'visible', ...SOON });
  // The wrong name: nothing is sent.
  await admin.page.fill('#erase-name', name + 'x');
  await admin.page.click('#confirm-erase-go');
  await admin.page.locator('#error', { hasText: `Type ${name} to confirm` }).waitFor(SOON);
  assert.equal((await call('GET', '/v1/me', { token: login.body.access_token })).status, 200);
  await admin.page.fill('#erase-name', name);
  await admin.page.click('#confirm-erase-go');
  await admin.page.locator('#status', { hasText: `Erased ${name}` }).waitFor(SOON);
  assert.equal((await call('GET', '/v1/me', { token: login.body.access_token })).status, 401);
  // The username is free again.
  assert.equal((await call('POST', '/v1/users', { body: { username: name, password: pass } })).status, 201);
});
