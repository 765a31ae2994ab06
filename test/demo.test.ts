/** `npm run demo` works for a newcomer: it mounts a demo bucket, and Ctrl-C cleans everything up. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { access } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { isMountPoint } from '../app/worker/mount-point.js';
import { sh } from './helpers/processes.js';

const DEMO = fileURLToPath(new URL('./demo.js', import.meta.url));

test('npm run demo mounts a demo bucket, prints what to try, and Ctrl-C unmounts and stops the server', async () => {
  const child = spawn(process.execPath, [DEMO], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  try {
    const deadline = Date.now() + 60_000;
    while (!/Press Ctrl-C/.test(out)) {
      assert.ok(Date.now() < deadline, `demo did not get ready:\n${out}`);
      assert.equal(child.exitCode, null, `demo exited early:\n${out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const mountPoint = /mounted at (\S+)/.exec(out)?.[1];
    assert.ok(mountPoint, out);
    assert.ok(await isMountPoint(mountPoint));
    const ls = await sh(`ls ${mountPoint} ${mountPoint}/data && cat ${mountPoint}/README.txt`);
    assert.equal(ls.code, 0, ls.stderr);
    assert.match(ls.stdout, /README\.txt/);
    assert.match(ls.stdout, /large\.bin/);
    assert.match(ls.stdout, /Welcome to SOS Mount/);
    child.kill('SIGINT');
    assert.equal(await exited, 0, out);
    assert.match(out, /Done\./);
    await assert.rejects(access(mountPoint), 'the demo folder is removed');
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});
