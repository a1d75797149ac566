/**
 * V8 garbage-collector settings of the etcd-ts executable (bin/etcd-ts.js), which owns its
 * process. The embedded server (src/embed.ts) sets none: its host owns the process's V8 flags.
 *
 * V8 sizes the old generation after each full collection (Mark-Compact) as the live size times a
 * growing factor that it derives from how fast the program allocates. A server at a low write rate
 * allocates slowly, so V8 picks its smallest factor, 1.1. Its limit then leaves less room than
 * its trigger for starting the next incremental marking, which is based on the young generation's
 * capacity (up to 2 × 16 MiB). Once the young generation has grown to that size, every scavenge
 * starts a new marking: at 100 puts/s with 100 watchers, one Mark-Compact about every second,
 * each with a 2–6 ms pause plus 3–11 ms of marking steps on the event loop, measured with
 * `--trace-gc-verbose` (docs/ARCHITECTURE.md, "Garbage collection").
 *
 * A fixed factor of 2 is the rule etcd's own Go runtime follows by default (GOGC=100: the heap
 * grows to twice the live size before the next collection). It leaves room for a marking to start
 * only after the old generation has really grown.
 */

/** Percent by which the old generation may grow past its live size (factor 1 + 100/100 = 2). */
export const HEAP_GROWING_PERCENT = 100;

/**
 * The V8 flags (for `v8.setFlagsFromString`, one each) that the executable sets before it loads
 * the server: `--heap-growing-percent=HEAP_GROWING_PERCENT`, unless node was started with its own
 * `--heap-growing-percent` (given in `execArgv`, node's own arguments), which then wins.
 */
export function gcFlags(execArgv: readonly string[]): string[] {
  const own = execArgv.some((a) => /^--heap[-_]growing[-_]percent(=|$)/.test(a));
  return own ? [] : [`--heap-growing-percent=${HEAP_GROWING_PERCENT}`];
}
