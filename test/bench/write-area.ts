/**
 * Where the bench's S3 server keeps what the write workloads store: the
 * bucket's `w/` folder, on a tmpfs mounted for the bench's lifetime.
 *
 * Why: the server stores each object as three files in a folder per key
 * part, and every run of a write workload stores and then deletes hundreds
 * of them. On a root file system of ext4 without a journal (these
 * machines'), the inode allocator skips every inode freed in the last
 * minutes, checking each one, so the server's creates grew slower run
 * after run: in a `cp -r` of 500 files they took a quarter of the
 * machine's two cores, and the server, not the contender, set the pace.
 * A remote S3 endpoint spends none of the client machine's CPU; a tmpfs
 * brings the server closer to that. The contenders' own files (our staging
 * folder, rclone's and s3fs's caches) stay on the disk, as on a user's.
 *
 * Mounting needs root (the bench needs it for FUSE anyway); without it, or
 * with `--server-writes-on-disk`, the objects stay on disk and the report
 * says so.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { mountOf } from './cleanup.js';

export interface WriteArea {
  /** 'tmpfs', or why the writes stay on the disk. */
  readonly where: string;
  /** Detaches the tmpfs (what it holds is gone with it). */
  release(): void;
}

export function prepareWriteArea(dir: string, wanted: boolean): WriteArea {
  fs.mkdirSync(dir, { recursive: true });
  const onDisk = (why: string): WriteArea => ({ where: `disk (${why})`, release: () => undefined });
  if (!wanted) return onDisk('--server-writes-on-disk');
  // A bench killed before its teardown left its tmpfs: reuse it.
  if (mountOf(dir)?.fsType !== 'tmpfs') {
    // What an earlier run left on disk under it would be hidden, not removed.
    for (const name of fs.readdirSync(dir)) fs.rmSync(`${dir}/${name}`, { recursive: true, force: true });
    const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'mode=0755', 'sosmount-bench-writes', dir], { encoding: 'utf8', timeout: 10_000 });
    if (r.status !== 0 || mountOf(dir)?.fsType !== 'tmpfs') return onDisk(`mount -t tmpfs failed: ${(r.stderr || r.error?.message || '').trim() || `exit ${r.status}`}`);
  }
  return {
    where: 'tmpfs',
    release: () => {
      if (mountOf(dir)?.fsType === 'tmpfs') spawnSync('umount', ['-l', dir], { stdio: 'ignore', timeout: 10_000 });
    },
  };
}
