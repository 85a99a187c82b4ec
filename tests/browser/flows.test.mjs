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
