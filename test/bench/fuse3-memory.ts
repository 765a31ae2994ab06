/**
 * The libfuse 3 binding alone: `dd` reads a file that Fuse3Session serves
 * from memory, with Buffers over libfuse's memory and with copies (as in
 * the tray's workers under Electron), alternately, so the two are measured
 * under the same load. No S3, no prefetcher: what is left is the binding's
 * own cost per byte, which the network hides in `npm run bench`.
 *
 * Usage: node dist/test/bench/fuse3-memory.js [--gib N] [--rounds N]
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { DirStream, Stat } from '../../app/fs/filesystem.js';
import { FUSE_TUNING } from '../../app/fs/fuse-adapter.js';
import { Fuse3Session, type Fuse3Handlers } from '../../app/fs/fuse3-session.js';

const MiB = 1024 * 1024;

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  const v = i >= 0 ? Number(process.argv[i + 1]) : fallback;
  if (!(v > 0)) throw new Error(`${name} must be a positive number`);
  return v;
}

function stat(size: number, mode: number): Stat {
  const now = new Date();
  return { mode, uid: 0, gid: 0, size, nlink: 1, mtime: now, atime: now, ctime: now, blocks: Math.ceil(size / 512), blksize: 4096 };
}

function handlers(size: number): Fuse3Handlers {
  const chunk = Buffer.alloc(MiB, 0x5a);
  const refused = (): Promise<never> => Promise.reject(new Error('read-only bench file system'));
  return {
    getattr: async (p) => {
      if (p === '/') return stat(0, 0o40755);
      if (p === '/big') return stat(size, 0o100644);
      throw new Error('ENOENT');
    },
    listDir: (): DirStream => ({ next: async () => ({ names: ['big'], stats: [stat(size, 0o100644)], done: true }), close: () => {} }),
    open: async () => 1,
    create: refused,
    read: async (_p, _fd, target, position) => {
      const n = Math.max(0, Math.min(target.length, size - position));
      for (let o = 0; o < n; o += chunk.length) chunk.copy(target, o, 0, Math.min(chunk.length, n - o));
      return n;
    },
    write: refused, flush: async () => {}, fsync: async () => {}, release: async () => {},
    unlink: refused, mkdir: refused, rmdir: refused, rename: refused, link: refused, symlink: refused,
    setattr: refused, truncate: refused, mknod: refused, readlink: refused, xattr: refused,
    statfs: async () => ({ bsize: 4096, frsize: 4096, blocks: 1, bfree: 0, bavail: 0, files: 1, ffree: 0, favail: 0, namemax: 255 }),
  };
}

async function once(size: number, copyBuffers: boolean): Promise<{ mibPerSecond: number; cpuSeconds: number }> {
  const mnt = await mkdtemp(path.join(os.tmpdir(), 'sosmount-fuse3-memory-'));
  const session = new Fuse3Session(mnt, handlers(size), {
    args: ['-o', 'fsname=fuse3-memory,subtype=sosmount-bench'],
    maxWriteBytes: FUSE_TUNING.maxWriteBytes, maxReadaheadBytes: FUSE_TUNING.maxReadaheadBytes,
    maxBackground: FUSE_TUNING.maxBackground, congestionThreshold: FUSE_TUNING.congestionThreshold,
    maxThreads: FUSE_TUNING.maxThreads, idleThreads: FUSE_TUNING.idleThreads,
    entryTimeoutSeconds: 1, attrTimeoutSeconds: 1, negativeTimeoutSeconds: 0,
    timeouts: { default: 120_000, flush: false, fsync: false, release: false },
    copyBuffers,
    errno: () => -5,
    onTimeout: (op, p) => { process.stderr.write(`timed out: ${op} ${p}\n`); },
  });
  try {
    await session.mount();
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    await new Promise<void>((resolve, reject) => {
      execFile('dd', [`if=${path.join(mnt, 'big')}`, 'of=/dev/null', 'bs=1M'], (err) => (err ? reject(err) : resolve()));
    });
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpu = process.cpuUsage(cpu0);
    return { mibPerSecond: size / MiB / seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
  } finally {
    await session.unmount();
    await rm(mnt, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const size = arg('--gib', 2) * 1024 * MiB;
  const rounds = arg('--rounds', 3);
  const results: Record<'libfuse memory' | 'copies', number[]> = { 'libfuse memory': [], copies: [] };
  for (let r = 1; r <= rounds; r++) {
    for (const copyBuffers of [false, true]) {
      const m = await once(size, copyBuffers);
      const name = copyBuffers ? 'copies' : 'libfuse memory';
      results[name].push(m.mibPerSecond);
      console.log(`round ${r}, ${name}: ${m.mibPerSecond.toFixed(0)} MiB/s, serving process CPU ${m.cpuSeconds.toFixed(2)} s`);
    }
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const a = median(results['libfuse memory']);
  const b = median(results.copies);
  console.log(`median: libfuse memory ${a.toFixed(0)} MiB/s, copies ${b.toFixed(0)} MiB/s, copies / libfuse memory ${(b / a).toFixed(2)}×`);
}

await main();
