// Lease IDs in etcdctl output, made comparable between two servers: each server chooses its
// IDs from its clock, so each distinct ID becomes L1, L2, … in order of first appearance.
// Used by the compat tests whose steps grant leases.

/** etcd's well-known member and cluster IDs, which look like lease IDs and are kept. */
const WELL_KNOWN = new Set(['8e9e05c52164694d', 'cdf818194e3a8c32']);

/** Maps each server's lease IDs to L1, L2, … in order of first appearance. */
export class LeaseIds {
  /** Hex ID → its label. */
  readonly labels = new Map<string, string>();
  /** Hex IDs in order of appearance (L1 first). */
  readonly order: string[] = [];

  label(hex: string): string {
    let l = this.labels.get(hex);
    if (!l) {
      this.order.push(hex);
      l = `L${this.order.length}`;
      this.labels.set(hex, l);
    }
    return l;
  }

  normalise(text: string): string {
    return text
      .replace(/\b[0-9a-f]{16}\b/g, (hex) => (WELL_KNOWN.has(hex) ? hex : this.label(hex)))
      .replace(/"(ID|id|lease)":"?(\d+)"?/g, (_m, f: string, dec: string) => `"${f}":"${this.label(BigInt(dec).toString(16).padStart(16, '0'))}"`)
      .replace(/remaining\(-?\d+s\)/g, 'remaining(<n>s)');
  }

  /** Replaces {L1}, {L2}, … in arguments with the hex IDs. */
  args(args: readonly string[]): string[] {
    return args.map((a) => a.replace(/\{L(\d+)\}/g, (_m, n: string) => this.order[Number(n) - 1] ?? `missing-L${n}`));
  }
}
