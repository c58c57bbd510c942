// Paged lists. A view asks a PageSource for one page; how the API pages is decided here alone:
// `serverPaged` for routes that take page/page_size and answer {total, items} (gateway keys), and
// `cursorPaged` for the routes that answer one page as a bare array and name the next page's
// cursor in `X-Next-Cursor` (admin lists, a user's keys, the audit log). The cursors of the pages
// seen so far are kept, so "Previous" goes back without the API having to page backwards.
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { ErrorText, Loading } from './kit';

/** Rows per page of the cursor-paged lists (the API allows 1 to 1000, default 100). */
export const PAGE_SIZE = 50;

export interface PageQuery<F> {
  page: number;
  pageSize: number;
  filters: F;
  /** For cursor-paged routes: where this page starts (null for the first page). */
  cursor: string | null;
}
export interface Page<T> {
  items: T[];
  /** Matching items over all pages, when the source knows it. */
  total: number | null;
  hasMore: boolean;
  /** For cursor-paged routes: the cursor of the next page, null on the last. */
  next: string | null;
}
export type PageSource<T, F> = (q: PageQuery<F>) => Promise<Page<T>>;

/** A route with `page`/`page_size` that answers `{total, items}`. */
export function serverPaged<T, F>(
  fetchPage: (q: PageQuery<F>) => Promise<{ total: number; items: T[] }>,
): PageSource<T, F> {
  return async (q) => {
    const r = await fetchPage(q);
    return { items: r.items, total: r.total, hasMore: q.page * q.pageSize < r.total, next: null };
  };
}

/** A route with `limit`/`cursor` that answers one page and the next page's cursor, if any. */
export function cursorPaged<T, F>(
  fetchPage: (q: {
    limit: number;
    cursor: string | null;
    filters: F;
  }) => Promise<{ items: T[]; next: string | null }>,
): PageSource<T, F> {
  return async (q) => {
    const r = await fetchPage({ limit: q.pageSize, cursor: q.cursor, filters: q.filters });
    return { items: r.items, total: null, hasMore: r.next != null, next: r.next };
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
  // Which filters and page `data` answers: until the effect below has loaded the page now asked
  // for (effects run after paint), the rows on screen are another page's and the list is busy.
  const [shown, setShown] = useState('');
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState<unknown>(null);
  const key = JSON.stringify(filters);
  const seq = useRef(0);
  const lastKey = useRef(key);
  // cursors[i] is where page i + 1 starts; page 1 starts at the beginning.
  const cursors = useRef<Array<string | null>>([null]);
  const load = useCallback(
    async (p: number) => {
      const mine = ++seq.current;
      setLoading(true);
      try {
        const d = await source({ page: p, pageSize, filters, cursor: cursors.current[p - 1] ?? null });
        if (mine !== seq.current) return;
        // The next page starts after this page as it is now (a row added or removed on it moves
        // the boundary); the cursors beyond are found again when those pages are visited.
        cursors.current = cursors.current.slice(0, p);
        if (d.next != null) cursors.current.push(d.next);
        // A page emptied by a deletion steps back to the last page that has items.
        if (d.items.length === 0 && p > 1) {
          setPage(p - 1);
          return;
        }
        setData(d);
        setShown(`${p}:${key}`);
        setError(null);
      } catch (e) {
        if (mine === seq.current) {
          setError(e);
          setShown(`${p}:${key}`);
        }
      } finally {
        if (mine === seq.current) setLoading(false);
      }
    },
    [key, pageSize],
  );
  useEffect(() => {
    if (lastKey.current !== key) {
      lastKey.current = key;
      cursors.current = [null];
      if (page !== 1) {
        setPage(1);
        return;
      }
    }
    void load(page);
  }, [key, page, load]);
  const stale = shown !== `${page}:${key}`;
  return { page, pageSize, setPage, data, loading: loading || stale, error, reload: () => load(page) };
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
    <nav class="pager" aria-label="List pages">
      <button type="button" disabled={page <= 1 || loading} onClick={() => setPage(page - 1)}>
        Previous page
      </button>
      <span>
        Page {page}
        {data.total != null ? ` of ${Math.max(1, Math.ceil(data.total / pageSize))}` : ''}
        {data.total != null ? ` · ${data.total} items` : ''}
      </span>
      <button type="button" disabled={!data.hasMore || loading} onClick={() => setPage(page + 1)}>
        Next page
      </button>
    </nav>
  );
}
