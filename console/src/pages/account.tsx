// Account & API Keys: who you are, the endpoints to use, your keys; create (expiry from presets or
// a custom value, never above the maximum), the new secret shown once, rotate with a grace period,
// delete after confirmation.
import type { ComponentChildren } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import {
  type ApiKey,
  type ApiKeyCreated,
  type ApiKeyRotated,
  api,
  type KeyLimits,
  unwrap,
  unwrapPage,
} from '../api/client';
import { credential, signIn, signOut } from '../auth';
import { loadMe, me, meError } from '../session';
import {
  Action,
  ask,
  Copyable,
  Dialog,
  ErrorText,
  Form,
  Loading,
  minutesText,
  SelectField,
  TextField,
  when,
} from '../ui/kit';
import { cursorPaged, PAGE_SIZE, PagedView, usePaged } from '../ui/list';

const myKeys = cursorPaged<ApiKey, Record<string, never>>(({ limit, cursor }) =>
  unwrapPage(api.GET('/api/v1/api_keys', { params: { query: cursor ? { limit, cursor } : { limit } } })),
);

/** A page of a user's keys: what a person needs to tell them apart, never a secret. `current`
 * marks the key of this session; `actions` fills each row's last cell. */
export function KeyTable({
  items,
  current,
  actions,
}: {
  items: ApiKey[];
  current?: string;
  actions: (k: ApiKey) => ComponentChildren;
}) {
  return (
    <table>
      <thead>
        <tr>
          <th scope="col">Description</th>
          <th scope="col">Access key</th>
          <th scope="col">Secret</th>
          <th scope="col">Created</th>
          <th scope="col">Expires</th>
          <th scope="col">Last used</th>
          <th scope="col">
            <span class="sr-only">Actions</span>
          </th>
        </tr>
      </thead>
      <tbody>
        {items.map((k) => (
          <tr key={k.id} data-testid="key-row">
            <td>{k.description || <span class="muted">(none)</span>}</td>
            <td>
              <code>{k.access_key}</code>
              {current === k.id && <span class="tag">this session</span>}
            </td>
            <td>
              <code>{k.secret_hint}</code>
            </td>
            <td>{when(k.create_date)}</td>
            <td>{when(k.expires_at, 'never')}</td>
            <td>{when(k.last_used_at, 'never')}</td>
            <td class="row-actions">{actions(k)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** Lifetimes offered when creating a key, in minutes. */
export const TTL_PRESETS: ReadonlyArray<readonly [number, string]> = [
  [60, '1 hour'],
  [1440, '1 day'],
  [10080, '7 days'],
  [43200, '30 days'],
  [129600, '90 days'],
  [525600, '1 year'],
];

export function AccountPage() {
  const m = me.value;
  const [limits, setLimits] = useState<KeyLimits | null>(null);
  const [limitsError, setLimitsError] = useState<unknown>(null);
  const [creating, setCreating] = useState(false);
  const [rotating, setRotating] = useState<ApiKey | null>(null);
  const [shown, setShown] = useState<ApiKeyCreated | ApiKeyRotated | null>(null);
  const keys = usePaged(myKeys, {}, PAGE_SIZE);
  const origin = location.origin;

  const refreshLimits = () =>
    unwrap(api.GET('/api/v1/me/limits'))
      .then((l) => {
        setLimits(l);
        setLimitsError(null);
      })
      .catch(setLimitsError);
  useEffect(() => {
    void refreshLimits();
  }, []);

  const reveal = (k: ApiKeyCreated | ApiKeyRotated) => {
    setShown(k);
    void keys.reload();
    void refreshLimits();
  };

  return (
    <section aria-labelledby="account-title">
      <h1 id="account-title">Account &amp; API Keys</h1>
      {meError.value && <p class="form-error">{meError.value}</p>}
      {!m ? (
        <Loading what="your account" />
      ) : (
        <dl class="facts" data-testid="me">
          <dt>User</dt>
          <dd>{m.username}</dd>
          <dt>Tenant</dt>
          <dd>
            <code>{m.tenant_id}</code>
          </dd>
          <dt>Role</dt>
          <dd>{m.role}</dd>
          <dt>This key</dt>
          <dd>
            <code>{m.api_key.access_key}</code>, expires {when(m.api_key.expires_at, 'never')}
          </dd>
        </dl>
      )}

      <h2>API endpoint</h2>
      <dl class="facts">
        <dt>Management API</dt>
        <dd>
          <Copyable value={`${origin}/api/v1`} label="Copy the management API endpoint" />
        </dd>
        <dt>OpenAI-compatible relay</dt>
        <dd>
          <Copyable value={`${origin}/v1`} label="Copy the relay endpoint" />
        </dd>
      </dl>

      <div class="section-head">
        <h2>Your API keys</h2>
        {/* Offered once the limits say so; if they cannot be read, offered anyway (the API decides). */}
        {(limits ? limits.self_service_keys : limitsError != null) && (
          <button type="button" class="primary" onClick={() => setCreating(true)}>
            Create API key
          </button>
        )}
      </div>
      {limitsError ? <ErrorText error={limitsError} retry={() => void refreshLimits()} /> : null}
      {limits && (
        <p class="muted" data-testid="limits">
          {limits.active_keys} of {limits.max_keys_per_user} keys in use
          {limits.self_service_keys
            ? `; longest lifetime ${limits.max_ttl_minutes == null ? 'unlimited' : minutesText(limits.max_ttl_minutes)}.`
            : '. Creating keys for yourself is turned off here: an administrator can issue one.'}
        </p>
      )}
      <PagedView list={keys} what="your keys" empty="No keys.">
        {(items) => (
          <KeyTable
            items={items}
            current={m?.api_key.id}
            actions={(k) => (
              <>
                <button type="button" onClick={() => setRotating(k)}>
                  Rotate
                </button>
                <Action
                  class="danger"
                  label="Delete"
                  busy="Deleting…"
                  title={`Delete key ${k.access_key}`}
                  run={async () => {
                    const self = m?.api_key.id === k.id;
                    const yes = await ask(
                      'Delete this key?',
                      `${k.access_key} stops working at once.${self ? ' It is the key of this session: you will be signed out.' : ''}`,
                    );
                    if (!yes) return;
                    await unwrap(api.DELETE('/api/v1/api_keys/{id}', { params: { path: { id: k.id } } }));
                    if (self) {
                      signOut('the key of this session was deleted');
                      return;
                    }
                    await keys.reload();
                    void refreshLimits();
                  }}
                />
              </>
            )}
          />
        )}
      </PagedView>

      {creating && (
        <CreateKeyDialog
          limits={limits}
          onClose={() => setCreating(false)}
          onCreated={(k) => {
            setCreating(false);
            reveal(k);
          }}
        />
      )}
      {rotating && (
        <RotateDialog
          apiKey={rotating}
          onClose={() => setRotating(null)}
          onRotated={(k) => {
            setRotating(null);
            // The session's own key: keep working with its new secret.
            if (m?.api_key.id === k.id && credential.value?.kind === 'user') {
              signIn({ kind: 'user', token: k.token });
              void loadMe();
            }
            reveal(k);
          }}
        />
      )}
      {shown && <ShowOnce apiKey={shown} onClose={() => setShown(null)} />}
    </section>
  );
}

function CreateKeyDialog(props: {
  limits: KeyLimits | null;
  onClose: () => void;
  onCreated: (k: ApiKeyCreated) => void;
}) {
  const max = props.limits?.max_ttl_minutes ?? null;
  const presets = TTL_PRESETS.filter(([m]) => max == null || m <= max);
  const [description, setDescription] = useState('');
  const [choice, setChoice] = useState<string>(
    max == null ? '43200' : String(presets.at(-1)?.[0] ?? 'custom'),
  );
  const [custom, setCustom] = useState('');
  const [unit, setUnit] = useState('1440');
  const options: Array<readonly [string, string]> = presets.map(([m, t]) => [String(m), t] as const);
  if (max != null && !presets.some(([m]) => m === max))
    options.push([String(max), `${minutesText(max)} (the maximum)`]);
  if (max == null) options.push(['never', 'Never expires']);
  options.push(['custom', 'Custom…']);

  const submit = async () => {
    let ttl: number | null = null;
    if (choice === 'custom') {
      const n = Number(custom);
      if (!Number.isInteger(n) || n < 1)
        throw new Error('The custom lifetime must be a whole number of at least 1');
      ttl = n * Number(unit);
    } else if (choice !== 'never') {
      ttl = Number(choice);
    }
    if (ttl != null && max != null && ttl > max) {
      throw new Error(`The lifetime may be at most ${minutesText(max)}`);
    }
    const k = await unwrap(
      api.POST('/api/v1/api_keys', { body: { description: description.trim(), ttl_minutes: ttl } }),
    );
    props.onCreated(k);
  };

  return (
    <Dialog title="Create API key" onClose={props.onClose}>
      <Form
        onSubmit={submit}
        submit="Create"
        busy="Creating…"
        onCancel={props.onClose}
        label="Create API key"
      >
        <TextField
          label="Description"
          value={description}
          onValue={setDescription}
          maxLength={256}
          hint="What the key is for, e.g. the machine or the app."
          autofocus
        />
        <SelectField
          label="Expires after"
          value={choice}
          onValue={setChoice}
          options={options}
          hint={
            max == null
              ? undefined
              : max === props.limits?.admin_max_ttl_minutes
                ? `At most ${minutesText(max)}, as the admin set it.`
                : `At most ${minutesText(max)}: the key you signed in with expires then, and a key cannot create one that outlives it.`
          }
        />
        {choice === 'custom' && (
          <div class="row">
            <TextField
              label="Custom lifetime"
              type="number"
              min={1}
              value={custom}
              onValue={setCustom}
              required
            />
            <SelectField
              label="Unit"
              value={unit}
              onValue={setUnit}
              options={[
                ['1', 'minutes'],
                ['60', 'hours'],
                ['1440', 'days'],
              ]}
            />
          </div>
        )}
      </Form>
    </Dialog>
  );
}

function RotateDialog(props: { apiKey: ApiKey; onClose: () => void; onRotated: (k: ApiKeyRotated) => void }) {
  const [grace, setGrace] = useState('10');
  const submit = async () => {
    const g = Number(grace);
    if (!Number.isInteger(g) || g < 0 || g > 1440) throw new Error('The grace period is 0 to 1440 minutes');
    const k = await unwrap(
      api.POST('/api/v1/api_keys/{id}/rotate', {
        params: { path: { id: props.apiKey.id } },
        body: { grace_minutes: g },
      }),
    );
    props.onRotated(k);
  };
  return (
    <Dialog title="Rotate API key" onClose={props.onClose}>
      <p>
        A new secret for <code>{props.apiKey.access_key}</code>; the access key stays the same.
      </p>
      <Form
        onSubmit={submit}
        submit="Rotate"
        busy="Rotating…"
        onCancel={props.onClose}
        label="Rotate API key"
      >
        <TextField
          label="Grace period (minutes)"
          type="number"
          min={0}
          max={1440}
          value={grace}
          onValue={setGrace}
          hint="How long the old secret keeps working: 0 to 1440 minutes."
          autofocus
        />
      </Form>
    </Dialog>
  );
}

/** The secret of a new or rotated key, shown this once; closing forgets it. */
export function ShowOnce(props: { apiKey: ApiKeyCreated | ApiKeyRotated; onClose: () => void }) {
  const k = props.apiKey;
  return (
    <Dialog title="Your new API key" onClose={props.onClose} wide testId="show-once">
      <p class="warning" role="alert">
        Copy it now: the secret will not be shown again.
      </p>
      <dl class="facts">
        <dt>Bearer token</dt>
        <dd>
          <Copyable value={k.token} label="Copy the bearer token" testId="new-token" />
        </dd>
        <dt>Access key</dt>
        <dd>
          <Copyable value={k.access_key} label="Copy the access key" testId="new-access-key" />
        </dd>
        <dt>Secret key</dt>
        <dd>
          <Copyable value={k.secret_key} label="Copy the secret key" testId="new-secret-key" />
        </dd>
        <dt>Expires</dt>
        <dd>{when(k.expires_at, 'never')}</dd>
        {'previous_secret_valid_until' in k && (
          <>
            <dt>Old secret works until</dt>
            <dd>{when(k.previous_secret_valid_until, 'stopped at once')}</dd>
          </>
        )}
      </dl>
      <div class="actions">
        <button type="button" class="primary" onClick={props.onClose}>
          I have copied it
        </button>
      </div>
    </Dialog>
  );
}
