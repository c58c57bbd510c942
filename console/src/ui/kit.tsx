// The console's building blocks: dialogs (native modal <dialog>: the page behind is inert, focus
// stays inside, Escape closes), the confirmation prompt, buttons that show progress, copy buttons,
// labelled fields, the status line that announces outcomes, and date formatting.
// Everything renders text through Preact, which escapes it; nothing here sets HTML.
import { signal } from '@preact/signals';
import type { ComponentChildren, InputHTMLAttributes } from 'preact';
import { useEffect, useId, useRef, useState } from 'preact/hooks';
import { ApiError } from '../api/client';

// ------------------------------------------------------------------ notices

export interface Notice {
  id: number;
  kind: 'ok' | 'error';
  text: string;
}
export const notices = signal<Notice[]>([]);
let noticeSeq = 0;

export function notify(kind: Notice['kind'], text: string): void {
  const n = { id: ++noticeSeq, kind, text };
  notices.value = [...notices.value.slice(-3), n];
  setTimeout(() => {
    notices.value = notices.value.filter((x) => x.id !== n.id);
  }, 8000);
}

/** The message to show for a failure: the API's own, with when to retry on 429. */
export function messageOf(e: unknown): string {
  if (e instanceof ApiError) {
    if (e.status === 429 && e.retryAfterSeconds != null) {
      const at = new Date(Date.now() + e.retryAfterSeconds * 1000);
      return `${e.message} (try again at ${at.toLocaleTimeString()})`;
    }
    return e.message;
  }
  return e instanceof Error ? e.message : String(e);
}

export function Notices() {
  return (
    <div class="notices" role="status" aria-live="polite">
      {notices.value.map((n) => (
        <p key={n.id} class={`notice ${n.kind}`}>
          {n.text}
          <button
            type="button"
            class="link"
            aria-label="Dismiss"
            onClick={() => {
              notices.value = notices.value.filter((x) => x.id !== n.id);
            }}
          >
            ×
          </button>
        </p>
      ))}
    </div>
  );
}

// ------------------------------------------------------------------ dialogs

const FOCUSABLE =
  'a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';

export function Dialog(props: {
  title: string;
  onClose: () => void;
  children: ComponentChildren;
  wide?: boolean;
  testId?: string;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const titleId = useId();
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    const opener = document.activeElement as HTMLElement | null;
    d.showModal();
    const first = d.querySelector<HTMLElement>('[autofocus]') ?? d.querySelector<HTMLElement>(FOCUSABLE);
    first?.focus();
    return () => {
      if (d.open) d.close();
      if (opener?.isConnected) opener.focus();
    };
  }, []);
  // Tab and Shift+Tab cycle inside the dialog, even where the browser would leave for its own UI.
  const onKeyDown = (e: KeyboardEvent) => {
    if (e.key !== 'Tab') return;
    const items = Array.from(ref.current?.querySelectorAll<HTMLElement>(FOCUSABLE) ?? []).filter(
      (el) => el.offsetParent !== null,
    );
    if (items.length === 0) return;
    const first = items[0] as HTMLElement;
    const last = items[items.length - 1] as HTMLElement;
    if (e.shiftKey && document.activeElement === first) {
      e.preventDefault();
      last.focus();
    } else if (!e.shiftKey && document.activeElement === last) {
      e.preventDefault();
      first.focus();
    }
  };
  return (
    <dialog
      ref={ref}
      class={props.wide ? 'wide' : ''}
      aria-labelledby={titleId}
      data-testid={props.testId}
      onKeyDown={onKeyDown}
      onCancel={(e) => {
        e.preventDefault();
        props.onClose();
      }}
    >
      <header>
        <h2 id={titleId}>{props.title}</h2>
        <button type="button" class="link close" aria-label="Close" onClick={props.onClose}>
          ×
        </button>
      </header>
      {props.children}
    </dialog>
  );
}

interface Question {
  title: string;
  text: string;
  confirm: string;
  resolve: (yes: boolean) => void;
}
const question = signal<Question | null>(null);

/** Ask before a destructive action; resolves true when confirmed. */
export function ask(title: string, text: string, confirm = 'Delete'): Promise<boolean> {
  return new Promise((resolve) => {
    question.value = { title, text, confirm, resolve };
  });
}

export function ConfirmHost() {
  const q = question.value;
  if (!q) return null;
  const done = (yes: boolean) => {
    question.value = null;
    q.resolve(yes);
  };
  return (
    <Dialog title={q.title} onClose={() => done(false)} testId="confirm">
      <p>{q.text}</p>
      <div class="actions">
        <button type="button" onClick={() => done(false)} autofocus>
          Cancel
        </button>
        <button type="button" class="danger" onClick={() => done(true)}>
          {q.confirm}
        </button>
      </div>
    </Dialog>
  );
}

// ------------------------------------------------------------------ actions

/** A button that runs an async action, shows progress while it runs and its outcome after. */
export function Action(props: {
  run: () => Promise<unknown>;
  label: string;
  busy?: string;
  done?: string;
  class?: string;
  disabled?: boolean;
  title?: string;
}) {
  const [running, setRunning] = useState(false);
  const alive = useRef(true);
  useEffect(
    () => () => {
      alive.current = false;
    },
    [],
  );
  return (
    <button
      type="button"
      class={props.class}
      disabled={running || props.disabled}
      aria-busy={running}
      aria-label={props.title}
      onClick={async () => {
        setRunning(true);
        try {
          await props.run();
          if (props.done) notify('ok', props.done);
        } catch (e) {
          notify('error', messageOf(e));
        } finally {
          if (alive.current) setRunning(false);
        }
      }}
    >
      {running ? (props.busy ?? `${props.label}…`) : props.label}
    </button>
  );
}

/** A form whose submit shows progress and puts the API's message inside the form on failure. */
export function Form(props: {
  onSubmit: () => Promise<unknown>;
  submit: string;
  busy: string;
  children: ComponentChildren;
  onCancel?: () => void;
  label?: string;
}) {
  const [running, setRunning] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const alive = useRef(true);
  useEffect(
    () => () => {
      alive.current = false;
    },
    [],
  );
  return (
    <form
      aria-label={props.label}
      onSubmit={async (e) => {
        e.preventDefault();
        setRunning(true);
        setError(null);
        try {
          await props.onSubmit();
        } catch (err) {
          if (alive.current) setError(messageOf(err));
        } finally {
          if (alive.current) setRunning(false);
        }
      }}
    >
      {props.children}
      {error && (
        <p class="form-error" role="alert">
          {error}
        </p>
      )}
      <div class="actions">
        {props.onCancel && (
          <button type="button" onClick={props.onCancel}>
            Cancel
          </button>
        )}
        <button type="submit" class="primary" disabled={running} aria-busy={running}>
          {running ? props.busy : props.submit}
        </button>
      </div>
    </form>
  );
}

// ------------------------------------------------------------------ fields

export function Field(props: {
  label: string;
  hint?: ComponentChildren;
  children: (id: string, hintId: string | undefined) => ComponentChildren;
}) {
  const id = useId();
  const hintId = props.hint ? `${id}-hint` : undefined;
  return (
    <div class="field">
      <label for={id}>{props.label}</label>
      {props.children(id, hintId)}
      {props.hint && (
        <small id={hintId} class="hint">
          {props.hint}
        </small>
      )}
    </div>
  );
}

type InputProps = Omit<InputHTMLAttributes<HTMLInputElement>, 'onInput' | 'value' | 'label'> & {
  label: string;
  value: string;
  onValue: (v: string) => void;
  hint?: ComponentChildren;
};

export function TextField({ label, value, onValue, hint, ...rest }: InputProps) {
  return (
    <Field label={label} hint={hint}>
      {(id, hintId) => (
        <input
          id={id}
          aria-describedby={hintId}
          value={value}
          onInput={(e) => onValue(e.currentTarget.value)}
          autocomplete="off"
          spellcheck={false}
          {...rest}
        />
      )}
    </Field>
  );
}

export function SelectField(props: {
  label: string;
  value: string;
  onValue: (v: string) => void;
  options: ReadonlyArray<readonly [string, string]>;
  hint?: ComponentChildren;
  required?: boolean;
}) {
  return (
    <Field label={props.label} hint={props.hint}>
      {(id, hintId) => (
        <select
          id={id}
          aria-describedby={hintId}
          value={props.value}
          required={props.required}
          onChange={(e) => props.onValue(e.currentTarget.value)}
        >
          {props.options.map(([v, text]) => (
            <option key={v} value={v}>
              {text}
            </option>
          ))}
        </select>
      )}
    </Field>
  );
}

// ------------------------------------------------------------------ copy

export function CopyButton(props: { value: string; label: string }) {
  const [copied, setCopied] = useState(false);
  return (
    <button
      type="button"
      class="copy"
      aria-label={props.label}
      onClick={async () => {
        try {
          await navigator.clipboard.writeText(props.value);
          setCopied(true);
          setTimeout(() => setCopied(false), 2000);
        } catch {
          notify('error', 'The browser refused to copy; select the text and copy it by hand');
        }
      }}
    >
      {copied ? 'Copied' : 'Copy'}
    </button>
  );
}

/** A value in monospace with its copy button. */
export function Copyable(props: { value: string; label: string; testId?: string }) {
  return (
    <span class="copyable">
      <code data-testid={props.testId}>{props.value}</code>
      <CopyButton value={props.value} label={props.label} />
    </span>
  );
}

// ------------------------------------------------------------------ formatting

/** `2026-12-01 09:46 UTC`: the same for every viewer, whatever their locale. */
export function when(s: string | null | undefined, none = '—'): string {
  if (!s) return none;
  const d = new Date(s);
  if (Number.isNaN(d.getTime())) return s;
  return `${d.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

/** Minutes as days, hours and minutes, exactly: what a key has left is rarely a round number. */
export function minutesText(m: number): string {
  const unit = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;
  if (m <= 0) return unit(0, 'minute');
  const parts: string[] = [];
  if (m >= 1440) parts.push(unit(Math.floor(m / 1440), 'day'));
  if (m % 1440 >= 60) parts.push(unit(Math.floor((m % 1440) / 60), 'hour'));
  if (m % 60) parts.push(unit(m % 60, 'minute'));
  return parts.join(' ');
}

export function Loading(props: { what: string }) {
  return (
    <p class="muted" aria-busy="true">
      Loading {props.what}…
    </p>
  );
}

export function ErrorText(props: { error: unknown; retry?: () => void }) {
  return (
    <p class="form-error" role="alert">
      {messageOf(props.error)}{' '}
      {props.retry && (
        <button type="button" class="link" onClick={props.retry}>
          Try again
        </button>
      )}
    </p>
  );
}
