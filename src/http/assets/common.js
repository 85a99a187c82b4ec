// Recall's page session. The access token lives only in this closure, in
// memory; the refresh token only in the HttpOnly cookie, which the browser
// sends to /web/* and page script never sees. The access token is renewed
// silently before it expires, and once more whenever an API call answers
// 401 (a revoked signing key, say). When the session cannot be renewed, the
// page goes to the login page and says why.
'use strict';

const Recall = (() => {
  let access = null;
  let sessionId = null;
  let timer = null;
  let inflight = null;

  async function body(res) {
    try {
      return await res.json();
    } catch {
      return null;
    }
  }

  function failure(res, data) {
    const e = new Error((data && data.error_description) || `HTTP ${res.status}`);
    e.status = res.status;
    e.code = data && data.error;
    return e;
  }

  function accept(t) {
    access = t.access_token;
    sessionId = t.session_id;
    clearTimeout(timer);
    // Renew at 80% of the token's life.
    timer = setTimeout(() => refresh().catch(ended), Math.max(1000, t.expires_in * 800));
    return t;
  }

  function refresh() {
    if (!inflight) {
      inflight = (async () => {
        const res = await fetch('/web/refresh', { method: 'POST', credentials: 'same-origin' });
        const data = await body(res);
        if (!res.ok) throw failure(res, data);
        return accept(data);
      })().finally(() => {
        inflight = null;
      });
    }
    return inflight;
  }

  async function login(username, password) {
    const res = await fetch('/web/login', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username, password }),
    });
    const data = await body(res);
    if (!res.ok) throw failure(res, data);
    return accept(data);
  }

  async function register(username, password) {
    const res = await fetch('/v1/users', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username, password }),
    });
    const data = await body(res);
    if (!res.ok) throw failure(res, data);
    return data;
  }

  // Leaves for the login page, which explains `reason`.
  function ended(e) {
    clearTimeout(timer);
    access = null;
    const q = new URLSearchParams();
    if (location.pathname === '/admin') q.set('next', 'admin');
    const fresh = e && typeof e.message === 'string' && e.message.startsWith('no session cookie');
    if (!fresh) {
      q.set('reason', e && e.code === 'account_locked' ? 'locked' : 'ended');
      if (e && e.message) q.set('detail', e.message);
    }
    location.replace('/?' + q);
  }

  // A JSON API call with the access token; one silent refresh on 401.
  async function api(method, path, payload) {
    const send = () => {
      const headers = { authorization: 'Bearer ' + access };
      if (payload !== undefined) headers['content-type'] = 'application/json';
      return fetch(path, {
        method,
        headers,
        body: payload === undefined ? undefined : JSON.stringify(payload),
      });
    };
    let res = await send();
    if (res.status === 401) {
      try {
        await refresh();
      } catch (e) {
        ended(e);
        throw e;
      }
      res = await send();
    }
    const data = res.status === 204 ? null : await body(res);
    if (!res.ok) {
      const e = failure(res, data);
      if (res.status === 401 || e.code === 'account_locked') ended(e);
      throw e;
    }
    return data;
  }

  // Ends this device's session and clears its cookie.
  async function logoutHere(reason) {
    clearTimeout(timer);
    await fetch('/web/logout', { method: 'POST', credentials: 'same-origin' });
    access = null;
    location.replace('/?reason=' + encodeURIComponent(reason || 'logged_out'));
  }

  // Builds an element; children are nodes or text (never parsed as HTML).
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') node.className = v;
      else if (k.startsWith('data-')) node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : String(c));
    }
    return node;
  }

  function when(iso) {
    if (!iso) return '';
    const d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleString();
  }

  // "Chrome on Linux" from a User-Agent.
  function device(s) {
    const ua = s.user_agent || '';
    const browser =
      [['Edg/', 'Edge'], ['Firefox/', 'Firefox'], ['Chrome/', 'Chrome'], ['Safari/', 'Safari'], ['curl/', 'curl']]
        .find(([k]) => ua.includes(k)) || [null, ua ? ua.split(' ')[0] : s.client_type];
    const os =
      [['Android', 'Android'], ['iPhone', 'iOS'], ['Windows', 'Windows'], ['Mac OS X', 'macOS'], ['Linux', 'Linux']]
        .find(([k]) => ua.includes(k));
    return `${browser[1]}${os ? ' on ' + os[1] : ''} (${s.client_type})`;
  }

  function say(text) {
    const n = document.getElementById('status');
    n.textContent = text;
    n.hidden = false;
    document.getElementById('error').hidden = true;
  }

  function fail(text) {
    const n = document.getElementById('error');
    n.textContent = text;
    n.hidden = false;
  }

  // Opens a signed-in page: a token from the cookie, then who this is.
  async function start() {
    try {
      await refresh();
    } catch (e) {
      ended(e);
      return null;
    }
    const me = await api('GET', '/v1/me');
    document.getElementById('whoami').textContent = me.username;
    document.getElementById('nav').hidden = false;
    document.getElementById('logout-here').addEventListener('click', () => logoutHere());
    return me;
  }

  return {
    api,
    device,
    el,
    ended,
    fail,
    login,
    logoutHere,
    refresh,
    register,
    say,
    session: () => sessionId,
    start,
    token: () => access,
    when,
  };
})();
