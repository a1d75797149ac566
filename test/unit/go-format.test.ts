// Go's text forms of values in etcd's log lines (src/go-format.ts).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it, test } from 'node:test';

import { formatGoDuration, goPathError, humanizeBytes } from '../../src/go-format.js';

describe('formatGoDuration (Go time.Duration.String)', () => {
  it("writes Go's durationTests (time_test.go) that fit a double", () => {
    const cases: [string, number][] = [
      ['0s', 0], ['1ns', 0.000001], ['1.1µs', 0.0011], ['2.2ms', 2.2], ['3.3s', 3300], ['4m5s', 245_000], ['4m5.001s', 245_001],
      ['5h6m7.001s', 18_367_001], ['8m0.000000001s', 480_000.000001], ['1h0m0s', 3_600_000], ['-1.5s', -1500],
    ];
    for (const [text, ms] of cases) assert.equal(formatGoDuration(ms), text, String(ms));
  });
});

describe('humanizeBytes (go-humanize Bytes)', () => {
  it("writes go-humanize's SI sizes, Go's rounding of a half to even included", () => {
    const cases: [number, string][] = [
      [0, '0 B'], [9, '9 B'], [10, '10 B'], [999, '999 B'], [1000, '1.0 kB'], [1500, '1.5 kB'], [12_500, '12 kB'], [13_500, '14 kB'],
      [20_480, '20 kB'], [82_854_982, '83 MB'], [999_999, '1000 kB'],
    ];
    for (const [n, text] of cases) assert.equal(humanizeBytes(n), text, String(n));
  });
});

test('goPathError writes a failed file system call as Go\'s *os.PathError', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'go-path-error-'));
  try {
    const file = path.join(dir, 'f');
    fs.writeFileSync(file, '');
    const caught = (fn: () => void): NodeJS.ErrnoException => {
      try {
        fn();
      } catch (err) {
        return err as NodeJS.ErrnoException;
      }
      throw new Error('no error');
    };
    assert.equal(goPathError(caught(() => fs.mkdirSync(path.join(file, 'x')))), `mkdir ${path.join(file, 'x')}: not a directory`);
    assert.equal(goPathError(caught(() => fs.readFileSync(path.join(dir, 'missing')))), `open ${path.join(dir, 'missing')}: no such file or directory`);
    // A write by descriptor names no file unless the caller adds it.
    const err = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', syscall: 'write' });
    assert.equal(goPathError(err), 'write: no space left on device');
    assert.equal(goPathError(Object.assign(err, { path: '/d/wal/0.log' })), 'write /d/wal/0.log: no space left on device');
    // Node's description for an errno Go's table here lacks; a library's error as it is.
    assert.equal(goPathError(Object.assign(new Error('EDQUOT: disk quota exceeded, write'), { code: 'EDQUOT', syscall: 'write' })), 'write: disk quota exceeded');
    assert.equal(goPathError(new Error('Input/output error')), 'Input/output error');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
