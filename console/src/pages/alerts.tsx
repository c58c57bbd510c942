// Budget alerts: the tenant's webhook, where keyward posts one signed event when a gateway key's
// or the tenant's budget reaches 80% and 100% in its period. Owners and admins set the URL (the
// secret is generated and shown once, or chosen), send a test event, renew the secret or remove
// the webhook.
import { useEffect, useState } from 'preact/hooks';
import { ApiError, api, type Schemas, unwrap } from '../api/client';
import { Action, ask, Copyable, Dialog, ErrorText, Form, Loading, notify, TextField, when } from '../ui/kit';

type Webhook = Schemas['Webhook'];

export function BudgetAlerts() {
  // undefined: loading; null: none set.
  const [hook, setHook] = useState<Webhook | null | undefined>(undefined);
  const [error, setError] = useState<unknown>(null);
  const [url, setUrl] = useState('');
  const [secret, setSecret] = useState('');
  const [shown, setShown] = useState<string | null>(null);

  const load = async () => {
    setError(null);
    try {
      const w = await unwrap(api.GET('/api/v1/tenant/webhook'));
      setHook(w);
      setUrl(w.url);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) setHook(null);
      else setError(e);
    }
  };
  useEffect(() => {
    void load();
  }, []);

  /** Show a generated secret once, and keep only the answer's other fields. */
  const saved = (w: Webhook) => {
    if (w.secret) setShown(w.secret);
    setHook({ ...w, secret: undefined });
    setUrl(w.url);
    setSecret('');
  };

  if (error) return <ErrorText error={error} retry={load} />;
  if (hook === undefined) return <Loading what="budget alerts" />;
  return (
    <section aria-labelledby="alerts-title" data-testid="budget-alerts">
      <h2 id="alerts-title">Budget alerts</h2>
      <p class="muted">
        When a gateway key's or the tenant's token budget reaches 80% and 100% in its period, keyward posts
        one signed event to this URL (header <code>keyward-signature</code>: HMAC-SHA256 over the timestamp
        and the body), retrying a receiver that fails.
      </p>
      {hook && (
        <dl class="facts" data-testid="webhook">
          <dt>URL</dt>
          <dd>
            <code>{hook.url}</code>
          </dd>
          <dt>Secret</dt>
          <dd>
            <code>{hook.secret_hint}</code>
          </dd>
          <dt>Changed</dt>
          <dd>{when(hook.update_date)}</dd>
        </dl>
      )}
      <Form
        label="Webhook"
        submit={hook ? 'Save webhook' : 'Set webhook'}
        busy="Saving…"
        onSubmit={async () => {
          const body = secret ? { url: url.trim(), secret } : { url: url.trim() };
          saved(await unwrap(api.PUT('/api/v1/tenant/webhook', { body })));
          notify('ok', 'Webhook saved');
        }}
      >
        <TextField
          label="Webhook URL"
          type="url"
          required
          value={url}
          onValue={setUrl}
          placeholder="https://"
        />
        <TextField
          label="Signing secret"
          type="password"
          value={secret}
          onValue={setSecret}
          autocomplete="new-password"
          hint={hook ? 'Leave empty to keep the current secret.' : 'Leave empty to have one generated.'}
        />
      </Form>
      {hook && (
        <div class="actions">
          <Action
            label="Send test event"
            busy="Sending…"
            run={async () => {
              const r = await unwrap(api.POST('/api/v1/tenant/webhook/test'));
              if (r.delivered) notify('ok', `Test event delivered (HTTP ${r.status})`);
              else notify('error', `Test event not delivered: ${r.error ?? 'no answer'}`);
            }}
          />
          <Action
            label="New secret"
            busy="Renewing…"
            run={async () => {
              if (
                !(await ask(
                  'Renew the secret?',
                  'Events are signed with the new secret from now on.',
                  'Renew',
                ))
              )
                return;
              saved(
                await unwrap(
                  api.PUT('/api/v1/tenant/webhook', { body: { url: hook.url, new_secret: true } }),
                ),
              );
            }}
          />
          <Action
            class="danger"
            label="Remove"
            busy="Removing…"
            done="Webhook removed"
            run={async () => {
              if (
                !(await ask('Remove the webhook?', 'Budget alerts are no longer posted anywhere.', 'Remove'))
              )
                return;
              await unwrap(api.DELETE('/api/v1/tenant/webhook'));
              setHook(null);
              setUrl('');
            }}
          />
        </div>
      )}
      {shown && (
        <Dialog title="The webhook's signing secret" onClose={() => setShown(null)} testId="webhook-secret">
          <p class="warning" role="alert">
            Copy it now into your receiver: it will not be shown again.
          </p>
          <Copyable value={shown} label="Copy the signing secret" testId="new-webhook-secret" />
          <div class="actions">
            <button type="button" class="primary" onClick={() => setShown(null)}>
              I have copied it
            </button>
          </div>
        </Dialog>
      )}
    </section>
  );
}
