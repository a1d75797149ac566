/**
 * V8 garbage-collector settings of the etcd-ts executable (bin/etcd-ts.js), which owns its
 * process. The embedded server (src/embed.ts) sets none: its host owns the process's V8 flags.
 *
 * The problem, measured with `--trace-gc-verbose` (docs/ARCHITECTURE.md, "Garbage collection"):
 * after each full collection (Mark-Compact) V8 sets the old generation's limit to its live size
 * times a growing factor, plus the young generation's capacity; at a low write rate it picks the
 * smallest factor, 1.1. By default it starts the next incremental marking as soon as the room left
 * below that limit is smaller than the young generation could promote at once. Once a long-running
 * server's young generation has grown to its maximum (2 × 16 MiB), that is true right after every
 * Mark-Compact: every scavenge starts a new marking. At 100 puts/s with 100 watchers that is one
 * Mark-Compact a second (10 in 8 s), each a 2–6 ms pause plus 3–11 ms of marking steps on the
 * event loop.
 *
 * The fix: V8's trigger flags start the marking when a share of the room since the last
 * Mark-Compact is used instead (1–2 Mark-Compacts in the same 8 s). Under load V8's factor is
 * large, the room too, and these triggers start the marking about when V8's default would: GC
 * counts and pauses under the bench's put, fan-out and catch-up loads were unchanged.
 */

/**
 * The flags, for `v8.setFlagsFromString` one by one: a marking starts from a task once 80% of the
 * room is used, at once past 95%.
 */
export const GC_FLAGS: readonly string[] = ['--incremental-marking-soft-trigger=80', '--incremental-marking-hard-trigger=95'];

/**
 * The GC_FLAGS the executable sets before it loads the server: each one unless node was started
 * with the same flag in `execArgv` (node's own arguments; `-` and `_` alike), which then wins.
 * `execArgv` is the only place they can come from: node refuses to start when `NODE_OPTIONS`
 * holds one ("is not allowed in NODE_OPTIONS", Node 20).
 */
export function gcFlags(execArgv: readonly string[]): string[] {
  const name = (flag: string): string => flag.split('=')[0]!.replaceAll('_', '-');
  const own = new Set(execArgv.map(name));
  return GC_FLAGS.filter((f) => !own.has(name(f)));
}
