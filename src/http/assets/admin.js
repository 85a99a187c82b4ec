// /admin: find a user and see their sessions; lock, unlock, revoke, erase;
// rotate the signing key; the keys table; each client type's policy; was a
// token valid at a past moment; the log's integrity; and the live event
// stream, filtered by user and type. Every action says what it did.
'use strict';

(async () => {
  const { api, el, say, fail, when, device } = Recall;
  const me = await Recall.start();
  if (!me) return;
  document.getElementById('admin-link').hidden = false;
  try {
    await loadKeys();
  } catch (e) {
    if (e.status === 403) fail('Your account has no admin rights.');
    else fail(e.message);
    return;
  }

  let user = null;

  // What a session's tokens are bound to, in words (the policy forms' select
  // says the same).
  const BOUND = { none: 'nothing', network: 'network', address: 'address', dpop: 'device key (DPoP)' };

  async function loadKeys() {
    const { keys } = await api('GET', '/v1/admin/keys');
    document.querySelector('#keys tbody').replaceChildren(
      ...keys.map((k) =>
        el(
          'tr',
          { 'data-kid': k.kid },
          el('td', {}, el('code', {}, k.kid)),
          el('td', {}, k.alg),
          el('td', { class: 'status-' + k.status }, k.status),
          el('td', {}, when(k.created_at)),
        ),
      ),
    );
  }

  async function loadUser(username) {
    user = await api('GET', '/v1/admin/users?username=' + encodeURIComponent(username));
    const { sessions } = await api('GET', `/v1/admin/users/${user.user_id}/sessions`);
    document.getElementById('user').hidden = false;
    document.getElementById('user-name').textContent = user.username;
    document.getElementById('user-id').textContent = user.user_id;
    document.getElementById('user-locked').textContent = user.locked_until
      ? 'locked until ' + when(user.locked_until)
      : 'not locked';
    document.querySelector('#user-sessions tbody').replaceChildren(
      ...sessions.map((s) => {
        const end = el('button', { type: 'button', class: 'danger' }, 'End');
        end.addEventListener('click', async () => {
          try {
            await api('DELETE', '/v1/admin/sessions/' + s.session_id);
            say(`Ended 1 session of ${user.username} (${device(s)}).`);
            await loadUser(user.username);
          } catch (e) {
            fail(e.message);
          }
        });
        return el(
          'tr',
          { 'data-session': s.session_id },
          el('td', { class: 'device' }, device(s)),
          el('td', { class: 'client' }, s.client_type),
          el('td', { class: 'binding' }, BOUND[s.binding] || s.binding || 'nothing'),
          el('td', { class: 'ip' }, s.ip || ''),
          el('td', {}, when(s.created_at)),
          el('td', {}, when(s.last_used_at)),
          el('td', {}, end),
        );
      }),
    );
    return sessions;
  }

  async function act(run) {
    try {
      await run();
    } catch (e) {
      fail(e.message);
    }
  }

  document.getElementById('find').addEventListener('submit', (ev) => {
    ev.preventDefault();
    act(async () => {
      const sessions = await loadUser(document.getElementById('find-username').value);
      say(`${user.username}: ${sessions.length} live session${sessions.length === 1 ? '' : 's'}.`);
    });
  });

  document.getElementById('lock').addEventListener('submit', (ev) => {
    ev.preventDefault();
    act(async () => {
      const reason = document.getElementById('lock-reason').value;
      const r = await api('POST', `/v1/admin/users/${user.user_id}/lock`, {
        duration_secs: Number(document.getElementById('lock-duration').value),
        reason: reason || null,
      });
      say(
        `Locked ${user.username} until ${when(r.locked_until)}; ` +
          `${r.revoked_sessions} session${r.revoked_sessions === 1 ? '' : 's'} ended.`,
      );
      await loadUser(user.username);
    });
  });

  document.getElementById('unlock').addEventListener('click', () =>
    act(async () => {
      await api('POST', `/v1/admin/users/${user.user_id}/unlock`);
      say(`Unlocked ${user.username}.`);
      await loadUser(user.username);
    }),
  );

  document.getElementById('revoke').addEventListener('click', () =>
    act(async () => {
      const r = await api('POST', `/v1/admin/users/${user.user_id}/revoke-sessions`, {
        reason: 'revoked from the admin console',
      });
      say(`Revoked ${r.revoked_sessions} session${r.revoked_sessions === 1 ? '' : 's'} of ${user.username}.`);
      await loadUser(user.username);
    }),
  );

  document.getElementById('watch-user').addEventListener('click', () => {
    document.getElementById('filter-user').value = user.user_id;
    refilter();
  });

  async function rotate(compromised) {
    const r = await api('POST', '/v1/admin/keys/rotate', {
      compromised,
      reason: compromised ? 'compromised: rotated from the admin console' : 'scheduled rotation',
    });
    say(
      compromised
        ? `New signing key ${r.kid}. Key ${r.previous_kid} is revoked: every token it signed is rejected now; ` +
            'logged-in users renew theirs silently.'
        : `New signing key ${r.kid}. Key ${r.previous_kid} still verifies the tokens it signed until they expire.`,
    );
    await loadKeys();
  }

  const confirmBox = document.getElementById('confirm-compromised');
  document.getElementById('rotate').addEventListener('click', () => act(() => rotate(false)));
  document.getElementById('rotate-compromised').addEventListener('click', () => {
    confirmBox.hidden = false;
  });
  document.getElementById('cancel-rotate').addEventListener('click', () => {
    confirmBox.hidden = true;
  });
  document.getElementById('confirm-rotate').addEventListener('click', () => {
    confirmBox.hidden = true;
    act(() => rotate(true));
  });

  // --- erasure ----------------------------------------------------------------
  // Asks for the username typed again before anything is sent.
  const eraseBox = document.getElementById('confirm-erase');
  const eraseName = document.getElementById('erase-name');
  document.getElementById('erase').addEventListener('click', () => {
    eraseName.value = '';
    eraseBox.hidden = false;
    eraseName.focus();
  });
  document.getElementById('cancel-erase').addEventListener('click', () => {
    eraseBox.hidden = true;
  });
  document.getElementById('confirm-erase-go').addEventListener('click', () =>
    act(async () => {
      if (eraseName.value.trim().toLowerCase() !== user.username) {
        fail(`Type ${user.username} to confirm.`);
        return;
      }
      eraseBox.hidden = true;
      const r = await api('DELETE', `/v1/admin/users/${user.user_id}`);
      say(`Erased ${user.username} (seq ${r.seq}): every session ended; their personal data is gone.`);
      document.getElementById('user').hidden = true;
      user = null;
    }),
  );

  // --- validity at a past moment ----------------------------------------------
  document.getElementById('validity-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    act(async () => {
      const subject = document.getElementById('validity-subject').value.trim();
      const local = document.getElementById('validity-at').value;
      const at = new Date(local);
      if (Number.isNaN(at.getTime())) {
        fail('Pick a time.');
        return;
      }
      const isSession = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(subject);
      const body = isSession ? { session_id: subject } : { token: subject };
      body.at = at.toISOString();
      const r = await api('POST', '/v1/admin/forensics/validity', body);
      document.getElementById('validity-answer').hidden = false;
      const verdict = document.getElementById('validity-verdict');
      verdict.textContent = r.valid ? 'Valid' : 'Not valid';
      verdict.className = r.valid ? 'status-active' : 'status-revoked';
      document.getElementById('validity-reason').textContent =
        `${r.reason} at ${when(body.at)}` + (r.session_id ? ` · session ${r.session_id}` : '');
      document.getElementById('validity-events').replaceChildren(
        ...r.decided_by.map((e) =>
          el(
            'li',
            { class: 'event', 'data-type': e.type },
            el('span', { class: 'type' }, e.type),
            ` #${e.seq} ${when(e.at)}`,
            e.actor ? ` by ${e.actor}` : '',
          ),
        ),
      );
      say(`Replayed the log to ${when(body.at)}: ${r.valid ? 'valid' : r.reason}.`);
    });
  });

  // --- log integrity ----------------------------------------------------------
  const verifyResult = document.getElementById('verify-result');
  const checkpointResult = document.getElementById('checkpoint-result');

  function showCheckpoint(cp) {
    checkpointResult.textContent =
      `Latest checkpoint: seq ${cp.seq} (${when(cp.at)}) pins events 1..${cp.through_seq} ` +
      `to ${cp.head.slice(0, 16)}…, signed by ${cp.kid}.`;
  }

  document.getElementById('verify-log').addEventListener('click', () =>
    act(async () => {
      verifyResult.textContent = 'Verifying…';
      const r = await api('GET', '/v1/admin/log/verify');
      verifyResult.className = r.ok ? 'status-active' : 'status-revoked';
      verifyResult.textContent = r.ok
        ? `Intact: every event through seq ${r.verified_through} hashes and links.`
        : `Broken at seq ${r.first_bad_seq}: events through ${r.verified_through} verify; ` +
          'that one was edited, deleted or cut.';
      say(r.ok ? 'The log verifies.' : `The log is broken at seq ${r.first_bad_seq}.`);
    }),
  );
  document.getElementById('sign-checkpoint').addEventListener('click', () =>
    act(async () => {
      const cp = await api('POST', '/v1/admin/log/checkpoint');
      showCheckpoint(cp);
      say(`Signed checkpoint through seq ${cp.through_seq}.`);
    }),
  );
  api('GET', '/v1/admin/log/checkpoint')
    .then(showCheckpoint)
    .catch(() => {
      checkpointResult.textContent = 'No checkpoint yet.';
    });

  // --- client policies -------------------------------------------------------
  // One form per client type (pages.rs). A saved policy applies to sessions
  // that log in after it; the server checks every field and names the one
  // it refuses.
  const policyForms = [...document.querySelectorAll('form.policy')];
  const DEFAULT_PREFIX = { ipv4_prefix: 24, ipv6_prefix: 56 };

  function showPrefixes(form) {
    form.querySelector('.prefixes').hidden = form.elements.binding.value !== 'network';
  }

  function fillPolicy(form, p) {
    for (const f of ['access_ttl_secs', 'refresh_ttl_secs', 'session_max_secs']) form.elements[f].value = p[f];
    form.elements.idle_timeout_secs.value = p.idle_timeout_secs ?? '';
    for (const f of ['ipv4_prefix', 'ipv6_prefix']) form.elements[f].value = p[f] ?? DEFAULT_PREFIX[f];
    form.elements.binding.value = p.binding;
    form.elements.on_mismatch.value = p.on_mismatch;
    showPrefixes(form);
    form.querySelector('button[type=submit]').disabled = false;
  }

  async function loadPolicies() {
    const { policies } = await api('GET', '/v1/admin/policies');
    for (const form of policyForms) {
      const p = policies[form.dataset.clientType];
      if (p) fillPolicy(form, p);
    }
  }

  for (const form of policyForms) {
    form.elements.binding.addEventListener('change', () => showPrefixes(form));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const button = form.querySelector('button[type=submit]');
      const number = (f) => Number(form.elements[f].value);
      const policy = {
        access_ttl_secs: number('access_ttl_secs'),
        refresh_ttl_secs: number('refresh_ttl_secs'),
        session_max_secs: number('session_max_secs'),
        binding: form.elements.binding.value,
        ipv4_prefix: number('ipv4_prefix'),
        ipv6_prefix: number('ipv6_prefix'),
        on_mismatch: form.elements.on_mismatch.value,
      };
      // Empty: no idle timeout.
      const idle = form.elements.idle_timeout_secs.value.trim();
      if (idle !== '') policy.idle_timeout_secs = Number(idle);
      button.disabled = true;
      act(async () => {
        const r = await api('PUT', '/v1/admin/policies/' + encodeURIComponent(form.dataset.clientType), policy);
        fillPolicy(form, r.policy);
        say(`Saved: applies to logins from now on (seq ${r.seq}).`);
      }).finally(() => {
        button.disabled = false;
      });
    });
  }
  act(loadPolicies);

  // --- live events -----------------------------------------------------------
  const list = document.getElementById('events');
  const filterUser = document.getElementById('filter-user');
  const filterType = document.getElementById('filter-type');
  const streamState = document.getElementById('stream-state');

  function shown(li) {
    const u = filterUser.value.trim();
    const t = filterType.value;
    return (!u || li.dataset.user === u) && (!t || li.dataset.type === t);
  }

  function refilter() {
    for (const li of list.children) li.hidden = !shown(li);
  }
  filterUser.addEventListener('input', refilter);
  filterType.addEventListener('change', refilter);

  // The stream ends whenever the token it was opened with expires; what
  // happened while reconnecting is read from the log, from the last seq
  // shown.
  let lastSeq = 0;

  function frame(text) {
    let type = 'message';
    let data = '';
    for (const line of text.split('\n')) {
      if (line.startsWith('event:')) type = line.slice(6).trim();
      else if (line.startsWith('data:')) data += line.slice(5).trim();
    }
    if (type === 'end' || !data) return;
    try {
      show(JSON.parse(data));
    } catch {
      // not an event
    }
  }

  async function backfill() {
    for (;;) {
      const page = await api('GET', `/v1/admin/events?after=${lastSeq}&limit=1000`);
      for (const e of page.events) show(e);
      if (page.events.length === 0 || page.next_after <= lastSeq) return;
      lastSeq = Math.max(lastSeq, page.next_after);
    }
  }

  function show(e) {
    if (e.seq <= lastSeq) return;
    lastSeq = e.seq;
    const li = el(
      'li',
      { class: 'event', 'data-type': e.type, 'data-user': e.user_id || '' },
      el('span', { class: 'type' }, e.type),
      ` #${e.seq} ${when(e.at)}`,
      e.user_id ? ` user ${e.user_id}` : '',
      e.session_id ? ` session ${e.session_id}` : '',
      e.actor ? ` by ${e.actor}` : '',
    );
    li.hidden = !shown(li);
    list.prepend(li);
    while (list.children.length > 500) list.lastChild.remove();
  }

  async function follow() {
    // The log's head, from the revocation feed, read before the stream
    // opens: what comes after it is shown, from the stream or the log.
    try {
      lastSeq = (await api('GET', `/v1/revocations?after=${Number.MAX_SAFE_INTEGER}&limit=1`)).head_seq;
    } catch (e) {
      fail(e.message);
    }
    for (;;) {
      try {
        const res = await fetch('/v1/admin/events/stream', {
          headers: { authorization: 'Bearer ' + Recall.token() },
        });
        if (res.status === 401) {
          await Recall.refresh();
          continue;
        }
        if (!res.ok) throw new Error('HTTP ' + res.status);
        await backfill();
        streamState.textContent = 'live';
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            frame(buf.slice(0, i));
            buf = buf.slice(i + 2);
          }
        }
      } catch (e) {
        if (e.status === 401 || e.code === 'account_locked') return Recall.ended(e);
      }
      streamState.textContent = 'reconnecting…';
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  follow();
  setInterval(() => loadKeys().catch(() => {}), 5000);
})();
