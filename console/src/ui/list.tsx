// Paged lists. A view asks a PageSource for one page; how the API pages is decided here alone:
// `serverPaged` for routes that take page/page_size and answer {total, items} (gateway keys), and
// `wholeArray` for routes that still answer the whole list (admin lists, a user's own keys), paged
// in the browser until those routes page too (then only their source changes to serverPaged).
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { ErrorText, Loading } from './kit';

export interface PageQuery<F> {
  page: number;
  pageSize: number;
  filters: F;
}
export interface Page<T> {
  items: T[];
  /** Matching items over all pages, when the source knows it. */
  total: number | null;
  hasMore: boolean;
}
export type PageSource<T, F> = (q: PageQuery<F>) => Promise<Page<T>>;

/** A route with `page`/`page_size` that answers `{total, items}`. */
export function serverPaged<T, F>(
  fetchPage: (q: PageQuery<F>) => Promise<{ total: number; items: T[] }>,
): PageSource<T, F> {
  return async (q) => {
    const r = await fetchPage(q);
    return { items: r.items, total: r.total, hasMore: q.page * q.pageSize < r.total };
  };
}

/** A route that answers the whole list: filtered and sliced here. */
export function wholeArray<T, F>(
  fetchAll: (filters: F) => Promise<T[]>,
  keep: (item: T, filters: F) => boolean = () => true,
): PageSource<T, F> {
  return async (q) => {
    const all = (await fetchAll(q.filters)).filter((t) => keep(t, q.filters));
    const start = (q.page - 1) * q.pageSize;
    return {
      items: all.slice(start, start + q.pageSize),
      total: all.length,
      hasMore: start + q.pageSize < all.length,
    };
  };
}

/**
 * A route that takes only a `limit` and answers newest first (the audit log): asks for one more
 * than the pages so far to know whether another follows, up to the route's own maximum.
 */
export function limitPaged<T, F>(
  fetchUpTo: (limit: number, filters: F) => Promise<T[]>,
  maxLimit: number,
): PageSource<T, F> {
  return async (q) => {
    const want = Math.min(maxLimit, q.page * q.pageSize + 1);
    const got = await fetchUpTo(want, q.filters);
    const start = (q.page - 1) * q.pageSize;
    return {
      items: got.slice(start, start + q.pageSize),
      total: null,
      hasMore: got.length > start + q.pageSize && start + q.pageSize < maxLimit,
    };
  };
}

export interface Paged<T> {
  page: number;
  pageSize: number;
  setPage: (p: number) => void;
  data: Page<T> | null;
  loading: boolean;
  error: unknown;
  reload: () => Promise<void>;
}

/** The state of one paged list; a change of filters goes back to page 1. */
export function usePaged<T, F>(source: PageSource<T, F>, filters: F, pageSize = 20): Paged<T> {
  const [page, setPage] = useState(1);
  const [data, setData] = useState<Page<T> | null>(null);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState<unknown>(null);
  const key = JSON.stringify(filters);
  const seq = useRef(0);
  const lastKey = useRef(key);
  const load = useCallback(
    async (p: number) => {
      const mine = ++seq.current;
      setLoading(true);
      try {
        const d = await source({ page: p, pageSize, filters });
        if (mine !== seq.current) return;
        // A page emptied by a deletion steps back to the last page that has items.
        if (d.items.length === 0 && p > 1) {
          setPage(p - 1);
          return;
        }
        setData(d);
        setError(null);
      } catch (e) {
        if (mine === seq.current) setError(e);
      } finally {
        if (mine === seq.current) setLoading(false);
      }
    },
    [key, pageSize],
  );
  useEffect(() => {
    if (lastKey.current !== key) {
      lastKey.current = key;
      if (page !== 1) {
        setPage(1);
        return;
      }
    }
    void load(page);
  }, [key, page, load]);
  return { page, pageSize, setPage, data, loading, error, reload: () => load(page) };
}

/** The table body's states (loading, error, empty) and the pager under it. */
export function PagedView<T>(props: {
  list: Paged<T>;
  what: string;
  empty: string;
  children: (items: T[]) => preact.ComponentChildren;
}) {
  const { list } = props;
  if (!list.data) {
    if (list.error) return <ErrorText error={list.error} retry={() => void list.reload()} />;
    return <Loading what={props.what} />;
  }
  const d = list.data;
  return (
    <div aria-busy={list.loading}>
      {list.error ? <ErrorText error={list.error} retry={() => void list.reload()} /> : null}
      {d.items.length === 0 ? <p class="muted">{props.empty}</p> : props.children(d.items)}
      <Pager list={list} />
    </div>
  );
}

export function Pager<T>(props: { list: Paged<T> }) {
  const { page, pageSize, setPage, data, loading } = props.list;
  if (!data || (page === 1 && !data.hasMore)) {
    return data?.total != null && data.total > 0 ? (
      <p class="pager muted">{data.total === 1 ? '1 item' : `${data.total} items`}</p>
    ) : null;
  }
  return (
    <nav class="pager" aria-label="Pages">
      <button type="button" disabled={page <= 1 || loading} onClick={() => setPage(page - 1)}>
        Previous
      </button>
      <span>
        Page {page}
        {data.total != null ? ` of ${Math.max(1, Math.ceil(data.total / pageSize))}` : ''}
        {data.total != null ? ` · ${data.total} items` : ''}
      </span>
      <button type="button" disabled={!data.hasMore || loading} onClick={() => setPage(page + 1)}>
        Next
      </button>
    </nav>
  );
}
