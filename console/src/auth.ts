// The credential of this tab: in memory, mirrored in sessionStorage so a reload of the tab keeps
// the session (sessionStorage is per tab and gone when the tab closes). Never localStorage, never
// a cookie, never a URL. Signing out forgets both copies.
import { signal } from '@preact/signals';

export type Credential = { kind: 'user'; token: string } | { kind: 'admin'; token: string };

const KEY = 'keyward.credential';

function load(): Credential | null {
  try {
    const raw = sessionStorage.getItem(KEY);
    if (!raw) return null;
    const c = JSON.parse(raw) as Credential;
    return (c.kind === 'user' || c.kind === 'admin') && typeof c.token === 'string' ? c : null;
  } catch {
    return null;
  }
}

export const credential = signal<Credential | null>(load());

/** Why the last session ended, shown on the sign-in page (e.g. the key stopped working). */
export const signOutReason = signal<string | null>(null);

export function signIn(c: Credential): void {
  credential.value = c;
  signOutReason.value = null;
  try {
    sessionStorage.setItem(KEY, JSON.stringify(c));
  } catch {
    // storage refused: the credential lives in memory only
  }
}

export function signOut(reason: string | null = null): void {
  credential.value = null;
  signOutReason.value = reason;
  try {
    sessionStorage.removeItem(KEY);
  } catch {
    // nothing stored
  }
}
