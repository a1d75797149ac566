import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GC_FLAGS, gcFlags } from '../../src/cli/gc.js';

test('the executable sets every GC flag, except those node was started with (dashes or underscores)', () => {
  assert.deepEqual(gcFlags([]), [...GC_FLAGS]);
  assert.deepEqual(gcFlags(['--trace-gc', '--max-semi-space-size=16']), [...GC_FLAGS]);
  assert.deepEqual(gcFlags(['--incremental-marking-soft-trigger=50']), ['--incremental-marking-hard-trigger=95']);
  assert.deepEqual(gcFlags(['--incremental_marking_hard_trigger=99', '--incremental-marking-soft-trigger']), []);
});
