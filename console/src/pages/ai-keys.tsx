// AI API keys (gateway keys), as APIPark's page: a paged table with search and filters, create and
// update with their rules, a details view with the usage counters, delete after "Confirm Delete?".
import { useEffect, useState } from 'preact/hooks';
import { type AiKey, api, type CreateAiKeyRequest, type UpdateAiKeyRequest, unwrap } from '../api/client';
import { canManage } from '../session';
import { Action, ask, Dialog, Form, SelectField, TextField, when } from '../ui/kit';
import { PagedView, serverPaged, usePaged } from '../ui/list';
import { BudgetBar, UsageChart } from '../ui/usage';
import { BudgetAlerts } from './alerts';
import { type Configured, loadConfigured } from './models';

interface Filters {
  search: string;
  provider: string;
  status: '' | 'enabled' | 'disabled';
}

const source = serverPaged<AiKey, Filters>(async ({ page, pageSize, filters }) =>
  unwrap(
    api.GET('/api/v1/ai_keys', {
      params: {
        query: {
          page,
          page_size: pageSize,
          ...(filters.search.trim() ? { search: filters.search.trim() } : {}),
          ...(filters.provider ? { provider: filters.provider } : {}),
          ...(filters.status ? { status: filters.status } : {}),
        },
      },
    }),
  ),
);

const limitText = (n: number) => (n === 0 ? 'unlimited' : n.toLocaleString('en'));
type Period = AiKey['budget_period'];

export function AiKeysPage() {
  const [filters, setFilters] = useState<Filters>({ search: '', provider: '', status: '' });
  const [search, setSearch] = useState('');
  const list = usePaged(source, filters, 10);
  const [configured, setConfigured] = useState<Configured | null>(null);
  const [editing, setEditing] = useState<AiKey | 'new' | null>(null);
  const [viewing, setViewing] = useState<AiKey | null>(null);
  const manage = canManage();

  useEffect(() => {
    loadConfigured()
      .then(setConfigured)
      .catch(() => setConfigured({}));
  }, []);
  // Search as the user types, a moment after the last key.
  useEffect(() => {
    const t = setTimeout(() => setFilters((f) => (f.search === search ? f : { ...f, search })), 250);
    return () => clearTimeout(t);
  }, [search]);

  const providers = Object.keys(configured ?? {})
    .filter((p) => p !== 'Builtin')
    .sort();

  return (
    <section aria-labelledby="aikeys-title">
      <div class="section-head">
        <h1 id="aikeys-title">AI API keys</h1>
        {manage && (
          <button
            type="button"
            class="primary"
            onClick={() => setEditing('new')}
            disabled={providers.length === 0}
          >
            Create
          </button>
        )}
      </div>
      {manage && configured && providers.length === 0 && (
        <p class="muted">Add a model provider first: a gateway key calls one of the tenant's models.</p>
      )}
      {!manage && (
        <p class="muted" data-testid="read-only">
          Your role can read the tenant's gateway keys; owners and admins change them.
        </p>
      )}
      <div class="filters">
        <TextField
          label="Search"
          type="search"
          value={search}
          onValue={setSearch}
          placeholder="Alias or provider"
        />
        <SelectField
          label="Provider"
          value={filters.provider}
          onValue={(provider) => setFilters((f) => ({ ...f, provider }))}
          options={[['', 'All providers'], ...providers.map((p) => [p, p] as const)]}
        />
        <SelectField
          label="Status"
          value={filters.status}
          onValue={(s) => setFilters((f) => ({ ...f, status: s as Filters['status'] }))}
          options={[
            ['', 'Any status'],
            ['enabled', 'Enabled'],
            ['disabled', 'Disabled'],
          ]}
        />
      </div>
      <PagedView list={list} what="gateway keys" empty="No gateway keys match.">
        {(items) => (
          <table>
            <thead>
              <tr>
                <th scope="col">Alias</th>
                <th scope="col">Provider / model</th>
                <th scope="col">Status</th>
                <th scope="col">Key</th>
                <th scope="col">Limits (in / out)</th>
                <th scope="col">Expires</th>
                <th scope="col">
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {items.map((k) => (
                <tr key={k.id} data-testid="aikey-row">
                  <td>{k.alias}</td>
                  <td>
                    {k.provider} / {k.model}
                  </td>
                  <td>
                    <span class={`status ${k.status}`}>{k.status}</span>
                  </td>
                  <td>
                    <code>{k.api_key_hint}</code>
                  </td>
                  <td>
                    {limitText(k.input_limit)} / {limitText(k.output_limit)}
                  </td>
                  <td>{when(k.expire_time, 'never')}</td>
                  <td class="row-actions">
                    <Action
                      label="Details"
                      busy="Loading…"
                      title={`Details of ${k.alias}`}
                      run={async () =>
                        setViewing(
                          await unwrap(api.GET('/api/v1/ai_keys/{id}', { params: { path: { id: k.id } } })),
                        )
                      }
                    />
                    {manage && (
                      <>
                        <button type="button" onClick={() => setEditing(k)} aria-label={`Update ${k.alias}`}>
                          Update
                        </button>
                        <Action
                          class="danger"
                          label="Delete"
                          busy="Deleting…"
                          title={`Delete ${k.alias}`}
                          done={`Deleted ${k.alias}`}
                          run={async () => {
                            if (
                              !(await ask(
                                'Confirm Delete?',
                                `The gateway key ${k.alias} is deleted; the relay refuses it at once.`,
                              ))
                            )
                              return;
                            await unwrap(
                              api.DELETE('/api/v1/ai_keys/{id}', { params: { path: { id: k.id } } }),
                            );
                            await list.reload();
                          }}
                        />
                      </>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </PagedView>
      {editing && (
        <AiKeyDialog
          existing={editing === 'new' ? null : editing}
          configured={configured ?? {}}
          onClose={() => setEditing(null)}
          onSaved={async () => {
            setEditing(null);
            await list.reload();
          }}
        />
      )}
      {viewing && <DetailsDialog k={viewing} onClose={() => setViewing(null)} />}
      {manage && <BudgetAlerts />}
    </section>
  );
}

/** `datetime-local` value (local time, minutes) of an RFC 3339 time, and back. */
function toLocalInput(s: string | null): string {
  if (!s) return '';
  const d = new Date(s);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}
function fromLocalInput(s: string): string | null {
  if (!s) return null;
  const d = new Date(s);
  if (Number.isNaN(d.getTime())) throw new Error('The expiry is not a valid date and time');
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function AiKeyDialog(props: {
  existing: AiKey | null;
  configured: Configured;
  onClose: () => void;
  onSaved: () => Promise<void>;
}) {
  const e = props.existing;
  const providers = Object.keys(props.configured)
    .filter((p) => p !== 'Builtin')
    .sort();
  const [alias, setAlias] = useState(e?.alias ?? '');
  const [provider, setProvider] = useState(e?.provider ?? providers[0] ?? '');
  const modelsOf = (p: string) => Array.from(new Set((props.configured[p]?.llm ?? []).map((m) => m.name)));
  const [model, setModel] = useState(e?.model ?? modelsOf(provider)[0] ?? '');
  const [status, setStatus] = useState<'enabled' | 'disabled'>(e?.status ?? 'disabled');
  // The provider keys of the pool, in priority order: the first, then its fallbacks.
  const [apiKeys, setApiKeys] = useState<string[]>(['']);
  const setKeyAt = (i: number, v: string) => setApiKeys((ks) => ks.map((k, j) => (j === i ? v : k)));
  const [inputLimit, setInputLimit] = useState(e ? String(e.input_limit) : '');
  const [outputLimit, setOutputLimit] = useState(e ? String(e.output_limit) : '0');
  const [policy, setPolicy] = useState<'reject' | 'use_anyway'>(e?.usage_limit_policy ?? 'reject');
  const [expire, setExpire] = useState(toLocalInput(e?.expire_time ?? null));
  const [rpm, setRpm] = useState(e ? String(e.rpm_limit) : '0');
  const [tpm, setTpm] = useState(e ? String(e.tpm_limit) : '0');
  const [budget, setBudget] = useState(e ? String(e.token_budget) : '0');
  const [period, setPeriod] = useState<Period>(e?.budget_period ?? 'month');

  const models = modelsOf(provider);
  if (model && !models.includes(model)) models.unshift(model);

  const limit = (s: string, name: string, required: boolean, most = 10_000_000) => {
    if (!s.trim()) {
      if (required) throw new Error(`${name} is required (0 means unlimited)`);
      return 0;
    }
    const n = Number(s);
    if (!Number.isInteger(n) || n < 0 || n > most) throw new Error(`${name} is 0 to ${most}`);
    return n;
  };

  const submit = async () => {
    const keys = apiKeys.filter((k) => k !== '');
    if (!e && keys.length === 0) throw new Error('API key is required');
    // One key is `api_key`, a pool of one; more are `api_keys`, tried in this order.
    const pool = keys.length > 1 ? { api_keys: keys } : keys.length === 1 ? { api_key: keys[0] } : {};
    const input_limit = limit(inputLimit, 'Input limit', true);
    const output_limit = limit(outputLimit, 'Output limit', false);
    const rpm_limit = limit(rpm, 'Requests per minute', false, 1_000_000);
    const tpm_limit = limit(tpm, 'Tokens per minute', false, 1_000_000_000);
    const token_budget = limit(budget, 'Token budget', false, 1_000_000_000_000);
    const expire_time = fromLocalInput(expire);
    if (!e) {
      const body: CreateAiKeyRequest = {
        alias: alias.trim(),
        provider,
        model,
        ...pool,
        input_limit,
        output_limit,
        usage_limit_policy: policy,
        rpm_limit,
        tpm_limit,
        token_budget,
        budget_period: period,
        status,
        expire_time,
      };
      await unwrap(api.POST('/api/v1/ai_keys', { body }));
    } else {
      // Only what changed, so a concurrent change of another field is not overwritten.
      const body: UpdateAiKeyRequest = {};
      if (alias.trim() !== e.alias) body.alias = alias.trim();
      if (provider !== e.provider) body.provider = provider;
      if (model !== e.model) body.model = model;
      Object.assign(body, pool);
      if (input_limit !== e.input_limit) body.input_limit = input_limit;
      if (output_limit !== e.output_limit) body.output_limit = output_limit;
      if (policy !== e.usage_limit_policy) body.usage_limit_policy = policy;
      if (rpm_limit !== e.rpm_limit) body.rpm_limit = rpm_limit;
      if (tpm_limit !== e.tpm_limit) body.tpm_limit = tpm_limit;
      if (token_budget !== e.token_budget) body.token_budget = token_budget;
      if (period !== e.budget_period) body.budget_period = period;
      if (status !== e.status) body.status = status;
      if (expire_time !== (e.expire_time ? fromLocalInput(toLocalInput(e.expire_time)) : null))
        body.expire_time = expire_time;
      if (Object.keys(body).length === 0) throw new Error('Nothing was changed');
      await unwrap(api.PUT('/api/v1/ai_keys/{id}', { params: { path: { id: e.id } }, body }));
    }
    await props.onSaved();
  };

  return (
    <Dialog
      title={e ? `Update ${e.alias}` : 'Create AI API key'}
      onClose={props.onClose}
      wide
      testId="aikey-form"
    >
      <Form
        onSubmit={submit}
        submit={e ? 'Save' : 'Create'}
        busy="Saving…"
        onCancel={props.onClose}
        label={e ? 'Update AI API key' : 'Create AI API key'}
      >
        <div class="grid2">
          <TextField
            label="Alias"
            value={alias}
            onValue={setAlias}
            required
            maxLength={64}
            pattern="[A-Za-z0-9._\-]{1,64}"
            hint="1 to 64 letters, digits and . _ -; the relay's model field names the key by it."
            autofocus
          />
          <SelectField
            label="Status"
            value={status}
            onValue={(s) => setStatus(s as 'enabled' | 'disabled')}
            options={[
              ['disabled', 'Disabled'],
              ['enabled', 'Enabled'],
            ]}
          />
          <SelectField
            label="Provider"
            value={provider}
            onValue={(p) => {
              setProvider(p);
              setModel(modelsOf(p)[0] ?? '');
            }}
            options={providers.map((p) => [p, p] as const)}
            required
          />
          <SelectField
            label="Model"
            value={model}
            onValue={setModel}
            options={models.map((m) => [m, m] as const)}
            required
          />
          {apiKeys.map((k, i) => (
            <TextField
              key={i}
              label={i === 0 ? (e ? 'API key (leave empty to keep)' : 'API key') : `Fallback key ${i + 1}`}
              type="password"
              value={k}
              onValue={(v) => setKeyAt(i, v)}
              required={!e && i === 0}
              autocomplete="new-password"
              hint={
                i > 0
                  ? 'Tried when the keys before it are rate limited, failing or refused.'
                  : e
                    ? `Now ${e.pool.map((m) => m.api_key_hint).join(', ')}; keys entered here replace the whole pool.`
                    : 'The provider key this gateway key calls with; never shown again.'
              }
            />
          ))}
          {apiKeys.length < 5 && (
            <div class="field">
              <button type="button" onClick={() => setApiKeys((ks) => [...ks, ''])}>
                Add a fallback key
              </button>
            </div>
          )}
          <TextField
            label="Input limit"
            type="number"
            min={0}
            value={inputLimit}
            onValue={setInputLimit}
            required
            hint="Most input tokens per request; 0 = unlimited."
          />
          <TextField
            label="Output limit"
            type="number"
            min={0}
            value={outputLimit}
            onValue={setOutputLimit}
            hint="Most output tokens per request; 0 = unlimited."
          />
          <SelectField
            label="Usage limit policy"
            value={policy}
            onValue={(p) => setPolicy(p as 'reject' | 'use_anyway')}
            options={[
              ['reject', 'Reject'],
              ['use_anyway', 'Use Anyway'],
            ]}
          />
          <TextField
            label="Requests per minute"
            type="number"
            min={0}
            value={rpm}
            onValue={setRpm}
            hint="Across every location at once; 0 = none."
          />
          <TextField
            label="Tokens per minute"
            type="number"
            min={0}
            value={tpm}
            onValue={setTpm}
            hint="Input and output tokens; 0 = none."
          />
          <TextField
            label="Token budget"
            type="number"
            min={0}
            value={budget}
            onValue={setBudget}
            hint="Tokens per budget period; 0 = none. Changing it mid-period keeps the spend so far."
          />
          <SelectField
            label="Budget period"
            value={period}
            onValue={(p) => setPeriod(p as Period)}
            options={[
              ['day', 'Day (UTC)'],
              ['week', 'Week (from Monday, UTC)'],
              ['month', 'Month (UTC)'],
              ['total', 'Total (never resets)'],
            ]}
          />
          <TextField
            label="Expires (optional)"
            type="datetime-local"
            value={expire}
            onValue={setExpire}
            hint="Empty: never."
          />
        </div>
      </Form>
    </Dialog>
  );
}

function DetailsDialog(props: { k: AiKey; onClose: () => void }) {
  const k = props.k;
  return (
    <Dialog title={`Gateway key ${k.alias}`} onClose={props.onClose} testId="aikey-details" wide>
      <dl class="facts">
        <dt>Provider / model</dt>
        <dd>
          {k.provider} / {k.model}
        </dd>
        <dt>Status</dt>
        <dd>{k.status}</dd>
        <dt>{k.pool.length > 1 ? 'Keys, in the order tried' : 'Key'}</dt>
        <dd>
          <ol class="pool" data-testid="pool">
            {k.pool.map((m) => (
              <li key={m.index}>
                <code>{m.api_key_hint}</code>{' '}
                <span class="muted">
                  {m.requests.toLocaleString('en')} {m.requests === 1 ? 'call' : 'calls'} served
                </span>
              </li>
            ))}
          </ol>
        </dd>
        <dt>Last served by</dt>
        <dd data-testid="last-served-by">
          {k.last_served_by ? <code>{k.last_served_by.api_key_hint}</code> : 'none yet'}
        </dd>
        <dt>Sent only to</dt>
        <dd data-testid="endpoint-host">
          {k.endpoint_host ? (
            <code>{k.endpoint_host}</code>
          ) : (
            <span class="muted">no endpoint yet: set the key again before the relay will use it</span>
          )}
        </dd>
        <dt>Input limit</dt>
        <dd>{limitText(k.input_limit)}</dd>
        <dt>Output limit</dt>
        <dd>{limitText(k.output_limit)}</dd>
        <dt>Usage limit policy</dt>
        <dd>{k.usage_limit_policy === 'reject' ? 'Reject' : 'Use Anyway'}</dd>
        <dt>Per minute</dt>
        <dd data-testid="per-minute">
          {limitText(k.rpm_limit)} requests, {limitText(k.tpm_limit)} tokens
        </dd>
        <dt>Token budget</dt>
        <dd>
          {k.token_budget === 0 ? (
            'none'
          ) : (
            <BudgetBar
              keyId={k.id}
              budget={k.token_budget}
              period={k.budget_period}
              since={Date.parse(k.create_date)}
            />
          )}
        </dd>
        <dt>Used input tokens</dt>
        <dd data-testid="used-input">{k.used_input_tokens.toLocaleString('en')}</dd>
        <dt>Used output tokens</dt>
        <dd data-testid="used-output">{k.used_output_tokens.toLocaleString('en')}</dd>
        <dt>Last used</dt>
        <dd data-testid="last-used">{when(k.last_used_at, 'never')}</dd>
        <dt>Expires</dt>
        <dd>{when(k.expire_time, 'never')}</dd>
        <dt>Created</dt>
        <dd>{when(k.create_date)}</dd>
        <dt>Updated</dt>
        <dd>{when(k.update_date)}</dd>
      </dl>
      <UsageChart of={{ key: k.id }} title="Usage over time" />
      <div class="actions">
        <button type="button" class="primary" onClick={props.onClose}>
          Close
        </button>
      </div>
    </Dialog>
  );
}
