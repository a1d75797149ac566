/**
 * Automatic compaction (etcd `etcdserver/api/v3compactor`), started by
 * `--auto-compaction-mode` and `--auto-compaction-retention`.
 *
 * - periodic: keeps `retention` of history. Every `min(retention, 1h) / 10` it samples the
 *   revision; once `retention` has passed since the last success (then every `min(retention,
 *   1h)`) it compacts at the oldest sample, the revision of about `retention` ago.
 * - revision: every 5 minutes compacts at `current - retention`, unless that is ≤ 0 or the
 *   same as last time.
 * A compaction that fails with "already compacted" counts as success, as in etcd.
 */
import type { Logger } from 'pino';
import type { AutoCompactionMode } from '../config.js';
import { isRetentionCount, parseGoDuration } from '../cli/flags.js';
import { formatGoDuration } from '../go-format.js';
import { plog } from '../logger.js';

/** What the compactor needs from the server. */
export interface Compactable {
  /** The current revision. */
  rev(): number;
  /** Compacts at `rev`; rejects with etcd's "required revision has been compacted" when already compacted there. */
  compact(rev: number): Promise<unknown>;
}

/** Revision-mode interval (etcd `revInterval`): 5 minutes. */
const REVISION_INTERVAL_MS = 5 * 60 * 1000;
const HOUR_MS = 60 * 60 * 1000;

/**
 * etcd `parseCompactionRetention`: a bare integer is hours in periodic mode and a revision
 * count in revision mode; otherwise a Go duration, in ms for periodic mode and, as etcd takes
 * it in revision mode, in nanoseconds as a revision count (`1h` keeps 3.6e12 revisions).
 * Returns 0 for "off", and with no mode (etcd starts no compactor then). Throws on an
 * unparsable value.
 */
export function parseRetention(mode: AutoCompactionMode, retention: string): number {
  if (isRetentionCount(retention)) return mode === 'periodic' ? Number(retention) * HOUR_MS : mode === 'revision' ? Number(retention) : 0;
  const ms = parseGoDuration(retention);
  return mode === 'periodic' ? ms : mode === 'revision' ? ms * 1e6 : 0;
}

/** A running compactor; `stop()` ends it. */
export interface AutoCompactor {
  stop(): void;
}

/** Starts the compactor for `mode`/`retention`, or returns undefined when retention is 0. */
export function startAutoCompactor(mode: AutoCompactionMode, retention: string, target: Compactable, log: Logger): AutoCompactor | undefined {
  const amount = parseRetention(mode, retention);
  if (amount <= 0) return undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const schedule = (ms: number, fn: () => Promise<void>): void => {
    if (stopped) return;
    timer = setTimeout(() => void fn().finally(() => schedule(ms, fn)), ms);
    timer.unref();
  };
  // etcd's fields and words: zap's name the mode, capnslog's the retention.
  const fields = mode === 'periodic' ? { 'compact-period': formatGoDuration(amount) } : { 'revision-compaction-retention': amount };
  const kept = mode === 'periodic' ? formatGoDuration(amount) : `${amount} revisions`;
  const attempt = async (rev: number): Promise<boolean> => {
    log.info({ revision: rev, ...fields, ...plog('compactor', 'N', `Starting auto-compaction at revision ${rev} (retention: ${kept})`) }, `starting auto ${mode} compaction`);
    try {
      await target.compact(rev);
    } catch (err) {
      const error = (err as Error).message;
      if (!String(error).includes('required revision has been compacted')) {
        log.warn({ revision: rev, ...fields, error, ...plog('compactor', 'N', `Failed auto-compaction at revision ${rev} (${error})`) }, `failed auto ${mode} compaction`);
        return false;
      }
    }
    log.info({ revision: rev, ...fields, ...plog('compactor', 'N', `Finished auto-compaction at revision ${rev}`) }, `completed auto ${mode} compaction`);
    return true;
  };

  if (mode === 'revision') {
    let prev = 0;
    schedule(REVISION_INTERVAL_MS, async () => {
      const rev = target.rev() - amount;
      if (rev <= 0 || rev === prev) return;
      if (await attempt(rev)) prev = rev;
    });
  } else {
    const compactInterval = Math.min(amount, HOUR_MS);
    const retryInterval = compactInterval / 10;
    const retentions = Math.floor(amount / retryInterval) + 1;
    const revs: number[] = [];
    let lastSuccess = Date.now();
    let baseInterval = amount;
    revs.push(target.rev());
    schedule(retryInterval, async () => {
      if (Date.now() - lastSuccess >= baseInterval) {
        baseInterval = compactInterval;
        if (await attempt(revs[0]!)) lastSuccess = Date.now();
      }
      revs.push(target.rev());
      if (revs.length > retentions) revs.shift();
    });
  }
  return {
    stop: () => {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
