/**
 * `npm run demo`: SOS Mount without an account. Starts the local S3 server
 * with a demo bucket, mounts it with `sosmount --foreground`, prints the
 * folder and what to try; Ctrl-C unmounts and stops the server.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { startS3Server } from './helpers/s3-server.js';
import { CLI } from './helpers/processes.js';
import { isMountPoint } from '../app/worker/mount-point.js';

const BUCKET = 'demo';

const SEED: Record<string, string | Buffer> = {
  'README.txt': 'Welcome to SOS Mount. This folder is the S3 bucket "demo" on a local server.\n',
  'photos/2026/lake.txt': 'a photo would be here\n',
  'photos/2026/mountain.txt': 'another photo\n',
  'data/numbers.csv': Array.from({ length: 1000 }, (_, i) => `${i},${i * i}`).join('\n') + '\n',
  'data/large.bin': randomBytes(32 * 1024 * 1024),
};

async function main(): Promise<void> {
  const server = await startS3Server({ buckets: [BUCKET] });
  const s3 = server.client();
  await Promise.all(Object.entries(SEED).map(([Key, Body]) => s3.send(new PutObjectCommand({ Bucket: BUCKET, Key, Body }))));
  const mountPoint = await mkdtemp(path.join(os.tmpdir(), 'sos-mount-demo-'));
  const child = spawn(process.execPath, [
    CLI, '--foreground', '--endpoint-url', server.endpoint, '--force-path-style', '--allow-delete', '--allow-overwrite',
    '--log-directory', path.join(mountPoint + '-logs'), BUCKET, mountPoint,
  ], {
    stdio: ['ignore', 'inherit', 'pipe'],
    env: { ...process.env, AWS_ACCESS_KEY_ID: server.credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: server.credentials.secretAccessKey },
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });

  let stopping = false;
  const stop = async (code: number): Promise<void> => {
    if (stopping) return;
    stopping = true;
    process.stdout.write('\nUnmounting and stopping the local S3 server...\n');
    if (child.exitCode === null) {
      child.kill('SIGINT');
      await new Promise((r) => child.once('exit', r));
    }
    await server.stop();
    await rm(mountPoint, { recursive: true, force: true }).catch(() => {});
    process.stdout.write('Done.\n');
    process.exit(code);
  };
  process.on('SIGINT', () => void stop(0));
  process.on('SIGTERM', () => void stop(0));
  child.on('exit', (code) => {
    if (!stopping) {
      process.stderr.write(`The mount ended unexpectedly (exit ${code}).\n${stderr}`);
      void stop(1);
    }
  });

  const deadline = Date.now() + 30_000;
  while (!(await isMountPoint(mountPoint))) {
    if (Date.now() > deadline || child.exitCode !== null) {
      process.stderr.write(`The demo bucket could not be mounted.\n${stderr}`);
      await stop(1);
      return;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  process.stdout.write([
    '',
    `The demo bucket is mounted at ${mountPoint}`,
    `(a local S3 server on ${server.endpoint}, bucket "${BUCKET}")`,
    '',
    'Try, in another terminal:',
    `  ls -l ${mountPoint}`,
    `  cat ${mountPoint}/README.txt`,
    `  md5sum ${mountPoint}/data/large.bin`,
    `  cp /etc/hostname ${mountPoint}/hello.txt && ls -l ${mountPoint}`,
    `  rm ${mountPoint}/hello.txt            # allowed here: the demo mounts with --allow-delete`,
    `  mv ${mountPoint}/README.txt ${mountPoint}/x   # refused: S3 has no rename`,
    '',
    'Press Ctrl-C to unmount and stop the server.',
    '',
  ].join('\n'));
}

void main();
