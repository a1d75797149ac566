import assert from 'node:assert/strict';
import { mock, test } from 'node:test';
import { pino } from 'pino';
import { parseRetention, startAutoCompactor } from '../../src/server/auto-compactor.js';

const log = pino({ level: 'silent' });

test('retention parsing follows etcd: bare numbers are hours (periodic) or revisions; a duration in revision mode counts its nanoseconds; no mode, no compactor', () => {
  assert.equal(parseRetention('periodic', '1'), 3_600_000);
  assert.equal(parseRetention('periodic', '30m'), 1_800_000);
  assert.equal(parseRetention('revision', '1000'), 1000);
  assert.equal(parseRetention('periodic', '0'), 0);
  // etcd 3.4 (measured): `--auto-compaction-mode revision --auto-compaction-retention 1h` starts.
  assert.equal(parseRetention('revision', '1h'), 3.6e12);
  assert.equal(parseRetention('', '1'), 0);
  assert.equal(parseRetention('', '5m'), 0);
  assert.throws(() => parseRetention('revision', '5x'));
  // Go's strconv.Atoi takes a leading '+'; a negative count is read as a duration, which needs a unit.
  assert.equal(parseRetention('periodic', '+5'), 5 * 3_600_000);
  assert.equal(parseRetention('revision', '+5'), 5);
  assert.throws(() => parseRetention('periodic', '-5'), /time: missing unit in duration "-5"/);
  assert.throws(() => parseRetention('periodic', '99999999999999999999'), /time: invalid duration "99999999999999999999"/);
});

test('revision mode compacts at current - retention every 5 minutes, not twice at the same revision', async () => {
  mock.timers.enable({ apis: ['setTimeout', 'Date'] });
  try {
    let rev = 10;
    const compacted: number[] = [];
    const c = startAutoCompactor('revision', '3', { rev: () => rev, compact: async (r) => compacted.push(r) }, log);
    assert.ok(c);
    mock.timers.tick(5 * 60 * 1000);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(compacted, [7]);
    mock.timers.tick(5 * 60 * 1000);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(compacted, [7], 'same revision is not compacted again');
    rev = 20;
    mock.timers.tick(5 * 60 * 1000);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(compacted, [7, 17]);
    c.stop();
  } finally {
    mock.timers.reset();
  }
});

test('periodic mode compacts at the revision of one retention period ago', async () => {
  mock.timers.enable({ apis: ['setTimeout', 'Date'] });
  try {
    let rev = 1;
    const compacted: number[] = [];
    const c = startAutoCompactor('periodic', '10m', { rev: () => rev, compact: async (r) => compacted.push(r) }, log);
    assert.ok(c);
    // Sample every minute (retention / 10); the revision grows by 100 each minute.
    for (let minute = 1; minute <= 10; minute++) {
      rev += 100;
      mock.timers.tick(60 * 1000);
      await new Promise((r) => setImmediate(r));
    }
    assert.deepEqual(compacted, [1], 'after 10 minutes: the revision sampled at the start');
    rev += 100;
    mock.timers.tick(60 * 1000);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(compacted, [1], 'nothing until the next compact interval');
    c.stop();
  } finally {
    mock.timers.reset();
  }
});

test('retention 0 starts nothing', () => {
  assert.equal(startAutoCompactor('periodic', '0', { rev: () => 1, compact: async () => {} }, log), undefined);
});
