// The server logger (src/logger.ts): JSON lines shaped like etcd's zap output.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { createLogger, formatCapnslog, LOG_LEVELS, LogOutputError, openLogOutputs, parseCapnslogLevel, plog, setCapnslogLevel } from '../../src/logger.js';

/** A destination that keeps each written line, parsed. */
function capture(): { lines: Record<string, unknown>[]; write(msg: string): void } {
  const lines: Record<string, unknown>[] = [];
  return { lines, write: (msg: string) => lines.push(JSON.parse(msg) as Record<string, unknown>) };
}

describe('createLogger', () => {
  it('writes level, ts (ISO 8601), msg and fields, without pid or hostname', () => {
    const out = capture();
    createLogger('info', out).info({ 'data-dir': 'default.etcd' }, 'starting');
    assert.equal(out.lines.length, 1);
    const line = out.lines[0] as Record<string, unknown>;
    assert.equal(line.level, 'info');
    assert.equal(line.msg, 'starting');
    assert.equal(line['data-dir'], 'default.etcd');
    assert.match(line.ts as string, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.deepEqual(Object.keys(line).sort(), ['data-dir', 'level', 'msg', 'ts']);
  });

  it('drops messages below the level', () => {
    const out = capture();
    const log = createLogger('warn', out);
    log.info('hidden');
    log.warn('shown');
    assert.deepEqual(out.lines.map((l) => l.msg), ['shown']);
  });

  it("maps etcd's dpanic, panic and fatal to pino's fatal", () => {
    for (const level of ['dpanic', 'panic', 'fatal']) {
      const out = capture();
      const log = createLogger(level, out);
      log.error('hidden');
      log.fatal('shown');
      assert.deepEqual(out.lines.map((l) => [l.level, l.msg]), [['fatal', 'shown']], level);
    }
  });

  it('accepts every etcd level and refuses others', () => {
    for (const level of LOG_LEVELS) createLogger(level, capture());
    assert.throws(() => createLogger('verbose', capture()), /unknown log level "verbose"/);
  });
});

describe('createLogger with capnslog (etcd 3.4\'s default --logger)', () => {
  /** A destination that keeps each written line as it is. */
  const text = (): { lines: string[]; write(msg: string): void } => {
    const lines: string[] = [];
    return { lines, write: (msg: string) => lines.push(msg) };
  };
  const STAMP = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} /;

  it("writes the call's capnslog line as PrettyFormatter does: local time to the microsecond, level letter, package, text", () => {
    const out = text();
    createLogger('info', out, 'capnslog').warn({ error: 'x', ...plog('etcdmain', 'E', "error verifying flags, x. See 'etcd --help'.") }, 'failed to verify flags');
    assert.equal(out.lines.length, 1);
    assert.match(out.lines[0]!, STAMP);
    assert.equal(out.lines[0]!.replace(STAMP, ''), "E | etcdmain: error verifying flags, x. See 'etcd --help'.\n");
  });

  it('formats a given time in local time', () => {
    const at = new Date(2024, 4, 1, 9, 5, 7).getTime() + 0.123456;
    assert.equal(formatCapnslog({ pkg: 'embed', level: 'N', text: 'hello\n' }, at), '2024-05-01 09:05:07.000123 N | embed: hello\n');
  });

  it("shows the lines at least as severe as --log-level's capnslog level (warn: C, E and W), by the line's own level", () => {
    const out = text();
    const log = createLogger('warn', out, 'capnslog');
    log.info(plog('embed', 'N', 'a notice'), 'hidden');
    log.info(plog('embed', 'I', 'an info'), 'hidden');
    log.info(plog('etcdmain', 'E', 'an error logged at zap info'), 'shown');
    log.warn(plog('auth', 'W', 'a warning'), 'shown');
    assert.deepEqual(out.lines.map((l) => l.replace(STAMP, '')), ['E | etcdmain: an error logged at zap info\n', 'W | auth: a warning\n']);
    const fatal = text();
    createLogger('fatal', fatal, 'capnslog').warn(plog('etcdmain', 'E', 'hidden'), 'x');
    assert.deepEqual(fatal.lines, []);
  });

  it("changes the level shown at run time as capnslog's SetGlobalLogLevel does (PUT /config/local/log), zap's not", () => {
    assert.deepEqual(['CRITICAL', 'C', '0', 'W', 'NOTICE', '3', 'D', 'TRACE', '5', 'info', 'X', ''].map(parseCapnslogLevel), [
      'CRITICAL', 'CRITICAL', 'ERROR', 'WARNING', 'NOTICE', 'INFO', 'DEBUG', 'TRACE', 'TRACE', undefined, undefined, undefined,
    ]);
    const out = text();
    const log = createLogger('warn', out, 'capnslog');
    log.info(plog('embed', 'I', 'before'), 'hidden');
    setCapnslogLevel(log, 'DEBUG');
    log.debug(plog('embed', 'D', 'a debug line'), 'shown');
    setCapnslogLevel(log, 'ERROR');
    log.warn(plog('auth', 'W', 'a warning'), 'hidden');
    assert.deepEqual(out.lines.map((l) => l.replace(STAMP, '')), ['D | embed: a debug line\n']);
    const zap = capture();
    const zapLog = createLogger('info', zap);
    setCapnslogLevel(zapLog, 'CRITICAL');
    zapLog.info('still shown');
    assert.equal(zap.lines.length, 1);
  });

  it('makes a line of the level, message and fields of a call without one', () => {
    const out = text();
    createLogger('info', out, 'capnslog').info({ n: 1, s: 'v', big: 5n, err: new Error('boom') }, 'something');
    assert.match(out.lines[0]!.replace(STAMP, ''), /^I \| etcdserver: something \(n=1, s=v, big=5n, err=boom\)\n$/);
  });

  it("leaves the capnslog line out of zap's JSON", () => {
    const out = capture();
    createLogger('info', out).warn({ error: 'x', ...plog('etcdmain', 'E', 'text') }, 'failed to verify flags');
    assert.deepEqual(out.lines, [{ level: 'warn', ts: out.lines[0]!.ts, error: 'x', msg: 'failed to verify flags' }]);
  });
});

describe('openLogOutputs (--log-outputs, as zap sinks)', () => {
  it('appends every line to each file, creating the file with mode 0666 less the umask', () => {
    const dir = mkdtempSync(join(tmpdir(), 'log-outputs-'));
    try {
      const a = join(dir, 'a.log');
      const b = join(dir, 'b.log');
      writeFileSync(a, 'kept\n');
      const log = createLogger('info', openLogOutputs([a, b]));
      log.info({ n: 1 }, 'one');
      log.warn('two');
      const lines = (file: string): string[] => readFileSync(file, 'utf8').trim().split('\n');
      assert.equal(lines(a)[0], 'kept');
      for (const file of [a, b]) {
        const written = lines(file).filter((l) => l !== 'kept').map((l) => JSON.parse(l) as Record<string, unknown>);
        assert.deepEqual(written.map((l) => [l.level, l.msg]), [['info', 'one'], ['warn', 'two']], file);
      }
      const umask = process.umask();
      assert.equal(statSync(b).mode & 0o777, 0o666 & ~umask);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses an output it cannot open, with zap's message and Go's error text", () => {
    const dir = mkdtempSync(join(tmpdir(), 'log-outputs-'));
    try {
      const missing = join(dir, 'no', 'etcd.log');
      const refused = (outputs: string[], message: string): void => {
        assert.throws(() => openLogOutputs(outputs), (err: unknown) => err instanceof LogOutputError && err.message === message);
      };
      refused([missing], `open sink "${missing}": open ${missing}: no such file or directory`);
      refused([dir], `open sink "${dir}": open ${dir}: is a directory`);
      if (!existsSync('/run/systemd/journal/socket')) {
        refused(['systemd/journal'], "can't find journal (dial unixgram /run/systemd/journal/socket: connect: no such file or directory)");
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
