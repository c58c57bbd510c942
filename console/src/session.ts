// What the signed-in user key is: `GET /api/v1/me` (user, tenant, role, the key itself), loaded
// once per sign-in; the pages read the role to show only the controls the API allows.
import { signal } from '@preact/signals';
import { useEffect } from 'preact/hooks';
import { api, type Me, unwrap } from './api/client';
import { credential } from './auth';
import { messageOf } from './ui/kit';

export const me = signal<Me | null>(null);
export const meError = signal<string | null>(null);

export async function loadMe(): Promise<void> {
  try {
    me.value = await unwrap(api.GET('/api/v1/me'));
    meError.value = null;
  } catch (e) {
    meError.value = messageOf(e);
  }
}

/** Owners and admins of a tenant change its models, defaults and gateway keys; members read them. */
export function canManage(): boolean {
  const r = me.value?.role;
  return r === 'owner' || r === 'admin';
}

export function useSession(): void {
  const c = credential.value;
  useEffect(() => {
    me.value = null;
    meError.value = null;
    if (c?.kind === 'user') void loadMe();
  }, [c?.kind, c?.token]);
}
