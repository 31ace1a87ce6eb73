import { Component, useEffect, useRef, type ReactNode } from 'react';
import { ago, clock, tierLabel, tone } from './format.js';
import type { Meta, Status } from './types.js';

export function StatusBadge({ status }: { status: Status }) {
  return (
    <span className={`badge status tone-${tone(status)}`} data-status={status} title={status === 'sleeping' ? 'Asleep after its idle timeout; a message wakes it' : undefined}>
      <span className="dot" aria-hidden="true" />
      {status}
      {status === 'sleeping' && <span className="wakes"> · wakes on message</span>}
    </span>
  );
}

export function TierBadge({ meta, tier }: { meta: Meta; tier: number }) {
  const label = tierLabel(meta, tier);
  return (
    <span className="badge tier" title={`Tier ${tier}: ${label}`}>
      T{tier}
      {label && <span className="tier-size"> · {label}</span>}
    </span>
  );
}

export function Ago({ iso, now }: { iso: string | null; now: number }) {
  if (!iso) return <span className="muted">never</span>;
  return (
    <time dateTime={iso} title={clock(iso)}>
      {ago(iso, now)}
    </time>
  );
}

/**
 * A modal <dialog>: the browser traps focus in it and closes it on Escape; focus returns to where it was.
 */
export function Modal({ title, onClose, children, labelId }: { title: string; onClose: () => void; children: ReactNode; labelId: string }) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current!;
    const before = document.activeElement as HTMLElement | null;
    if (!d.open) d.showModal();
    // showModal focuses the first focusable element (the close button); the field to start in is marked instead.
    d.querySelector<HTMLElement>('[data-autofocus]')?.focus();
    return () => {
      if (d.open) d.close();
      before?.focus?.();
    };
  }, []);
  return (
    <dialog
      ref={ref}
      aria-labelledby={labelId}
      onCancel={(e) => {
        e.preventDefault();
        onClose();
      }}
    >
      <div className="dialog-head">
        <h2 id={labelId}>{title}</h2>
        <button type="button" className="icon" aria-label="Close" onClick={onClose}>
          ×
        </button>
      </div>
      {children}
    </dialog>
  );
}

export function ErrorNote({ error }: { error: string | null }) {
  if (!error) return null;
  return (
    <p className="banner bad" role="alert">
      {error}
    </p>
  );
}

/** A view that throws shows what broke instead of leaving a blank page; the rest of the app keeps working. */
export class ViewBoundary extends Component<{ children: ReactNode }, { error: Error | null }> {
  state = { error: null as Error | null };

  static getDerivedStateFromError(error: Error) {
    return { error };
  }

  render() {
    if (!this.state.error) return this.props.children;
    return (
      <div className="banner bad" role="alert">
        <p>This view failed: {this.state.error.message}</p>
        <button type="button" onClick={() => this.setState({ error: null })}>
          Try again
        </button>
      </div>
    );
  }
}
