// Default models: one choice per type among the tenant's configured models of that type (the
// deployment's enabled Builtin models included), or none. Saving sends all six at once, so it is
// all or nothing, and a refusal names every invalid choice (the API's message).
import { Fragment } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, type DefaultModels, type ModelType, unwrap } from '../api/client';
import { canManage } from '../session';
import { ErrorText, Form, Loading, notify, SelectField } from '../ui/kit';
import { type Configured, loadConfigured, TYPE_NAMES } from './models';

const FIELDS: ReadonlyArray<readonly [keyof DefaultModels, ModelType]> = [
  ['llm_id', 'chat'],
  ['embd_id', 'embedding'],
  ['asr_id', 'speech2text'],
  ['img2txt_id', 'image2text'],
  ['rerank_id', 'rerank'],
  ['tts_id', 'tts'],
];

export function DefaultsPage() {
  const [defaults, setDefaults] = useState<DefaultModels | null>(null);
  const [configured, setConfigured] = useState<Configured | null>(null);
  const [choice, setChoice] = useState<Record<string, string>>({});
  const [error, setError] = useState<unknown>(null);
  const manage = canManage();

  const reload = async () => {
    try {
      const [d, c] = await Promise.all([unwrap(api.GET('/api/v1/models/default')), loadConfigured()]);
      setDefaults(d);
      setConfigured(c);
      setChoice(Object.fromEntries(FIELDS.map(([k]) => [k, d[k] ?? ''])));
      setError(null);
    } catch (e) {
      setError(e);
    }
  };
  useEffect(() => {
    void reload();
  }, []);

  if (error && !defaults) return <ErrorText error={error} retry={() => void reload()} />;
  if (!defaults || !configured) return <Loading what="default models" />;

  const optionsFor = (type: ModelType) => {
    const ids: string[] = [];
    for (const [factory, cf] of Object.entries(configured)) {
      for (const m of cf.llm) if (m.type === type) ids.push(`${m.name}@${factory}`);
    }
    return ids;
  };

  const save = async () => {
    const body = Object.fromEntries(FIELDS.map(([k]) => [k, choice[k] ? choice[k] : null]));
    await unwrap(api.POST('/api/v1/models/default', { body }));
    await reload();
    notify('ok', 'Default models saved');
  };

  return (
    <section aria-labelledby="defaults-title">
      <h1 id="defaults-title">Default models</h1>
      <p class="muted">
        The model the relay uses for each type when a request names none (<code>model: "default"</code>).
      </p>
      {manage ? (
        <Form onSubmit={save} submit="Save" busy="Saving…" label="Default models">
          <div class="grid2">
            {FIELDS.map(([k, type]) => {
              const ids = optionsFor(type);
              const current = choice[k] ?? '';
              // A stored default that is no longer configured still shows, so saving can clear it.
              if (current && !ids.includes(current)) ids.unshift(current);
              return (
                <SelectField
                  key={k}
                  label={TYPE_NAMES[type]}
                  value={current}
                  onValue={(x) => setChoice((o) => ({ ...o, [k]: x }))}
                  options={[['', 'None'], ...ids.map((id) => [id, id] as const)]}
                />
              );
            })}
          </div>
        </Form>
      ) : (
        <dl class="facts" data-testid="read-only">
          {FIELDS.map(([k, type]) => (
            <Fragment key={k}>
              <dt>{TYPE_NAMES[type]}</dt>
              <dd>{defaults[k] ?? 'None'}</dd>
            </Fragment>
          ))}
        </dl>
      )}
    </section>
  );
}
