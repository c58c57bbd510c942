// Users (admin token): create with or without a tenant, change role, disable and enable, delete;
// and one user's keys: issue with a TTL (the secret shown once), list, revoke.
import { useEffect, useState } from 'preact/hooks';
import {
  type ApiKey,
  type ApiKeyCreated,
  api,
  type Role,
  type Tenant,
  type User,
  unwrap,
  unwrapPage,
} from '../api/client';
import { navigate } from '../router';
import {
  Action,
  ask,
  Dialog,
  ErrorText,
  Form,
  Loading,
  notify,
  SelectField,
  TextField,
  when,
} from '../ui/kit';
import { cursorPaged, PAGE_SIZE, PagedView, usePaged } from '../ui/list';
import { KeyTable, ShowOnce, TTL_PRESETS } from './account';
import { tenantChoices } from './admin';

/**
 * Oldest first, one page at a time. The API neither searches nor filters users, so the page does
 * not pretend to over one page: "Open a user" goes straight to a user by name instead.
 */
const userSource = cursorPaged<User, Record<string, never>>(({ limit, cursor }) =>
  unwrapPage(api.GET('/api/v1/admin/users', { params: { query: cursor ? { limit, cursor } : { limit } } })),
);

const ROLES: ReadonlyArray<readonly [Role, string]> = [
  ['owner', 'Owner'],
  ['admin', 'Admin'],
  ['member', 'Member'],
];

function useTenants(): [Tenant[], () => Promise<void>] {
  const [tenants, setTenants] = useState<Tenant[]>([]);
  const load = async () => {
    try {
      setTenants(await tenantChoices());
    } catch {
      setTenants([]);
    }
  };
  useEffect(() => {
    void load();
  }, []);
  return [tenants, load];
}

export function AdminUsersPage() {
  const [find, setFind] = useState('');
  const list = usePaged(userSource, {}, PAGE_SIZE);
  const [tenants] = useTenants();
  const [creating, setCreating] = useState(false);
  const tenantName = (id: string) => tenants.find((t) => t.id === id)?.name ?? id.slice(0, 8);

  return (
    <section aria-labelledby="users-title">
      <div class="section-head">
        <h1 id="users-title">Users</h1>
        <button type="button" class="primary" onClick={() => setCreating(true)}>
          Create user
        </button>
      </div>
      <form
        class="filters"
        onSubmit={(e) => {
          e.preventDefault();
          if (find.trim()) navigate(`/admin/users/${encodeURIComponent(find.trim())}`);
        }}
      >
        <TextField label="Open a user" value={find} onValue={setFind} placeholder="Username" />
        <button type="submit">Open</button>
      </form>
      <PagedView list={list} what="users" empty="No users.">
        {(items) => (
          <table>
            <thead>
              <tr>
                <th scope="col">Username</th>
                <th scope="col">Tenant</th>
                <th scope="col">Role</th>
                <th scope="col">Status</th>
                <th scope="col">Created</th>
                <th scope="col">
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {items.map((u) => (
                <tr key={u.username} data-testid="user-row">
                  <td>
                    <a href={`/admin/users/${encodeURIComponent(u.username)}`}>{u.username}</a>
                  </td>
                  <td>{tenantName(u.tenant_id)}</td>
                  <td>
                    <UserRole user={u} onChanged={list.reload} />
                  </td>
                  <td>
                    <span class={`status ${u.status}`}>{u.status}</span>
                  </td>
                  <td>{when(u.create_date)}</td>
                  <td class="row-actions">
                    <UserActions user={u} onChanged={list.reload} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </PagedView>
      {creating && (
        <CreateUserDialog
          tenants={tenants}
          onClose={() => setCreating(false)}
          onCreated={async (u) => {
            setCreating(false);
            notify('ok', `Created user ${u.username}`);
            // Straight to the new user (where their first key is issued): in a list kept oldest
            // first, they would be on its last page.
            navigate(`/admin/users/${encodeURIComponent(u.username)}`);
          }}
        />
      )}
    </section>
  );
}

function UserRole(props: { user: User; onChanged: () => Promise<void> }) {
  const u = props.user;
  const [busy, setBusy] = useState(false);
  return (
    <select
      aria-label={`Role of ${u.username}`}
      value={u.role}
      disabled={busy}
      aria-busy={busy}
      onChange={async (e) => {
        const role = e.currentTarget.value as Role;
        setBusy(true);
        try {
          await unwrap(
            api.PATCH('/api/v1/admin/users/{username}', {
              params: { path: { username: u.username } },
              body: { role },
            }),
          );
          notify('ok', `${u.username} is now ${role}`);
          await props.onChanged();
        } catch (err) {
          notify('error', (err as Error).message);
          e.currentTarget.value = u.role;
        } finally {
          setBusy(false);
        }
      }}
    >
      {ROLES.map(([r, t]) => (
        <option key={r} value={r}>
          {t}
        </option>
      ))}
    </select>
  );
}

function UserActions(props: { user: User; onChanged: () => Promise<void>; afterDelete?: () => void }) {
  const u = props.user;
  const enable = u.status === 'disabled';
  return (
    <>
      <Action
        label={enable ? 'Enable' : 'Disable'}
        busy={enable ? 'Enabling…' : 'Disabling…'}
        title={`${enable ? 'Enable' : 'Disable'} ${u.username}`}
        done={`${u.username} ${enable ? 'enabled' : 'disabled'}`}
        run={async () => {
          await unwrap(
            api.PATCH('/api/v1/admin/users/{username}', {
              params: { path: { username: u.username } },
              body: { status: enable ? 'active' : 'disabled' },
            }),
          );
          await props.onChanged();
        }}
      />
      <Action
        class="danger"
        label="Delete"
        busy="Deleting…"
        title={`Delete ${u.username}`}
        done={`Deleted ${u.username}`}
        run={async () => {
          if (!(await ask('Delete this user?', `${u.username} and every key of theirs are deleted.`))) return;
          await unwrap(
            api.DELETE('/api/v1/admin/users/{username}', { params: { path: { username: u.username } } }),
          );
          if (props.afterDelete) props.afterDelete();
          else await props.onChanged();
        }}
      />
    </>
  );
}

function CreateUserDialog(props: {
  tenants: Tenant[];
  onClose: () => void;
  onCreated: (u: User) => Promise<void>;
}) {
  const [username, setUsername] = useState('');
  const [tenant, setTenant] = useState('');
  const [role, setRole] = useState<Role>('member');
  return (
    <Dialog title="Create user" onClose={props.onClose}>
      <Form
        onSubmit={async () => {
          const body = tenant
            ? { username: username.trim(), tenant_id: tenant, role }
            : { username: username.trim() };
          await props.onCreated(await unwrap(api.POST('/api/v1/admin/users', { body })));
        }}
        submit="Create"
        busy="Creating…"
        onCancel={props.onClose}
        label="Create user"
      >
        <TextField
          label="Username"
          value={username}
          onValue={setUsername}
          required
          maxLength={128}
          hint="Letters, digits and . _ @ + - (an e-mail address fits)."
          autofocus
        />
        <SelectField
          label="Tenant"
          value={tenant}
          onValue={setTenant}
          options={[
            ['', 'A new tenant of their own (they are its owner)'],
            ...props.tenants.map((t) => [t.id, t.name] as const),
          ]}
        />
        {tenant && (
          <SelectField label="Role" value={role} onValue={(r) => setRole(r as Role)} options={ROLES} />
        )}
      </Form>
    </Dialog>
  );
}

const userKeySource = cursorPaged<ApiKey, { u: string }>(({ limit, cursor, filters }) =>
  unwrapPage(
    api.GET('/api/v1/admin/users/{username}/api_key', {
      params: { path: { username: filters.u }, query: cursor ? { limit, cursor } : { limit } },
    }),
  ),
);

export function AdminUserPage(props: { username: string }) {
  const name = props.username;
  const [user, setUser] = useState<User | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [issuing, setIssuing] = useState(false);
  const [shown, setShown] = useState<ApiKeyCreated | null>(null);
  const keys = usePaged(userKeySource, { u: name }, PAGE_SIZE);
  const load = async () => {
    try {
      setUser(
        await unwrap(api.GET('/api/v1/admin/users/{username}', { params: { path: { username: name } } })),
      );
      setError(null);
    } catch (e) {
      setError(e);
    }
  };
  useEffect(() => {
    void load();
  }, [name]);

  if (error && !user) return <ErrorText error={error} retry={() => void load()} />;
  if (!user) return <Loading what={name} />;
  return (
    <section aria-labelledby="user-title">
      <p>
        <a href="/admin/users">← Users</a>
      </p>
      <h1 id="user-title">{user.username}</h1>
      <dl class="facts">
        <dt>Tenant</dt>
        <dd>
          <code>{user.tenant_id}</code>
        </dd>
        <dt>Role</dt>
        <dd>
          <UserRole user={user} onChanged={load} />
        </dd>
        <dt>Status</dt>
        <dd>{user.status}</dd>
        <dt>Created</dt>
        <dd>{when(user.create_date)}</dd>
      </dl>
      <p class="row-actions">
        <UserActions user={user} onChanged={load} afterDelete={() => navigate('/admin/users')} />
      </p>
      <div class="section-head">
        <h2>API keys</h2>
        <button type="button" class="primary" onClick={() => setIssuing(true)}>
          Issue key
        </button>
      </div>
      <PagedView list={keys} what="keys" empty="No keys.">
        {(items) => (
          <KeyTable
            items={items}
            actions={(k) => (
              <Action
                class="danger"
                label="Revoke"
                busy="Revoking…"
                title={`Revoke ${k.access_key}`}
                done={`Revoked ${k.access_key}`}
                run={async () => {
                  if (!(await ask('Revoke this key?', `${k.access_key} stops working at once.`, 'Revoke')))
                    return;
                  await unwrap(
                    api.DELETE('/api/v1/admin/users/{username}/api_key/{id}', {
                      params: { path: { username: name, id: k.id } },
                    }),
                  );
                  await keys.reload();
                }}
              />
            )}
          />
        )}
      </PagedView>
      {issuing && (
        <IssueKeyDialog
          username={name}
          onClose={() => setIssuing(false)}
          onIssued={(k) => {
            setIssuing(false);
            setShown(k);
            void keys.reload();
          }}
        />
      )}
      {shown && <ShowOnce apiKey={shown} onClose={() => setShown(null)} />}
    </section>
  );
}

function IssueKeyDialog(props: {
  username: string;
  onClose: () => void;
  onIssued: (k: ApiKeyCreated) => void;
}) {
  const [description, setDescription] = useState('');
  const [ttl, setTtl] = useState('');
  return (
    <Dialog title={`Issue a key for ${props.username}`} onClose={props.onClose}>
      <Form
        onSubmit={async () => {
          const n = ttl ? Number(ttl) : null;
          props.onIssued(
            await unwrap(
              api.POST('/api/v1/admin/users/{username}/api_key', {
                params: { path: { username: props.username } },
                body: { description: description.trim(), ttl_minutes: n },
              }),
            ),
          );
        }}
        submit="Issue"
        busy="Issuing…"
        onCancel={props.onClose}
        label="Issue key"
      >
        <TextField
          label="Description"
          value={description}
          onValue={setDescription}
          maxLength={256}
          autofocus
        />
        <SelectField
          label="Lifetime (TTL)"
          value={ttl}
          onValue={setTtl}
          options={[['', 'The deployment maximum'], ...TTL_PRESETS.map(([m, t]) => [String(m), t] as const)]}
          hint="A lifetime above the maximum key lifetime is refused, naming the maximum."
        />
      </Form>
    </Dialog>
  );
}
