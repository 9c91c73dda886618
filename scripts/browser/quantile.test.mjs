// The operations page's latency arithmetic (src/http/admin_page/app.js), under Node's test
// runner: quantiles of bucket deltas between two cumulative snapshots, as Prometheus'
// histogram_quantile computes them. The page's script runs here in a bare context with
// just enough of a browser for it to load; it hands back its two pure functions.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';

const source = readFileSync(
  fileURLToPath(new URL('../../src/http/admin_page/app.js', import.meta.url)), 'utf8');
const module = { exports: null };
const inert = { addEventListener() {} };
vm.runInNewContext(source, {
  module, document: inert, window: inert, setInterval() {}, setTimeout() {}, clearTimeout() {},
});
const { histogramQuantile, windowBuckets } = module.exports;

// Cumulative buckets from upper bounds and counts (null = +Inf), as the endpoint sends them.
const snapshot = (pairs) => ({ buckets: pairs.map(([le, count]) => ({ le, count })) });
const empty = snapshot([]);
const close = (actual, expected) => assert.ok(Math.abs(actual - expected) < 1e-12,
  `${actual} is not ${expected}`);

test('interpolates inside the bucket that holds the rank', () => {
  const b = windowBuckets(snapshot([[0.1, 10], [0.2, 30], [0.4, 40], [null, 40]]), empty);
  close(histogramQuantile(0.5, b), 0.15); // rank 20: half-way through (0.1, 0.2]
  close(histogramQuantile(0.99, b), 0.392); // rank 39.6: 9.6 of 10 through (0.2, 0.4]
});

test('the first bucket starts at zero', () => {
  const b = windowBuckets(snapshot([[0.1, 10], [0.2, 10], [null, 10]]), empty);
  close(histogramQuantile(0.5, b), 0.05);
});

test('a rank in the +Inf bucket answers the largest finite bound', () => {
  const b = windowBuckets(snapshot([[0.1, 10], [0.4, 10], [null, 20]]), empty);
  assert.equal(histogramQuantile(0.9, b), 0.4);
});

test('no observation, no quantile', () => {
  assert.equal(histogramQuantile(0.5, windowBuckets(snapshot([[0.1, 0], [null, 0]]), empty)), null);
  assert.equal(histogramQuantile(0.5, []), null);
  // Without the +Inf bucket the counts cannot be read as a histogram.
  assert.equal(histogramQuantile(0.5, windowBuckets(snapshot([[0.1, 5], [0.2, 9]]), empty)), null);
});

test('the window is the difference between two snapshots, bucket by bucket', () => {
  const now = snapshot([[null, 50], [0.2, 40], [0.1, 15]]); // any order
  const then = snapshot([[0.1, 5], [0.2, 10], [null, 10]]);
  assert.deepEqual(windowBuckets(now, then).map((x) => [x.le, x.count]),
    [[0.1, 10], [0.2, 30], [Infinity, 40]]);
  close(histogramQuantile(0.5, windowBuckets(now, then)), 0.15);
});

test('a node restart (counters lower than before) counts as nothing, never negative', () => {
  const now = snapshot([[0.1, 2], [0.2, 3], [null, 3]]);
  const then = snapshot([[0.1, 5], [0.2, 10], [null, 10]]);
  assert.deepEqual(windowBuckets(now, then).map((x) => x.count), [0, 0, 0]);
  assert.equal(histogramQuantile(0.5, windowBuckets(now, then)), null);
});

test('deltas are made monotone again before interpolating', () => {
  // A partial reset leaves (0.1] with more than (0.2] in the window: taken as equal.
  const now = snapshot([[0.1, 12], [0.2, 12], [null, 20]]);
  const then = snapshot([[0.1, 2], [0.2, 5], [null, 5]]);
  assert.deepEqual(windowBuckets(now, then).map((x) => x.count), [10, 10, 15]);
});
