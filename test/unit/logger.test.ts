// The server logger (src/logger.ts): JSON lines shaped like etcd's zap output.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { createLogger, LOG_LEVELS, LogOutputError, openLogOutputs } from '../../src/logger.js';

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
