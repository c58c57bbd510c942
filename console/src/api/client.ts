// The typed API client: openapi-fetch over the types generated from src/api/openapi.json (the
// committed contract), so a request or a field the document lacks fails the type check. Every call
// goes to this origin only; the credential rides in the Authorization header and nowhere else.
import createClient, { type Middleware } from 'openapi-fetch';
import { credential, signOut } from '../auth';
import type { components, paths } from './schema';

export type Schemas = components['schemas'];
export type Me = Schemas['Me'];
export type ApiKey = Schemas['ApiKey'];
export type ApiKeyCreated = Schemas['ApiKeyCreated'];
export type ApiKeyRotated = Schemas['ApiKeyRotated'];
export type Tenant = Schemas['Tenant'];
export type User = Schemas['User'];
export type Role = Schemas['Role'];
export type AuditEntry = Schemas['AuditEntry'];
export type Factory = Schemas['Factory'];
export type ConfiguredModel = Schemas['ConfiguredModel'];
export type ConfiguredFactory = Schemas['ConfiguredFactory'];
export type ModelType = Schemas['ModelType'];
export type AddModelRequest = Schemas['AddModelRequest'];
export type DefaultModels = Schemas['DefaultModels'];
export type AiKey = Schemas['AiKey'];
export type CreateAiKeyRequest = Schemas['CreateAiKeyRequest'];
export type UpdateAiKeyRequest = Schemas['UpdateAiKeyRequest'];
export type KeyLimits = Schemas['KeyLimits'];
export type Settings = Schemas['Settings'];

/** An answer that is not `{code: 0}`: the API's own message, its status and, on 429, when to retry. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code: number | null,
    readonly retryAfterSeconds: number | null,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

const withCredential: Middleware = {
  onRequest({ request }) {
    const c = credential.value;
    if (c && !request.headers.has('authorization')) request.headers.set('authorization', `Bearer ${c.token}`);
    return request;
  },
  // A credential that stops working mid-session (revoked, expired, rotated out) ends the session
  // with the API's message, instead of every page failing on its own.
  async onResponse({ request, response }) {
    const c = credential.value;
    if (response.status === 401 && c && request.headers.get('authorization') === `Bearer ${c.token}`) {
      let message = 'The credential is no longer accepted';
      try {
        const body = (await response.clone().json()) as { message?: unknown };
        if (typeof body.message === 'string') message = body.message;
      } catch {
        // not JSON
      }
      signOut(message);
    }
    return response;
  },
};

export const api = createClient<paths>({ baseUrl: '' });
api.use(withCredential);

type Envelope<D> = { data: D };
type Result<D> = { data?: Envelope<D>; error?: unknown; response: Response };

/** The `data` of a `{code: 0}` answer, else an ApiError carrying the API's message. */
export async function unwrap<D>(call: Promise<Result<D>>): Promise<D> {
  let r: Result<D>;
  try {
    r = await call;
  } catch (e) {
    throw new ApiError(`The request did not reach keyward (${(e as Error).message})`, 0, null, null);
  }
  if (r.response.ok && r.data && typeof r.data === 'object' && 'data' in r.data) return r.data.data;
  throw errorOf(r.response, r.error ?? r.data);
}

/**
 * One page of a cursor-paged list (a bare array in `data`) and the cursor of the next page, which
 * the API names in `X-Next-Cursor` (and in `Link`) only when another page follows.
 */
export async function unwrapPage<T>(
  call: Promise<Result<T[]>>,
): Promise<{ items: T[]; next: string | null }> {
  let response: Response | undefined;
  const items = await unwrap(
    call.then((r) => {
      response = r.response;
      return r;
    }),
  );
  const next = response?.headers.get('x-next-cursor') ?? '';
  return { items, next: next === '' ? null : next };
}

function errorOf(response: Response, body: unknown): ApiError {
  const b = (body ?? {}) as { message?: unknown; code?: unknown; error?: { message?: unknown } };
  const message =
    typeof b.message === 'string' && b.message
      ? b.message
      : typeof b.error?.message === 'string'
        ? b.error.message
        : `HTTP ${response.status} ${response.statusText}`.trim();
  const retry = Number.parseInt(response.headers.get('retry-after') ?? '', 10);
  return new ApiError(
    message,
    response.status,
    typeof b.code === 'number' ? b.code : null,
    Number.isFinite(retry) ? retry : null,
  );
}

/** A relay error or any non-envelope body, for the relay's `/v1` answers. */
export { errorOf };
