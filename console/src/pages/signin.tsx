// Sign in: a user key (the bearer token, or the access key and secret key in two fields) or the
// admin token. The credential is checked with one call before it is kept; a refusal shows the
// API's message, a 429 when to try again.
import { useState } from 'preact/hooks';
import { api, unwrap } from '../api/client';
import { signIn, signOutReason } from '../auth';
import { navigate, path } from '../router';
import { Form, TextField } from '../ui/kit';

type Mode = 'token' | 'pair' | 'admin';

export function SignInPage() {
  const [mode, setMode] = useState<Mode>('token');
  const [token, setToken] = useState('');
  const [access, setAccess] = useState('');
  const [secret, setSecret] = useState('');
  const [admin, setAdmin] = useState('');
  const reason = signOutReason.value;

  const submit = async () => {
    if (mode === 'admin') {
      const t = admin.trim();
      if (!t) throw new Error('Enter the admin token');
      await unwrap(api.GET('/api/v1/admin/settings', { headers: { authorization: `Bearer ${t}` } }));
      signIn({ kind: 'admin', token: t });
      setAdmin('');
      if (!path.value.startsWith('/admin/')) navigate('/admin/tenants', true);
      return;
    }
    const t = mode === 'token' ? token.trim() : `${access.trim()}:${secret.trim()}`;
    if (mode === 'token' && !t) throw new Error('Enter your API key');
    if (mode === 'pair' && (!access.trim() || !secret.trim()))
      throw new Error('Enter the access key and the secret key');
    await unwrap(api.GET('/api/v1/me', { headers: { authorization: `Bearer ${t}` } }));
    signIn({ kind: 'user', token: t });
    setToken('');
    setSecret('');
    if (path.value === '/' || path.value.startsWith('/admin') || path.value === '/signin')
      navigate('/account', true);
  };

  return (
    <section class="signin" aria-labelledby="signin-title">
      <h1 id="signin-title">Sign in to keyward</h1>
      {reason && (
        <p class="form-error" role="alert">
          Signed out: {reason}
        </p>
      )}
      <div class="tabs" role="tablist" aria-label="Credential">
        {(
          [
            ['token', 'API key'],
            ['pair', 'Access key + secret key'],
            ['admin', 'Admin token'],
          ] as const
        ).map(([m, text]) => (
          <button
            key={m}
            type="button"
            role="tab"
            aria-selected={mode === m}
            class={mode === m ? 'selected' : ''}
            onClick={() => setMode(m)}
          >
            {text}
          </button>
        ))}
      </div>
      <Form onSubmit={submit} submit="Sign in" busy="Signing in…" label="Sign in">
        {mode === 'token' && (
          <TextField
            label="API key"
            type="password"
            value={token}
            onValue={setToken}
            placeholder="kwa_…:kws_…"
            hint="The token shown when the key was created: access key, a colon, secret key."
            autofocus
          />
        )}
        {mode === 'pair' && (
          <>
            <TextField label="Access key" value={access} onValue={setAccess} placeholder="kwa_…" autofocus />
            <TextField
              label="Secret key"
              type="password"
              value={secret}
              onValue={setSecret}
              placeholder="kws_…"
            />
          </>
        )}
        {mode === 'admin' && (
          <TextField
            label="Admin token"
            type="password"
            value={admin}
            onValue={setAdmin}
            hint="The deployment's ADMIN_TOKEN (locally in .dev.vars; `make dev` prints it)."
            autofocus
          />
        )}
      </Form>
      <p class="muted">
        The credential stays in this tab only (memory and session storage) and is forgotten when you sign out
        or close the tab.
      </p>
    </section>
  );
}
