// The admin area (admin token): tenants, the settings that govern keys, the audit log.
import { useEffect, useState } from 'preact/hooks';
import { type AuditEntry, api, type Settings, type Tenant, unwrap, unwrapPage } from '../api/client';
import {
  Action,
  ask,
  Dialog,
  ErrorText,
  Form,
  Loading,
  minutesText,
  notify,
  SelectField,
  TextField,
  when,
} from '../ui/kit';
import { cursorPaged, PAGE_SIZE, PagedView, usePaged } from '../ui/list';

/** Oldest first, one page at a time: the API has no search over tenants, so neither does the page. */
const tenantSource = cursorPaged<Tenant, Record<string, never>>(({ limit, cursor }) =>
  unwrapPage(api.GET('/api/v1/admin/tenants', { params: { query: cursor ? { limit, cursor } : { limit } } })),
);

/**
 * The tenants for a choice (a filter, a new user's tenant): the first 1000, the most one page
 * holds; a deployment with more is chosen from by id elsewhere.
 */
export async function tenantChoices(): Promise<Tenant[]> {
  return unwrap(api.GET('/api/v1/admin/tenants', { params: { query: { limit: 1000 } } }));
}

export function AdminTenantsPage() {
  const list = usePaged(tenantSource, {}, PAGE_SIZE);
  const [creating, setCreating] = useState(false);
  const [limiting, setLimiting] = useState<Tenant | null>(null);
  return (
    <section aria-labelledby="tenants-title">
      <div class="section-head">
        <h1 id="tenants-title">Tenants</h1>
        <button type="button" class="primary" onClick={() => setCreating(true)}>
          Create tenant
        </button>
      </div>
      <PagedView list={list} what="tenants" empty="No tenants.">
        {(items) => (
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Id</th>
                <th scope="col">Created</th>
                <th scope="col">Limits over time</th>
                <th scope="col">
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {items.map((t) => (
                <tr key={t.id} data-testid="tenant-row">
                  <td>{t.name}</td>
                  <td>
                    <code>{t.id}</code>
                  </td>
                  <td>{when(t.create_date)}</td>
                  <td data-testid="tenant-limits">{tenantLimitsText(t)}</td>
                  <td class="row-actions">
                    <button type="button" onClick={() => setLimiting(t)} aria-label={`Limits of ${t.name}`}>
                      Limits
                    </button>
                    <Action
                      class="danger"
                      label="Delete"
                      busy="Deleting…"
                      title={`Delete tenant ${t.name}`}
                      done={`Deleted tenant ${t.name}`}
                      run={async () => {
                        if (
                          !(await ask(
                            'Delete this tenant?',
                            `${t.name}: its users, their keys, its providers and gateway keys are deleted.`,
                          ))
                        )
                          return;
                        await unwrap(
                          api.DELETE('/api/v1/admin/tenants/{tenant_id}', {
                            params: { path: { tenant_id: t.id } },
                          }),
                        );
                        await list.reload();
                      }}
                    />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </PagedView>
      {limiting && (
        <TenantLimitsDialog
          tenant={limiting}
          onClose={() => setLimiting(null)}
          onSaved={async () => {
            setLimiting(null);
            notify('ok', `Saved the limits of ${limiting.name}`);
            await list.reload();
          }}
        />
      )}
      {creating && (
        <CreateTenantDialog
          onClose={() => setCreating(false)}
          onCreated={async (t) => {
            setCreating(false);
            notify('ok', `Created tenant ${t.name}`);
            await list.reload();
          }}
        />
      )}
    </section>
  );
}

/** A tenant's limits over time in a few words: `none`, or each one set. */
function tenantLimitsText(t: Tenant): string {
  const parts = [];
  if (t.rpm_limit > 0) parts.push(`${t.rpm_limit.toLocaleString('en')} req/min`);
  if (t.tpm_limit > 0) parts.push(`${t.tpm_limit.toLocaleString('en')} tokens/min`);
  if (t.token_budget > 0) parts.push(`${t.token_budget.toLocaleString('en')} tokens per ${t.budget_period}`);
  return parts.length === 0 ? 'none' : parts.join(', ');
}

/** The tenant's limits over time, over every gateway key and model of it together. */
function TenantLimitsDialog(props: { tenant: Tenant; onClose: () => void; onSaved: () => Promise<void> }) {
  const t = props.tenant;
  const [rpm, setRpm] = useState(String(t.rpm_limit));
  const [tpm, setTpm] = useState(String(t.tpm_limit));
  const [budget, setBudget] = useState(String(t.token_budget));
  const [period, setPeriod] = useState<Tenant['budget_period']>(t.budget_period);
  const [policy, setPolicy] = useState<Tenant['usage_limit_policy']>(t.usage_limit_policy);
  const count = (text: string, what: string, most: number) => {
    const n = Number(text);
    if (text.trim() === '' || !Number.isInteger(n) || n < 0 || n > most)
      throw new Error(`${what} is a whole number from 0 (none) to ${most}`);
    return n;
  };
  return (
    <Dialog title={`Limits of ${t.name}`} onClose={props.onClose} testId="tenant-limits-form">
      <Form
        onSubmit={async () => {
          await unwrap(
            api.PUT('/api/v1/admin/tenants/{tenant_id}/limits', {
              params: { path: { tenant_id: t.id } },
              body: {
                rpm_limit: count(rpm, 'Requests per minute', 1_000_000),
                tpm_limit: count(tpm, 'Tokens per minute', 1_000_000_000),
                token_budget: count(budget, 'Token budget', 1_000_000_000_000),
                budget_period: period,
                usage_limit_policy: policy,
              },
            }),
          );
          await props.onSaved();
        }}
        submit="Save"
        busy="Saving…"
        onCancel={props.onClose}
        label={`Limits of ${t.name}`}
      >
        <p class="muted">
          These hold over every gateway key and model of the tenant together, on top of each key's own; 0
          means none.
        </p>
        <TextField
          label="Requests per minute"
          type="number"
          min={0}
          value={rpm}
          onValue={setRpm}
          required
          autofocus
        />
        <TextField label="Tokens per minute" type="number" min={0} value={tpm} onValue={setTpm} required />
        <TextField
          label="Token budget"
          type="number"
          min={0}
          value={budget}
          onValue={setBudget}
          required
          hint="Tokens per budget period. Changing it mid-period keeps the spend so far."
        />
        <SelectField
          label="Budget period"
          value={period}
          onValue={(p) => setPeriod(p as Tenant['budget_period'])}
          options={[
            ['day', 'Day (UTC)'],
            ['week', 'Week (from Monday, UTC)'],
            ['month', 'Month (UTC)'],
            ['total', 'Total (never resets)'],
          ]}
        />
        <SelectField
          label="Past a limit"
          value={policy}
          onValue={(p) => setPolicy(p as Tenant['usage_limit_policy'])}
          options={[
            ['reject', 'Reject (429)'],
            ['use_anyway', 'Use anyway (marked in a header)'],
          ]}
        />
      </Form>
    </Dialog>
  );
}

function CreateTenantDialog(props: { onClose: () => void; onCreated: (t: Tenant) => Promise<void> }) {
  const [name, setName] = useState('');
  return (
    <Dialog title="Create tenant" onClose={props.onClose}>
      <Form
        onSubmit={async () =>
          props.onCreated(await unwrap(api.POST('/api/v1/admin/tenants', { body: { name } })))
        }
        submit="Create"
        busy="Creating…"
        onCancel={props.onClose}
        label="Create tenant"
      >
        <TextField label="Name" value={name} onValue={setName} required maxLength={128} autofocus />
      </Form>
    </Dialog>
  );
}

export function AdminSettingsPage() {
  const [value, setValue] = useState<Settings | null>(null);
  const [maxTtl, setMaxTtl] = useState('');
  const [selfService, setSelfService] = useState('true');
  const [maxKeys, setMaxKeys] = useState('');
  const [maxAiKeys, setMaxAiKeys] = useState('');
  const [maxConnections, setMaxConnections] = useState('');
  const [error, setError] = useState<unknown>(null);
  const show = (s: Settings) => {
    setValue(s);
    setMaxTtl(String(s.auth_token_max_ttl_minutes));
    setSelfService(String(s.self_service_keys));
    setMaxKeys(String(s.max_keys_per_user));
    setMaxAiKeys(String(s.max_ai_keys_per_tenant));
    setMaxConnections(String(s.max_connections_per_tenant));
  };
  const load = async () => {
    try {
      show(await unwrap(api.GET('/api/v1/admin/settings')));
      setError(null);
    } catch (e) {
      setError(e);
    }
  };
  useEffect(() => {
    void load();
  }, []);
  if (error && value == null) return <ErrorText error={error} retry={() => void load()} />;
  if (value == null) return <Loading what="settings" />;
  return (
    <section aria-labelledby="settings-title">
      <h1 id="settings-title">Key settings</h1>
      <dl class="facts" data-testid="current-settings">
        <dt>Maximum key lifetime</dt>
        <dd data-testid="current-max">
          {value.auth_token_max_ttl_minutes === 0
            ? 'no limit'
            : minutesText(value.auth_token_max_ttl_minutes)}
        </dd>
        <dt>Users create their own keys</dt>
        <dd data-testid="current-self-service">{value.self_service_keys ? 'yes' : 'no'}</dd>
        <dt>Keys per user</dt>
        <dd data-testid="current-max-keys">at most {value.max_keys_per_user} unexpired</dd>
        <dt>Per tenant</dt>
        <dd data-testid="current-tenant-maximums">
          at most {value.max_ai_keys_per_tenant} gateway keys and {value.max_connections_per_tenant} provider
          connections
        </dd>
      </dl>
      <Form
        onSubmit={async () => {
          const ttl = Number(maxTtl);
          if (maxTtl.trim() === '' || !Number.isInteger(ttl) || ttl < 0 || ttl > 52560000)
            throw new Error('The maximum lifetime is a whole number of minutes, 0 (no limit) to 52560000');
          const count = (text: string, what: string, most: number) => {
            const n = Number(text);
            if (text.trim() === '' || !Number.isInteger(n) || n < 1 || n > most)
              throw new Error(`The ${what} are a whole number from 1 to ${most}`);
            return n;
          };
          const keys = count(maxKeys, 'keys per user', 10000);
          const aiKeys = count(maxAiKeys, 'gateway keys per tenant', 100000);
          const connections = count(maxConnections, 'provider connections per tenant', 10000);
          show(
            await unwrap(
              api.PUT('/api/v1/admin/settings', {
                body: {
                  auth_token_max_ttl_minutes: ttl,
                  self_service_keys: selfService === 'true',
                  max_keys_per_user: keys,
                  max_ai_keys_per_tenant: aiKeys,
                  max_connections_per_tenant: connections,
                },
              }),
            ),
          );
          notify('ok', 'Key settings saved');
        }}
        submit="Save"
        busy="Saving…"
        label="Key settings"
      >
        <TextField
          label="Maximum lifetime (minutes)"
          type="number"
          min={0}
          max={52560000}
          value={maxTtl}
          onValue={setMaxTtl}
          required
          hint="New user keys may live at most this long, and get this lifetime when they ask for none. 0 means no limit. 1440 = 1 day, 43200 = 30 days, 129600 = 90 days."
        />
        <SelectField
          label="Users create their own keys"
          value={selfService}
          onValue={setSelfService}
          options={[
            ['true', 'Yes: users create keys on their Account page'],
            ['false', 'No: only the admin issues keys'],
          ]}
        />
        <TextField
          label="Most keys per user"
          type="number"
          min={1}
          max={10000}
          value={maxKeys}
          onValue={setMaxKeys}
          required
          hint="Unexpired keys one user may hold, however they were issued: 1 to 10000."
        />
        <TextField
          label="Most gateway keys per tenant"
          type="number"
          min={1}
          max={100000}
          value={maxAiKeys}
          onValue={setMaxAiKeys}
          required
          hint="AI API keys one tenant may hold: 1 to 100000. Lowering it removes none."
        />
        <TextField
          label="Most provider connections per tenant"
          type="number"
          min={1}
          max={10000}
          value={maxConnections}
          onValue={setMaxConnections}
          required
          hint="Connected models one tenant may hold: 1 to 10000. Replacing a connection's key is always possible."
        />
      </Form>
    </section>
  );
}

interface AuditFilters {
  tenant_id: string;
  since: string;
}

/** Newest first, one page at a time, narrowed by the API itself. */
const auditSource = cursorPaged<AuditEntry, AuditFilters>(({ limit, cursor, filters: f }) => {
  const query: { limit: number; cursor?: string; tenant_id?: string; since?: string } = { limit };
  if (cursor) query.cursor = cursor;
  if (f.tenant_id) query.tenant_id = f.tenant_id;
  if (f.since) query.since = new Date(f.since).toISOString().replace(/\.\d{3}Z$/, 'Z');
  return unwrapPage(api.GET('/api/v1/admin/audit', { params: { query } }));
});

/** Who made a change, by kind first: a user named `admin` must not pass for the admin token. */
function Actor(props: { entry: AuditEntry }) {
  const a = props.entry;
  if (a.actor_kind === 'admin') return <span class="tag actor-admin">admin token</span>;
  if (a.actor_kind === 'system') return <span class="tag actor-admin">keyward</span>;
  return (
    <>
      <span class={`tag actor-${a.actor_kind}`}>{a.actor_kind === 'user' ? 'user' : 'unknown'}</span>{' '}
      {a.actor ?? ''}
    </>
  );
}

export function AdminAuditPage() {
  const [filters, setFilters] = useState<AuditFilters>({ tenant_id: '', since: '' });
  const [tenants, setTenants] = useState<Tenant[]>([]);
  const list = usePaged(auditSource, filters, PAGE_SIZE);
  useEffect(() => {
    tenantChoices()
      .then(setTenants)
      .catch(() => setTenants([]));
  }, []);
  return (
    <section aria-labelledby="audit-title">
      <h1 id="audit-title">Audit log</h1>
      <div class="filters">
        <SelectField
          label="Tenant"
          value={filters.tenant_id}
          onValue={(tenant_id) => setFilters((f) => ({ ...f, tenant_id }))}
          options={[
            ['', 'All tenants'],
            ...tenants.map((t) => [t.id, `${t.name} (${t.id.slice(0, 8)})`] as const),
          ]}
        />
        <TextField
          label="Since"
          type="datetime-local"
          value={filters.since}
          onValue={(since) => setFilters((f) => ({ ...f, since }))}
        />
      </div>
      <PagedView list={list} what="the audit log" empty="No entries.">
        {(items) => (
          <table>
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Actor</th>
                <th scope="col">Action</th>
                <th scope="col">Target</th>
                <th scope="col">Detail</th>
              </tr>
            </thead>
            <tbody>
              {items.map((a) => (
                <tr key={a.id} data-testid="audit-row">
                  <td>{when(a.at)}</td>
                  {/* The kind as the API records it, then the name: the console adds no claim. */}
                  <td data-testid="audit-actor">
                    <Actor entry={a} />
                  </td>
                  <td>
                    <code>{a.action}</code>
                  </td>
                  <td>{a.target}</td>
                  <td>{a.detail}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </PagedView>
    </section>
  );
}
