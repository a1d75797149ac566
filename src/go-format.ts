/**
 * Go's text forms of values that etcd writes in its log lines and errors, for the lines and
 * errors etcd-ts writes in etcd's words (src/logger.ts and the server's refusals).
 */

/**
 * Go's `time.Duration.String`: `1h0m0s`, `1m30s`, `1.5s`, `100ms`, `2µs`, `0s`.
 * @param ms the duration in milliseconds, to the nanosecond.
 */
export function formatGoDuration(ms: number): string {
  let ns = Math.round(ms * 1e6);
  if (ns === 0) return '0s';
  const sign = ns < 0 ? '-' : '';
  ns = Math.abs(ns);
  // v / 10^digits, its fraction without trailing zeros
  const fraction = (v: number, digits: number): string => {
    const unit = 10 ** digits;
    const rest = String(v % unit).padStart(digits, '0').replace(/0+$/, '');
    return rest === '' ? `${Math.floor(v / unit)}` : `${Math.floor(v / unit)}.${rest}`;
  };
  if (ns < 1e3) return `${sign}${ns}ns`;
  if (ns < 1e6) return `${sign}${fraction(ns, 3)}µs`;
  if (ns < 1e9) return `${sign}${fraction(ns, 6)}ms`;
  const minutes = Math.floor(ns / 6e10);
  let text = `${fraction(ns % 6e10, 9)}s`;
  if (minutes > 0) text = `${minutes % 60}m${text}`;
  if (minutes >= 60) text = `${Math.floor(minutes / 60)}h${text}`;
  return sign + text;
}

/**
 * A size as go-humanize's `Bytes` writes it, which etcd's snapshot log lines use: SI units,
 * rounded to one decimal below 10 (`9 B`, `1.5 kB`, `20 kB`, `83 MB`).
 */
export function humanizeBytes(n: number): string {
  if (n < 10) return `${n} B`;
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB'];
  const e = Math.floor(Math.log(n) / Math.log(1000));
  const value = Math.floor((n / 1000 ** e) * 10 + 0.5) / 10;
  if (value < 10) return `${value.toFixed(1)} ${units[e]}`;
  // Go's %.0f rounds a half to even (12.5 → 12), toFixed away from zero.
  const whole = value % 1 === 0.5 && Math.floor(value) % 2 === 0 ? Math.floor(value) : Math.round(value);
  return `${whole} ${units[e]}`;
}

/** Go's texts (syscall.Errno.Error) of the errno codes etcd-ts meets, by Node's code. */
const GO_ERRNO_TEXT: Readonly<Record<string, string>> = {
  ENOENT: 'no such file or directory',
  EACCES: 'permission denied',
  EISDIR: 'is a directory',
  ENOTDIR: 'not a directory',
  EROFS: 'read-only file system',
  ELOOP: 'too many levels of symbolic links',
  ENAMETOOLONG: 'file name too long',
  ENOSPC: 'no space left on device',
  EADDRINUSE: 'address already in use',
  EADDRNOTAVAIL: 'cannot assign requested address',
};

/** Go's text of the errno Node names `code` (`permission denied`), or undefined for one not listed. */
export function goErrnoText(code: string | undefined): string | undefined {
  return code === undefined ? undefined : GO_ERRNO_TEXT[code];
}

/**
 * A failed file system call in Go's words (an `*os.PathError`): `<call> <path>: <errno text>`,
 * e.g. `write <file>: no space left on device`. Node's description stands in for an errno not
 * listed; an error that no system call raised (lmdb-js's) is its own message.
 */
export function goPathError(err: NodeJS.ErrnoException): string {
  if (err.syscall === undefined) return err.message;
  const text = goErrnoText(err.code) ?? /^[A-Z0-9_]+: (.*?),/.exec(err.message)?.[1] ?? err.message;
  return err.path !== undefined ? `${err.syscall} ${err.path}: ${text}` : `${err.syscall}: ${text}`;
}

/** Go's `%q` of a `[]string`: each item quoted, space-separated, in brackets (`["a" "b"]`). */
export function goQuotedList(list: readonly string[]): string {
  return `[${list.map((v) => JSON.stringify(v)).join(' ')}]`;
}
