// Usage over time: an SVG bar chart of tokens per hour or day (input and output stacked) with the
// numbers in a table beside it, and a budget's progress bar. Drawn by hand: a chart library would
// cost more of the size budget than these few shapes.
import { useEffect, useState } from 'preact/hooks';
import { api, type Schemas, unwrap } from '../api/client';
import { ErrorText, Loading } from './kit';

export type UsagePage = Schemas['UsagePage'];
export type UsagePoint = Schemas['UsagePoint'];
type Granularity = 'hour' | 'day';

/** What to chart: one gateway key, one model (`name@factory`), or the whole tenant. */
export type UsageOf = { key: string } | { model: string } | { tenant: true };

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** The range each granularity shows, ending now: two days by the hour, a month by the day. */
const RANGE: Record<Granularity, number> = { hour: 48 * HOUR, day: 30 * DAY };

const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

export async function loadUsage(of: UsageOf, granularity: Granularity, fromMs: number, toMs: number) {
  const query = { granularity, from: iso(fromMs), to: iso(toMs), page_size: 1000 };
  if ('key' in of) {
    return unwrap(api.GET('/api/v1/ai_keys/{id}/usage', { params: { path: { id: of.key }, query } }));
  }
  const model = 'model' in of ? { model: of.model } : {};
  return unwrap(api.GET('/api/v1/usage', { params: { query: { ...query, ...model } } }));
}

/** Every bucket of the range, those without usage as zeros, oldest first. */
function buckets(page: UsagePage, step: number, fromMs: number, toMs: number): UsagePoint[] {
  const byStart = new Map(page.items.map((p) => [Date.parse(p.start), p]));
  const first = Math.ceil(fromMs / step) * step;
  const out: UsagePoint[] = [];
  for (let t = first; t < toMs; t += step) {
    out.push(
      byStart.get(t) ?? { start: iso(t), requests: 0, input_tokens: 0, output_tokens: 0, rejected: 0 },
    );
  }
  return out;
}

const label = (start: string, granularity: Granularity) =>
  granularity === 'hour' ? `${start.slice(5, 10)} ${start.slice(11, 16)}` : start.slice(0, 10);

function Bars(props: { points: UsagePoint[]; granularity: Granularity }) {
  const { points } = props;
  const max = Math.max(1, ...points.map((p) => p.input_tokens + p.output_tokens));
  const w = 600;
  const h = 140;
  const bar = w / Math.max(points.length, 1);
  const total = points.reduce((s, p) => s + p.input_tokens + p.output_tokens, 0);
  return (
    <svg
      class="chart"
      viewBox={`0 0 ${w} ${h}`}
      role="img"
      aria-label={`Tokens per ${props.granularity}: ${total.toLocaleString('en')} in the range, at most ${max.toLocaleString('en')} in one ${props.granularity}`}
      data-testid="usage-chart"
    >
      {points.map((p, i) => {
        const hin = (p.input_tokens / max) * (h - 2);
        const hout = (p.output_tokens / max) * (h - 2);
        return (
          <g key={p.start} data-testid={p.requests > 0 ? 'usage-bar' : undefined}>
            <title>
              {label(p.start, props.granularity)}: {p.requests} calls, {p.input_tokens} in, {p.output_tokens}{' '}
              out, {p.rejected} refused
            </title>
            <rect class="in" x={i * bar + 1} y={h - hin} width={Math.max(bar - 2, 1)} height={hin} />
            <rect class="out" x={i * bar + 1} y={h - hin - hout} width={Math.max(bar - 2, 1)} height={hout} />
          </g>
        );
      })}
      <line x1="0" y1={h - 0.5} x2={w} y2={h - 0.5} class="axis" />
    </svg>
  );
}

/** The chart of one key's, model's or the tenant's usage, by the hour or the day, with its numbers. */
export function UsageChart(props: { of: UsageOf; title: string }) {
  const [granularity, setGranularity] = useState<Granularity>('day');
  const [page, setPage] = useState<{ page: UsagePage; from: number; to: number } | null>(null);
  const [error, setError] = useState<unknown>(null);
  const load = async (g: Granularity) => {
    const step = g === 'hour' ? HOUR : DAY;
    const to = Math.ceil((Date.now() + 1) / step) * step;
    const from = to - RANGE[g];
    try {
      setPage({ page: await loadUsage(props.of, g, from, to), from, to });
      setError(null);
    } catch (e) {
      setError(e);
    }
  };
  useEffect(() => {
    void load(granularity);
  }, [granularity]);
  const step = granularity === 'hour' ? HOUR : DAY;
  const points = page ? buckets(page.page, step, page.from, page.to) : [];
  const used = points.filter((p) => p.requests > 0 || p.rejected > 0);
  return (
    <section class="usage" aria-label={props.title} data-testid="usage">
      <div class="section-head">
        <h3>{props.title}</h3>
        <fieldset class="row-actions plain">
          <legend class="sr-only">Granularity</legend>
          {(['day', 'hour'] as const).map((g) => (
            <button key={g} type="button" aria-pressed={granularity === g} onClick={() => setGranularity(g)}>
              By {g}
            </button>
          ))}
        </fieldset>
      </div>
      {error != null ? (
        <ErrorText error={error} retry={() => void load(granularity)} />
      ) : page == null ? (
        <Loading what="usage" />
      ) : (
        <>
          <Bars points={points} granularity={granularity} />
          <p class="muted legend">
            <span class="swatch in" /> input tokens <span class="swatch out" /> output tokens
          </p>
          {used.length === 0 ? (
            <p class="muted">No calls in this range.</p>
          ) : (
            <table data-testid="usage-table">
              <thead>
                <tr>
                  <th scope="col">{granularity === 'hour' ? 'Hour (UTC)' : 'Day (UTC)'}</th>
                  <th scope="col">Calls</th>
                  <th scope="col">Input tokens</th>
                  <th scope="col">Output tokens</th>
                  <th scope="col">Refused</th>
                </tr>
              </thead>
              <tbody>
                {used.map((p) => (
                  <tr key={p.start} data-testid="usage-row">
                    <td>{label(p.start, granularity)}</td>
                    <td>{p.requests.toLocaleString('en')}</td>
                    <td>{p.input_tokens.toLocaleString('en')}</td>
                    <td>{p.output_tokens.toLocaleString('en')}</td>
                    <td>{p.rejected.toLocaleString('en')}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </>
      )}
    </section>
  );
}

/** When the budget period holding `now` began, in UTC (`total`: `since`). */
export function periodStart(period: string, now: number, since: number): number {
  const d = new Date(now);
  const midnight = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
  switch (period) {
    case 'day':
      return midnight;
    case 'week':
      // ISO weeks begin on Monday.
      return midnight - ((d.getUTCDay() + 6) % 7) * DAY;
    case 'month':
      return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
    default:
      return since;
  }
}

/** A gateway key's token budget: the spend of the current period against it, as a bar. */
export function BudgetBar(props: { keyId: string; budget: number; period: string; since: number }) {
  const [spent, setSpent] = useState<number | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    const now = Date.now();
    const from = Math.floor(periodStart(props.period, now, props.since) / DAY) * DAY;
    loadUsage({ key: props.keyId }, 'day', from, now + DAY)
      .then((p) => setSpent(p.items.reduce((s, x) => s + x.input_tokens + x.output_tokens, 0)))
      .catch(setError);
  }, [props.keyId, props.budget, props.period]);
  if (error != null) return <ErrorText error={error} />;
  if (spent == null) return <Loading what="the budget's spend" />;
  const share = Math.min(spent / props.budget, 1);
  const state = share >= 1 ? 'over' : share >= 0.8 ? 'near' : 'ok';
  return (
    <div class="budget" data-testid="budget">
      <progress
        class={state}
        max={props.budget}
        value={Math.min(spent, props.budget)}
        aria-label="Budget used"
      />
      <span data-testid="budget-text">
        {spent.toLocaleString('en')} of {props.budget.toLocaleString('en')} tokens this{' '}
        {props.period === 'total' ? 'key’s life' : props.period} ({Math.round(share * 100)}%)
      </span>
    </div>
  );
}
