// The login page: log in, register while registration is open, and say why
// the user is here when a session ended.
'use strict';

(() => {
  const reasons = {
    ended: 'This device was logged out.',
    locked: 'Your account has been locked, so every session was logged out.',
    logged_out: 'You logged out.',
    everywhere: 'You logged out everywhere.',
  };
  const q = new URLSearchParams(location.search);
  const reason = q.get('reason');
  if (reason && reasons[reason]) {
    const n = document.getElementById('notice');
    n.textContent = reasons[reason] + (q.get('detail') ? ' (' + q.get('detail') + ')' : '');
    n.className = reason === 'locked' || reason === 'ended' ? 'error' : 'notice';
    n.hidden = false;
  }

  function showError(e) {
    const n = document.getElementById('error');
    n.textContent = e.message;
    n.hidden = false;
  }

  const next = () => location.replace(q.get('next') === 'admin' ? '/admin' : '/account');

  document.getElementById('login').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      await Recall.login(
        document.getElementById('login-username').value,
        document.getElementById('login-password').value,
      );
      next();
    } catch (e) {
      showError(e);
    }
  });

  const register = document.getElementById('register');
  if (register) {
    register.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const username = document.getElementById('register-username').value;
      const password = document.getElementById('register-password').value;
      try {
        await Recall.register(username, password);
        await Recall.login(username, password);
        next();
      } catch (e) {
        showError(e);
      }
    });
  }
})();
