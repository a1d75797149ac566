/**
 * A fixed-seed generator for test inputs (mulberry32): the same seed gives the same sequence on
 * every run, so a test that compares two servers on random requests is repeatable.
 */
export function seeded(seed: number): { int(n: number): number; pick<T>(list: readonly T[]): T } {
  let s = seed >>> 0;
  const int = (n: number): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 2 ** 32) * n);
  };
  return { int, pick: (list) => list[int(list.length)]! };
}
