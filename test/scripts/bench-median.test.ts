// The bench's median of rounds (scripts/bench-median.ts): the middle run for an odd count; for an
// even count the mean of the two middle wall times with the other figures of the slower of them
// (it used to be the faster middle run); the range is always that of all the runs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { medianRun } from '../../scripts/bench-median.js';

const run = (wall: number, cpu: number) => ({ wall, cpu });

test('medianRun: odd counts give the middle run, even counts the mean of the two middle wall times', () => {
  assert.deepEqual(medianRun([run(3, 30)]), { wall: 3, cpu: 30, min: 3, max: 3 });
  assert.deepEqual(medianRun([run(5, 50), run(1, 10), run(3, 30)]), { wall: 3, cpu: 30, min: 1, max: 5 });
  // --repeat 2: not the faster run (1 s) but 1.5 s; CPU from a real run, the slower middle one
  assert.deepEqual(medianRun([run(2, 21), run(1, 10)]), { wall: 1.5, cpu: 21, min: 1, max: 2 });
  // --repeat 4, in round order (unsorted)
  assert.deepEqual(medianRun([run(9, 90), run(4, 40), run(1, 10), run(6, 60)]), { wall: 5, cpu: 60, min: 1, max: 9 });
  // equal middle times: that time
  assert.deepEqual(medianRun([run(2, 20), run(2, 22), run(1, 10), run(7, 70)]).wall, 2);
  assert.throws(() => medianRun([]), /no runs/);
});

test('medianRun: the caller\'s array is left in its order', () => {
  const rounds = [run(3, 30), run(1, 10), run(2, 20), run(4, 40)];
  medianRun(rounds);
  assert.deepEqual(rounds.map((r) => r.wall), [3, 1, 2, 4]);
});
