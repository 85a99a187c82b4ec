// /account: this user's live sessions, refreshed every 2 s so that a session
// ended elsewhere disappears within seconds, and the ways to end them.
'use strict';

(async () => {
  const { api, el, say, fail, when, device } = Recall;
  const me = await Recall.start();
  if (!me) return;
  Recall.api('GET', '/v1/admin/keys').then(
    () => (document.getElementById('admin-link').hidden = false),
    () => {},
  );

  let sessions = [];

  // What a session's tokens are bound to, in words.
  const BOUND = {
    none: ['nothing', 'Its tokens work from anywhere.'],
    network: ['network', 'Its tokens work only from the network it logged in from.'],
    address: ['address', 'Its tokens work only from the address it logged in from.'],
    dpop: ['device key (DPoP)', 'Its tokens work only with a key the device holds.'],
  };
  const bound = (s) => BOUND[s.binding] || [s.binding || 'nothing', ''];

  function render() {
    const tbody = document.querySelector('#sessions tbody');
    tbody.replaceChildren(
      ...sessions.map((s) => {
        const out = el('button', { type: 'button', class: 'logout' }, 'Log out');
        out.addEventListener('click', () => end(s));
        return el(
          'tr',
          { 'data-session': s.session_id, class: s.current ? 'current' : '' },
          el('td', { class: 'device' }, device(s)),
          el('td', { class: 'client' }, s.client_type),
          el('td', { class: 'binding', title: bound(s)[1] }, bound(s)[0]),
          el('td', { class: 'ip' }, s.ip || ''),
          el('td', { class: 'created' }, when(s.created_at)),
          el('td', { class: 'last-used' }, when(s.last_used_at)),
          el('td', { class: 'this' }, s.current ? el('span', { class: 'badge' }, 'This device') : ''),
          el('td', {}, out),
        );
      }),
    );
  }

  async function load() {
    try {
      sessions = (await api('GET', '/v1/sessions')).sessions;
      render();
    } catch (e) {
      if (e.status !== 401 && e.code !== 'account_locked') fail(e.message);
    }
  }

  async function end(s) {
    if (s.current) return Recall.logoutHere();
    try {
      await api('DELETE', '/v1/sessions/' + encodeURIComponent(s.session_id));
      say(`Logged out ${device(s)} (${s.ip || 'unknown address'}).`);
      await load();
    } catch (e) {
      fail(e.message);
    }
  }

  document.getElementById('logout-others').addEventListener('click', async () => {
    const others = sessions.filter((s) => !s.current).length;
    try {
      await api('POST', '/v1/auth/logout-others');
      say(`Logged out ${others} other device${others === 1 ? '' : 's'}.`);
      await load();
    } catch (e) {
      fail(e.message);
    }
  });

  document.getElementById('logout-all').addEventListener('click', async () => {
    try {
      await api('POST', '/v1/auth/logout-all');
    } catch (e) {
      fail(e.message);
      return;
    }
    await Recall.logoutHere('everywhere');
  });

  document.getElementById('password').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const others = sessions.filter((s) => !s.current).length;
    const current = document.getElementById('current-password');
    const next = document.getElementById('new-password');
    try {
      await api('POST', '/v1/auth/password', {
        current_password: current.value,
        new_password: next.value,
      });
      current.value = '';
      next.value = '';
      say(`Password changed. ${others} other device${others === 1 ? ' was' : 's were'} logged out.`);
      await load();
    } catch (e) {
      fail(e.message);
    }
  });

  await load();
  setInterval(load, 2000);
})();
