/**
 * Byte comparisons for tests. assert.deepEqual on two Buffers that differ
 * prints every byte of both, one per line, and diffs the lines: a few
 * KiB take seconds, a 256 KiB block takes the machine's memory until the
 * kernel kills the test process (a failed comparison then reads as a
 * SIGKILL with no message). This one says where they first differ.
 */
import assert from 'node:assert/strict';

/** Fails unless `actual` holds exactly the bytes of `expected`, naming the first difference. */
export function assertSameBytes(actual: Uint8Array | undefined, expected: Uint8Array, what = 'bytes'): void {
  if (actual === undefined) assert.fail(`${what}: got nothing, expected ${expected.length} bytes`);
  if (Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength).equals(expected)) return;
  const n = Math.min(actual.length, expected.length);
  let at = 0;
  while (at < n && actual[at] === expected[at]) at++;
  const around = (b: Uint8Array): string => Buffer.from(b.subarray(at, at + 16)).toString('hex');
  assert.fail(at === n
    ? `${what}: ${actual.length} bytes, expected ${expected.length} (the first ${n} are the same)`
    : `${what}: differ first at byte ${at} of ${actual.length} (expected ${expected.length}): ${around(actual)} instead of ${around(expected)}`);
}
