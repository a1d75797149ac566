// The server logger (src/logger.ts): JSON lines shaped like etcd's zap output.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { createLogger, LOG_LEVELS } from '../../src/logger.js';

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
