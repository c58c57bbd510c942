// The console's shell: who is signed in, the navigation, and which page a path shows.
import { render } from 'preact';
import { useEffect } from 'preact/hooks';
import { credential, signOut } from './auth';
import { AccountPage } from './pages/account';
import { AdminAuditPage, AdminSettingsPage, AdminTenantsPage } from './pages/admin';
import { AdminUserPage, AdminUsersPage } from './pages/admin-users';
import { AiKeysPage } from './pages/ai-keys';
import { DefaultsPage } from './pages/defaults';
import { ModelsPage } from './pages/models';
import { SignInPage } from './pages/signin';
import { navigate, onLinkClick, path } from './router';
import { me, useSession } from './session';
import { ConfirmHost, Notices, notices } from './ui/kit';
import './styles.css';

const USER_PAGES = [
  ['/account', 'Account & API Keys'],
  ['/models', 'Model Providers'],
  ['/defaults', 'Default models'],
  ['/ai-keys', 'AI API keys'],
] as const;
const ADMIN_PAGES = [
  ['/admin/tenants', 'Tenants'],
  ['/admin/users', 'Users'],
  ['/admin/settings', 'Key settings'],
  ['/admin/audit', 'Audit log'],
] as const;

function Page() {
  const c = credential.value;
  const p = path.value;
  if (!c) return <SignInPage />;
  if (c.kind === 'admin') {
    if (p === '/admin/tenants') return <AdminTenantsPage />;
    if (p === '/admin/users') return <AdminUsersPage />;
    const u = /^\/admin\/users\/([^/]+)$/.exec(p);
    if (u?.[1]) return <AdminUserPage username={decodeURIComponent(u[1])} />;
    if (p === '/admin/settings') return <AdminSettingsPage />;
    if (p === '/admin/audit') return <AdminAuditPage />;
    return <Redirect to="/admin/tenants" />;
  }
  if (p === '/account') return <AccountPage />;
  if (p === '/models') return <ModelsPage />;
  if (p === '/defaults') return <DefaultsPage />;
  if (p === '/ai-keys') return <AiKeysPage />;
  return <Redirect to="/account" />;
}

function Redirect(props: { to: string }) {
  useEffect(() => navigate(props.to, true), [props.to]);
  return null;
}

function Nav() {
  const c = credential.value;
  if (!c) return null;
  const pages = c.kind === 'admin' ? ADMIN_PAGES : USER_PAGES;
  const p = path.value;
  return (
    <nav class="main" aria-label="Pages">
      <ul>
        {pages.map(([href, text]) => (
          <li key={href}>
            <a href={href} aria-current={p === href || p.startsWith(`${href}/`) ? 'page' : undefined}>
              {text}
            </a>
          </li>
        ))}
      </ul>
    </nav>
  );
}

function Who() {
  const c = credential.value;
  if (!c) return null;
  const m = me.value;
  return (
    <div class="who">
      <span data-testid="who">
        {c.kind === 'admin' ? 'Admin' : m ? `${m.username} · ${m.role}` : 'Signed in'}
      </span>
      <button
        type="button"
        onClick={() => {
          notices.value = [];
          signOut();
        }}
      >
        Sign out
      </button>
    </div>
  );
}

function App() {
  useSession();
  return (
    // biome-ignore lint/a11y/noStaticElementInteractions: delegates link clicks to the router
    // biome-ignore lint/a11y/useKeyWithClickEvents: links keep their own keyboard behaviour
    <div class="app" onClick={onLinkClick}>
      <header class="top">
        <a class="brand" href={credential.value?.kind === 'admin' ? '/admin/tenants' : '/account'}>
          keyward
        </a>
        <Nav />
        <Who />
      </header>
      <main id="main">
        <Page />
      </main>
      <Notices />
      <ConfirmHost />
    </div>
  );
}

const root = document.getElementById('app');
if (root) render(<App />, root);
