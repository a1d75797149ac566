/**
 * Exponential backoff with full jitter, used between reconnect attempts and unary retries.
 * Kept in-house (a dozen lines) rather than pulling in a resilience library: the client needs
 * only "how long to wait before attempt n", and both its retry loops also depend on endpoint
 * rotation and on AbortSignals, which a generic retry wrapper would not know about.
 */

/** Backoff settings, in milliseconds. */
export interface BackoffOptions {
  /** Upper bound of the first wait, in ms. @default 50 */
  initialMs?: number;
  /** Upper bound of any wait, in ms. @default 2000 */
  maxMs?: number;
}

/** The wait before attempt `attempt` (1-based): uniform in [0, min(max, initial·2^(attempt-1))]. */
export function backoffDelayMs(attempt: number, options: BackoffOptions = {}): number {
  const initial = options.initialMs ?? 50;
  const max = options.maxMs ?? 2000;
  const ceiling = Math.min(max, initial * 2 ** Math.min(attempt - 1, 30));
  return Math.random() * ceiling;
}

/** Resolves after `ms`, or rejects with the signal's reason as soon as `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason as Error);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason as Error);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
