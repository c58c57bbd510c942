// Model Providers, as RAGFlow lays them out: "Added models" (each configured factory with its tags
// and models; update the key, remove a model or the whole factory) and "Models to be added" (the
// catalog, searchable and filterable by tag), where "Add the model" opens the form the factory needs.
import { useEffect, useState } from 'preact/hooks';
import {
  type AddModelRequest,
  api,
  type ConfiguredFactory,
  type Factory,
  type ModelType,
  unwrap,
} from '../api/client';
import { canManage } from '../session';
import {
  Action,
  ask,
  Dialog,
  ErrorText,
  Field,
  Form,
  Loading,
  notify,
  SelectField,
  TextField,
} from '../ui/kit';
import { UsageChart } from '../ui/usage';

export const TYPE_NAMES: Record<ModelType, string> = {
  chat: 'Chat',
  embedding: 'Embedding',
  speech2text: 'Speech to text',
  image2text: 'Image to text',
  rerank: 'Rerank',
  tts: 'Text to speech',
};

export type Configured = Record<string, ConfiguredFactory>;

export async function loadConfigured(): Promise<Configured> {
  return (await unwrap(
    api.GET('/api/v1/models', { params: { query: { include_details: 'true' } } }),
  )) as Configured;
}

export async function loadFactories(): Promise<Factory[]> {
  return unwrap(api.GET('/api/v1/factories'));
}

export function ModelsPage() {
  const [configured, setConfigured] = useState<Configured | null>(null);
  const [factories, setFactories] = useState<Factory[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [adding, setAdding] = useState<{ factory: Factory; llmName?: string } | null>(null);
  // The model (`name@factory`) whose usage over time is shown.
  const [charting, setCharting] = useState<string | null>(null);
  const [search, setSearch] = useState('');
  const [tag, setTag] = useState('');
  const manage = canManage();

  const reload = async () => {
    try {
      const [c, f] = await Promise.all([loadConfigured(), loadFactories()]);
      setConfigured(c);
      setFactories(f);
      setError(null);
    } catch (e) {
      setError(e);
    }
  };
  useEffect(() => {
    void reload();
  }, []);

  if (error && !configured) return <ErrorText error={error} retry={() => void reload()} />;
  if (!configured || !factories) return <Loading what="model providers" />;

  const byName = new Map(factories.map((f) => [f.name, f]));
  const addable = factories.filter((f) => f.connection !== 'builtin');
  const tags = Array.from(new Set(addable.flatMap((f) => f.tags.split(',')).filter(Boolean))).sort();
  const q = search.trim().toLowerCase();
  const shown = addable.filter(
    (f) => (!q || f.name.toLowerCase().includes(q)) && (!tag || f.tags.split(',').includes(tag)),
  );
  const added = Object.entries(configured).sort(([a], [b]) =>
    a === 'Builtin' ? 1 : b === 'Builtin' ? -1 : a.localeCompare(b),
  );

  return (
    <section aria-labelledby="models-title">
      <h1 id="models-title">Model Providers</h1>
      {!manage && (
        <p class="muted" data-testid="read-only">
          Your role can read the tenant's providers; owners and admins change them.
        </p>
      )}
      <h2>Added models</h2>
      <div class="cards added">
        {added.map(([name, cf]) => {
          const f = byName.get(name);
          const builtin = name === 'Builtin';
          const perModel = f?.connection === 'per_model';
          return (
            <article class="card" key={name} aria-label={name} data-testid="added-factory">
              <header>
                <h3>{name}</h3>
                <p class="tags">
                  {cf.tags.split(',').map((t) => (
                    <span class="tag" key={t}>
                      {t}
                    </span>
                  ))}
                </p>
              </header>
              {cf.llm.length === 0 ? (
                <p class="muted">
                  {builtin ? 'No Builtin model is enabled on this deployment.' : 'No models.'}
                </p>
              ) : (
                <table>
                  <thead>
                    <tr>
                      <th scope="col">Type</th>
                      <th scope="col">Name</th>
                      <th scope="col">Used tokens</th>
                      <th scope="col">Key</th>
                      <th scope="col">
                        <span class="sr-only">Actions</span>
                      </th>
                    </tr>
                  </thead>
                  <tbody>
                    {cf.llm.map((m) => (
                      <tr key={`${m.type}/${m.name}`} data-testid="model-row">
                        <td>{TYPE_NAMES[m.type] ?? m.type}</td>
                        <td>{m.name}</td>
                        <td data-testid="used-token">{m.used_token.toLocaleString('en')}</td>
                        <td>
                          <code>{m.credential_hint ?? '—'}</code>
                        </td>
                        <td class="row-actions">
                          <button
                            type="button"
                            onClick={() => setCharting(`${m.name}@${name}`)}
                            aria-label={`Usage of ${m.name}`}
                          >
                            Usage
                          </button>
                          {manage && perModel && f && (
                            <>
                              {f.auth !== 'none' && (
                                <button
                                  type="button"
                                  onClick={() => setAdding({ factory: f, llmName: m.name })}
                                >
                                  Update key
                                </button>
                              )}
                              <Action
                                class="danger"
                                label="Remove"
                                busy="Removing…"
                                title={`Remove ${m.name}`}
                                done={`Removed ${m.name}`}
                                run={async () => {
                                  if (
                                    !(await ask(
                                      'Remove this model?',
                                      `${m.name} of ${name} will no longer be usable.`,
                                      'Remove',
                                    ))
                                  )
                                    return;
                                  await unwrap(
                                    api.DELETE('/api/v1/models', {
                                      body: { llm_factory: name, llm_name: m.name },
                                    }),
                                  );
                                  await reload();
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
              {manage && !builtin && f && (
                <footer class="row-actions">
                  {!perModel && (
                    <button type="button" onClick={() => setAdding({ factory: f })}>
                      Update key
                    </button>
                  )}
                  <Action
                    class="danger"
                    label={`Remove ${name}`}
                    busy="Removing…"
                    done={`Removed ${name}`}
                    run={async () => {
                      if (
                        !(await ask(
                          `Remove ${name}?`,
                          `Every connection of this tenant to ${name} and its stored keys are deleted.`,
                          'Remove',
                        ))
                      )
                        return;
                      await unwrap(api.DELETE('/api/v1/models', { body: { llm_factory: name } }));
                      await reload();
                    }}
                  />
                </footer>
              )}
            </article>
          );
        })}
      </div>
      <UsageChart of={{ tenant: true }} title="This tenant's usage over time" />

      <h2>Models to be added</h2>
      <div class="filters">
        <TextField
          label="Search"
          type="search"
          value={search}
          onValue={setSearch}
          placeholder="Provider name"
        />
        <SelectField
          label="Tag"
          value={tag}
          onValue={setTag}
          options={[['', 'All tags'], ...tags.map((t) => [t, t] as const)]}
        />
      </div>
      <div class="cards">
        {shown.length === 0 && <p class="muted">No provider matches.</p>}
        {shown.map((f) => (
          <article class="card" key={f.name} aria-label={f.name} data-testid="catalog-factory">
            <header>
              <h3>{f.name}</h3>
              <p class="tags">
                {f.tags.split(',').map((t) => (
                  <span class="tag" key={t}>
                    {t}
                  </span>
                ))}
              </p>
            </header>
            <p class="muted">
              {f.models.length > 0
                ? `${f.models.length} catalog models`
                : f.self_deployed
                  ? 'Self-hosted: name your models'
                  : 'Name your models'}
            </p>
            {manage && (
              <footer>
                <button type="button" onClick={() => setAdding({ factory: f })}>
                  Add the model
                </button>
              </footer>
            )}
          </article>
        ))}
      </div>
      {adding && (
        <AddModelDialog
          factory={adding.factory}
          llmName={adding.llmName}
          onClose={() => setAdding(null)}
          onAdded={async () => {
            setAdding(null);
            notify('ok', `${adding.factory.name} saved`);
            await reload();
          }}
        />
      )}
      {charting && (
        <Dialog title={`Usage of ${charting}`} onClose={() => setCharting(null)} testId="model-usage" wide>
          <UsageChart of={{ model: charting }} title="Usage over time" />
          <div class="actions">
            <button type="button" class="primary" onClick={() => setCharting(null)}>
              Close
            </button>
          </div>
        </Dialog>
      )}
    </section>
  );
}

type FormKind = 'key' | 'azure' | 'vertex' | 'compatible' | 'selfhosted';

export function formKindOf(f: Factory): FormKind {
  if (f.auth === 'azure') return 'azure';
  if (f.auth === 'service_account') return 'vertex';
  if (f.auth === 'optional_bearer') return 'compatible';
  if (f.auth === 'none') return 'selfhosted';
  return 'key';
}

function AddModelDialog(props: {
  factory: Factory;
  llmName: string | undefined;
  onClose: () => void;
  onAdded: () => Promise<void>;
}) {
  const f = props.factory;
  const kind = formKindOf(f);
  const [v, setV] = useState<Record<string, string>>({
    llm_name: props.llmName ?? '',
    deployment: kind === 'azure' ? (props.llmName ?? '') : '',
    model_type: f.model_types[0] ?? 'chat',
    api_version: '',
    location: '',
  });
  const set = (k: string) => (x: string) => setV((o) => ({ ...o, [k]: x }));
  const val = (k: string) => v[k] ?? '';
  const opt = (k: string) => (val(k).trim() ? val(k).trim() : null);

  const submit = async () => {
    const body: AddModelRequest = { llm_factory: f.name };
    const maxTokens = opt('max_tokens');
    if (maxTokens) body.max_tokens = Number(maxTokens);
    if (kind === 'key') {
      body.api_key = val('api_key');
      body.base_url = opt('base_url');
    } else if (kind === 'azure') {
      Object.assign(body, {
        deployment: val('deployment').trim(),
        endpoint: val('endpoint').trim(),
        api_key: val('api_key'),
        api_version: opt('api_version'),
        llm_name: opt('llm_name'),
        model_type: val('model_type') as ModelType,
      });
    } else if (kind === 'vertex') {
      Object.assign(body, {
        credentials_json: val('credentials_json'),
        project_id: opt('project_id'),
        location: opt('location'),
      });
    } else if (kind === 'compatible') {
      Object.assign(body, {
        llm_name: val('llm_name').trim(),
        base_url: val('base_url').trim(),
        api_key: opt('api_key'),
        auth_token: opt('auth_token'),
        model_type: val('model_type') as ModelType,
      });
    } else {
      Object.assign(body, {
        llm_name: val('llm_name').trim(),
        base_url: val('base_url').trim(),
        model_type: val('model_type') as ModelType,
      });
    }
    await unwrap(api.POST('/api/v1/models', { body }));
    await props.onAdded();
  };

  const typeField = (
    <SelectField
      label="Model type"
      value={val('model_type')}
      onValue={set('model_type')}
      options={f.model_types.map((t) => [t, TYPE_NAMES[t] ?? t] as const)}
    />
  );
  const secret = (k: string, label: string, required: boolean, hint?: string) => (
    <TextField
      label={label}
      type="password"
      value={val(k)}
      onValue={set(k)}
      required={required}
      autocomplete="new-password"
      hint={hint}
    />
  );

  return (
    <Dialog title={`Add the model: ${f.name}`} onClose={props.onClose} wide testId="add-model">
      <Form
        onSubmit={submit}
        submit="OK"
        busy="Checking with the provider…"
        onCancel={props.onClose}
        label={`Add ${f.name}`}
      >
        {kind === 'key' && (
          <>
            {secret(
              'api_key',
              'API key',
              true,
              'Checked with one call to the provider, then sealed; never shown again.',
            )}
            <TextField
              label="Base URL (optional)"
              type="url"
              value={val('base_url')}
              onValue={set('base_url')}
              placeholder={f.default_base_url ?? ''}
              hint={f.default_base_url ? `Default ${f.default_base_url}` : undefined}
            />
          </>
        )}
        {kind === 'azure' && (
          <>
            <TextField
              label="Deployment name"
              value={val('deployment')}
              onValue={set('deployment')}
              required
            />
            <TextField
              label="Endpoint"
              type="url"
              value={val('endpoint')}
              onValue={set('endpoint')}
              placeholder="https://<resource>.openai.azure.com"
              required
            />
            {secret('api_key', 'API key', true)}
            <TextField
              label="API version (optional)"
              value={val('api_version')}
              onValue={set('api_version')}
              placeholder="2024-10-21"
            />
            <TextField
              label="Model name (optional)"
              value={val('llm_name')}
              onValue={set('llm_name')}
              placeholder="gpt-4o"
            />
            {typeField}
          </>
        )}
        {kind === 'vertex' && (
          <>
            <Field label="Service-account JSON file">
              {(id) => (
                <input
                  id={id}
                  type="file"
                  accept="application/json,.json"
                  onChange={async (e) => {
                    const file = e.currentTarget.files?.[0];
                    if (file) set('credentials_json')(await file.text());
                  }}
                />
              )}
            </Field>
            <Field
              label="Or paste the JSON credentials"
              hint="Sealed at rest; only the service account's masked e-mail is shown again."
            >
              {(id, hint) => (
                <textarea
                  id={id}
                  aria-describedby={hint}
                  rows={6}
                  spellcheck={false}
                  value={val('credentials_json')}
                  onInput={(e) => set('credentials_json')(e.currentTarget.value)}
                  required
                />
              )}
            </Field>
            <TextField label="Project ID (optional)" value={val('project_id')} onValue={set('project_id')} />
            <TextField
              label="Location (optional)"
              value={val('location')}
              onValue={set('location')}
              placeholder="us-central1"
            />
          </>
        )}
        {kind === 'compatible' && (
          <>
            <TextField label="Model name" value={val('llm_name')} onValue={set('llm_name')} required />
            <TextField
              label="Endpoint URL"
              type="url"
              value={val('base_url')}
              onValue={set('base_url')}
              placeholder="https://example.com/v1"
              required
            />
            {secret('api_key', 'API key (optional)', false)}
            {secret(
              'auth_token',
              'Auth token (optional)',
              false,
              'Sent as a bearer token when no API key is given.',
            )}
            {typeField}
          </>
        )}
        {kind === 'selfhosted' && (
          <>
            <TextField label="Model name" value={val('llm_name')} onValue={set('llm_name')} required />
            <TextField
              label="Base URL"
              type="url"
              value={val('base_url')}
              onValue={set('base_url')}
              placeholder="http://127.0.0.1:11434"
              required
              hint="A server you run; no key."
            />
            {typeField}
          </>
        )}
        {kind !== 'key' && kind !== 'vertex' && (
          <TextField
            label="Max tokens (optional)"
            type="number"
            min={1}
            value={val('max_tokens')}
            onValue={set('max_tokens')}
          />
        )}
      </Form>
    </Dialog>
  );
}
