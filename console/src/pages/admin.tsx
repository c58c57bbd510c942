// The admin area (admin token): tenants, the maximum key lifetime, the audit log.
import { useEffect, useState } from 'preact/hooks';
import { type AuditEntry, api, type Tenant, unwrap } from '../api/client';
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
import { limitPaged, PagedView, usePaged, wholeArray } from '../ui/list';

export const tenantSource = wholeArray<Tenant, { search: string }>(
  async () => unwrap(api.GET('/api/v1/admin/tenants')),
  (t, f) => !f.search || t.name.toLowerCase().includes(f.search.toLowerCase()) || t.id.includes(f.search),
);

export function AdminTenantsPage() {
  const [search, setSearch] = useState('');
  const list = usePaged(tenantSource, { search: search.trim() }, 20);
  const [creating, setCreating] = useState(false);
  return (
    <section aria-labelledby="tenants-title">
      <div class="section-head">
        <h1 id="tenants-title">Tenants</h1>
        <button type="button" class="primary" onClick={() => setCreating(true)}>
          Create tenant
        </button>
      </div>
      <div class="filters">
        <TextField label="Search" type="search" value={search} onValue={setSearch} placeholder="Name or id" />
      </div>
      <PagedView list={list} what="tenants" empty="No tenants.">
        {(items) => (
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Id</th>
                <th scope="col">Created</th>
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
                  <td class="row-actions">
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
  const [value, setValue] = useState<number | null>(null);
  const [draft, setDraft] = useState('');
  const [error, setError] = useState<unknown>(null);
  const load = async () => {
    try {
      const s = await unwrap(api.GET('/api/v1/admin/settings'));
      setValue(s.auth_token_max_ttl_minutes);
      setDraft(String(s.auth_token_max_ttl_minutes));
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
      <h1 id="settings-title">Maximum key lifetime</h1>
      <p data-testid="current-max">
        Now: {value === 0 ? 'no limit' : minutesText(value)}. New user keys may live at most this long, and
        get this lifetime when they ask for none.
      </p>
      <Form
        onSubmit={async () => {
          const n = Number(draft);
          if (!Number.isInteger(n) || n < 0)
            throw new Error('The maximum is a whole number of minutes, 0 for no limit');
          const s = await unwrap(
            api.PUT('/api/v1/admin/settings', { body: { auth_token_max_ttl_minutes: n } }),
          );
          setValue(s.auth_token_max_ttl_minutes);
          notify('ok', 'Maximum key lifetime saved');
        }}
        submit="Save"
        busy="Saving…"
        label="Maximum key lifetime"
      >
        <TextField
          label="Maximum lifetime (minutes)"
          type="number"
          min={0}
          value={draft}
          onValue={setDraft}
          required
          hint="0 means no limit. 1440 = 1 day, 43200 = 30 days, 129600 = 90 days."
        />
      </Form>
    </section>
  );
}

interface AuditFilters {
  tenant_id: string;
  since: string;
}

/** The audit route takes a limit (at most 1000), newest first: paged by asking for one more. */
const auditSource = limitPaged<AuditEntry, AuditFilters>(async (limit, f) => {
  const query: { limit: number; tenant_id?: string; since?: string } = { limit };
  if (f.tenant_id) query.tenant_id = f.tenant_id;
  if (f.since) query.since = new Date(f.since).toISOString().replace(/\.\d{3}Z$/, 'Z');
  return unwrap(api.GET('/api/v1/admin/audit', { params: { query } }));
}, 1000);

export function AdminAuditPage() {
  const [filters, setFilters] = useState<AuditFilters>({ tenant_id: '', since: '' });
  const [tenants, setTenants] = useState<Tenant[]>([]);
  const list = usePaged(auditSource, filters, 25);
  useEffect(() => {
    unwrap(api.GET('/api/v1/admin/tenants'))
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
                  {/* Shown exactly as the API records it: the console adds no claim of who it is. */}
                  <td>{a.actor}</td>
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
