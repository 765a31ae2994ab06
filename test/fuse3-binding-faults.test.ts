/**
 * The libfuse 3 binding answers the kernel on every path: a handler that
 * throws, rejects with something that is not an errno, answers too late or
 * twice, and a dispatch that throws inside the binding's own call all end
 * in an errno for the program, promptly, and the mount keeps serving. The
 * binding (C) owns each request: a second or late answer is refused there
 * with an error, never written into a finished request.
 *
 * Programs using a mount run as child processes: a process that makes
 * synchronous calls into a mount its own event loop serves deadlocks.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { constants } from 'node:os';
import { rm, writeFile } from 'node:fs/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import path from 'node:path';
import { errnoValue, FsError, toFsError } from '../app/fs/errno.js';
import type { DirStream, Stat } from '../app/fs/filesystem.js';
import { copyBuffersAsked, FUSE3_TUNING } from '../app/fs/fuse-adapter.js';
import {
  FUSE3_OPS, Fuse3Session, fuse3Binding, fuse3Unavailable,
  type Fuse3Handlers, type Fuse3Op, type Fuse3Options, type NativeDispatch, type NativeRequest,
} from '../app/fs/fuse3-session.js';
import { isMounted, waitUntil } from './helpers/faults-fixture.js';
import { fsOp, run, tempDir } from './helpers/processes.js';

const skip = process.platform !== 'linux' || fuse3Unavailable() !== undefined;
/** "Promptly": far above any real answer, far below a hang. */
const PROMPT_MS = 20_000;
const EIO = constants.errno.EIO;
const ENOSYS = constants.errno.ENOSYS;
const ENOENT = constants.errno.ENOENT;

function fileStat(size: number, mode = 0o100644): Stat {
  const now = new Date();
  return { mode, uid: 0, gid: 0, size, nlink: 1, mtime: now, atime: now, ctime: now, blocks: Math.ceil(size / 512), blksize: 4096 };
}

function statRow(s: Stat): Float64Array {
  return Float64Array.of(s.mode, s.uid, s.gid, s.size, s.nlink, s.atime.getTime(), s.mtime.getTime(), s.ctime.getTime(), s.blocks, s.blksize);
}

function md5(b: Uint8Array): string {
  return createHash('md5').update(b).digest('hex');
}

function body(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** One file-system call in a child process, with its result: 'OK' or the errno code. */
async function childOp(op: string, file: string): Promise<string> {
  return fsOp(op, file);
}

/** A child that reads a file whole and prints its md5 (or the errno code). */
async function childMd5(file: string): Promise<string> {
  const r = await run(process.execPath, ['-e', `
    try { console.log(require('crypto').createHash('md5').update(require('fs').readFileSync(process.argv[1])).digest('hex')); }
    catch (e) { console.log(e.code); }`, file], { timeoutMs: PROMPT_MS });
  return r.stdout.trim();
}

function unmountLazily(dir: string): Promise<void> {
  return new Promise((resolve) => execFile('fusermount3', ['-uz', dir], () => resolve()));
}

// ---------------------------------------------------------------------------
// Through Fuse3Session, with an in-memory file system whose files misbehave
// on purpose.

interface Recorded {
  timeouts: Array<[Fuse3Op, string, number]>;
  replyErrors: Array<[Fuse3Op, string, string]>;
  /** The Buffers read() was given, to see afterwards whether they were libfuse's (detached on answer) or copies. */
  readTargets: Buffer[];
  /** The targets given to reads of /late-read. */
  lateTargets: Buffer[];
  /** Late answers still to come: awaited before the test ends. */
  late: Array<Promise<unknown>>;
}

function memoryFs(rec: Recorded): { handlers: Fuse3Handlers; files: Map<string, Buffer> } {
  const files = new Map<string, Buffer>([['/ok.txt', Buffer.from('still served\n')]]);
  const writing = new Map<number, Buffer[]>();
  const fdPath = new Map<number, string>();
  let nextFd = 10;
  const special = new Set(['/throws', '/rejects-number', '/rejects-undefined', '/late-open', '/late-read']);
  const notFound = (p: string): FsError => new FsError('ENOENT', `${p}: no such file`, { rule: 'notFound' });
  const refused = (): Promise<never> => Promise.reject(new FsError('EPERM', 'refused'));
  const handlers: Fuse3Handlers = {
    getattr: async (p) => {
      if (p === '/') return fileStat(0, 0o40755);
      if (special.has(p)) return fileStat(64);
      const f = files.get(p);
      if (f === undefined) throw notFound(p);
      return fileStat(f.length);
    },
    listDir: (): DirStream => {
      const names = [...files.keys()].map((k) => k.slice(1));
      return { next: async () => ({ names, stats: names.map((n) => fileStat(files.get(`/${n}`)!.length)), done: true }), close: () => {} };
    },
    open: (p) => {
      switch (p) {
        case '/throws': throw new TypeError('a handler bug, thrown before any promise');
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
        case '/rejects-number': return Promise.reject(42);
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
        case '/rejects-undefined': return Promise.reject(undefined);
        case '/late-open': {
          const late = delay(1_500).then(() => nextFd++);
          rec.late.push(late);
          return late;
        }
        default: {
          if (!special.has(p) && !files.has(p)) return Promise.reject(notFound(p));
          const fd = nextFd++;
          fdPath.set(fd, p);
          return Promise.resolve(fd);
        }
      }
    },
    create: async (p) => {
      files.set(p, Buffer.alloc(0));
      const fd = nextFd++;
      fdPath.set(fd, p);
      writing.set(fd, []);
      return { fd, stat: fileStat(0) };
    },
    read: async (p, _fd, target, position) => {
      rec.readTargets.push(target);
      if (p === '/late-read') {
        rec.lateTargets.push(target);
        // Writes into the target long after the timeout answered EIO: the
        // binding must have detached it, or this would write into memory
        // libfuse has freed or reused.
        const late = delay(1_500).then(() => { target.fill(0x41); return target.length; });
        rec.late.push(late.catch((err: unknown) => err));
        return late;
      }
      const f = files.get(p) ?? Buffer.alloc(0);
      return f.copy(target, 0, Math.min(position, f.length), Math.min(position + target.length, f.length));
    },
    write: async (_p, fd, data, position) => {
      const parts = writing.get(fd);
      if (parts === undefined) throw new FsError('EBADF', 'not open for writing');
      if (position !== parts.reduce((n, b) => n + b.length, 0)) throw new FsError('EINVAL', 'out of order');
      parts.push(Buffer.from(data));
      return data.length;
    },
    flush: async (_p, fd) => {
      const parts = writing.get(fd);
      const p = fdPath.get(fd);
      if (parts !== undefined && p !== undefined) files.set(p, Buffer.concat(parts));
    },
    fsync: async () => {},
    release: async (_p, fd) => { writing.delete(fd); fdPath.delete(fd); },
    unlink: refused, mkdir: refused, rmdir: refused, rename: refused, link: refused, symlink: refused,
    setattr: refused, truncate: refused, mknod: refused,
    readlink: () => Promise.reject(new FsError('ENOSYS', 'no links')),
    statfs: async () => ({ bsize: 4096, frsize: 4096, blocks: 1 << 20, bfree: 1 << 20, bavail: 1 << 20, files: 1 << 20, ffree: 1 << 20, favail: 1 << 20, namemax: 255 }),
    xattr: () => Promise.reject(new FsError('ENOSYS', 'no xattrs')),
  };
  return { handlers, files };
}

async function withSession(opts: { timeouts?: Fuse3Options['timeouts']; copyBuffers?: boolean },
  fn: (mnt: string, rec: Recorded, files: Map<string, Buffer>) => Promise<void>): Promise<void> {
  const rec: Recorded = { timeouts: [], replyErrors: [], readTargets: [], lateTargets: [], late: [] };
  const { handlers, files } = memoryFs(rec);
  const mnt = await tempDir('fuse3-faults');
  const session = new Fuse3Session(mnt, handlers, {
    args: ['-o', 'fsname=fuse3-faults,subtype=sosmount-test'],
    ...FUSE3_TUNING,
    entryTimeoutSeconds: 0,
    attrTimeoutSeconds: 0,
    negativeTimeoutSeconds: 0,
    timeouts: opts.timeouts ?? { default: 60_000, flush: false, fsync: false, release: false },
    copyBuffers: opts.copyBuffers === true,
    errno: (_op, p, err) => -errnoValue(toFsError(err, p).errno),
    onTimeout: (op, p, ms) => { rec.timeouts.push([op, p, ms]); },
    onReplyError: (op, p, err) => { rec.replyErrors.push([op, p, err.message]); },
  });
  try {
    await session.mount();
    await fn(mnt, rec, files);
    await Promise.allSettled(rec.late);
  } finally {
    await session.unmount();
    await waitUntil('the mount to go', async () => !(await isMounted(mnt)), PROMPT_MS);
    await rm(mnt, { recursive: true, force: true });
  }
  assert.deepEqual(rec.replyErrors, [], 'no answer was refused other than late ones');
}

describe('the libfuse 3 binding answers every request (through Fuse3Session)', { skip }, () => {
  test('a handler that throws synchronously: the program gets EIO and the next call is served', async () => {
    await withSession({}, async (mnt) => {
      assert.equal(await childOp('read', path.join(mnt, 'throws')), 'EIO');
      assert.equal(await childMd5(path.join(mnt, 'ok.txt')), md5(Buffer.from('still served\n')));
    });
  });

  test('a handler that rejects with a number or with undefined (no errno): EIO, and the mount goes on', async () => {
    await withSession({}, async (mnt) => {
      assert.equal(await childOp('read', path.join(mnt, 'rejects-number')), 'EIO');
      assert.equal(await childOp('read', path.join(mnt, 'rejects-undefined')), 'EIO');
      assert.equal(await childOp('stat', path.join(mnt, 'absent')), 'ENOENT');
      assert.equal(await childOp('read', path.join(mnt, 'ok.txt')), 'OK');
    });
  });

  test('an open answered after its timeout: the program gets EIO at the timeout, the late answer is dropped quietly, and the next open works', async () => {
    await withSession({ timeouts: { default: 60_000, open: 300, flush: false, fsync: false, release: false } }, async (mnt, rec) => {
      assert.equal(await childOp('read', path.join(mnt, 'late-open')), 'EIO');
      assert.deepEqual(rec.timeouts, [['open', '/late-open', 300]]);
      await Promise.all(rec.late);
      assert.equal(await childMd5(path.join(mnt, 'ok.txt')), md5(Buffer.from('still served\n')));
    });
  });

  test('a read answered after its timeout: EIO, and the handler\'s late write into the kernel\'s buffer reaches nothing (it was detached)', async () => {
    await withSession({ timeouts: { default: 60_000, read: 300, flush: false, fsync: false, release: false } }, async (mnt, rec) => {
      assert.equal(await childOp('read', path.join(mnt, 'late-read')), 'EIO');
      assert.ok(rec.timeouts.some(([op, p]) => op === 'read' && p === '/late-read'), JSON.stringify(rec.timeouts));
      const late = rec.lateTargets[0]!;
      const [outcome] = await Promise.all(rec.late);
      assert.equal(late.length, 0, 'the Buffer over libfuse\'s memory was detached at the timeout');
      assert.match(String(outcome), /detached/, 'the late fill found no memory to write into');
      // Reads of other files still get their own bytes, not the late 'A's.
      assert.equal(await childMd5(path.join(mnt, 'ok.txt')), md5(Buffer.from('still served\n')));
    });
  });

  test('reads hand the handler libfuse\'s own memory (detached once answered) unless copies are asked for', async () => {
    await withSession({}, async (mnt, rec) => {
      assert.equal(await childOp('read', path.join(mnt, 'ok.txt')), 'OK');
      assert.ok(rec.readTargets.length > 0);
      assert.ok(rec.readTargets.every((b) => b.length === 0), 'every target was detached when answered');
    });
  });
});

describe('SOSMOUNT_FUSE_COPY_BUFFERS: reads and writes through copies, as under Electron', { skip }, () => {
  test('the switch is read from the environment; another value is an error', () => {
    assert.equal(copyBuffersAsked({}), false);
    assert.equal(copyBuffersAsked({ SOSMOUNT_FUSE_COPY_BUFFERS: '0' }), false);
    assert.equal(copyBuffersAsked({ SOSMOUNT_FUSE_COPY_BUFFERS: '1' }), true);
    assert.throws(() => copyBuffersAsked({ SOSMOUNT_FUSE_COPY_BUFFERS: 'yes' }), /SOSMOUNT_FUSE_COPY_BUFFERS must be 1 or 0/);
  });

  test('a mount with copies writes a 5 MiB file and reads it back whole, and its handlers never see libfuse\'s memory', async () => {
    await withSession({ copyBuffers: true }, async (mnt, rec, files) => {
      const data = body(5 * 1024 * 1024 + 123, 7);
      const srcDir = await tempDir('fuse3-copy-src');
      try {
        const src = path.join(srcDir, 'src.bin');
        await writeFile(src, data);
        const cp = await run('cp', [src, path.join(mnt, 'copied.bin')], { timeoutMs: PROMPT_MS });
        assert.equal(cp.code, 0, cp.stderr);
        assert.equal(md5(files.get('/copied.bin') ?? Buffer.alloc(0)), md5(data), 'the handler got every byte written');
        assert.equal(await childMd5(path.join(mnt, 'copied.bin')), md5(data), 'and the program reads them back');
        assert.ok(rec.readTargets.length > 0);
        assert.ok(rec.readTargets.every((b) => b.length > 0), 'read targets were the handler\'s own copies (not detached)');
      } finally {
        await rm(srcDir, { recursive: true, force: true });
      }
    });
  });
});

describe('SOSMOUNT_FUSE_COPY_BUFFERS: a copy that timed out is never used again', { skip }, () => {
  test('a read answered after its timeout writes its late bytes into its own copy only: reads around it return their files', async () => {
    await withSession({ copyBuffers: true, timeouts: { default: 60_000, read: 300, flush: false, fsync: false, release: false } }, async (mnt, rec, files) => {
      const data = body(64, 3);
      files.set('/same-size.bin', data);
      const late = childOp('read', path.join(mnt, 'late-read'));
      // While the late handler waits, and after it wrote its 'A's.
      for (let i = 0; i < 6; i++) {
        assert.equal(await childMd5(path.join(mnt, 'same-size.bin')), md5(data));
        await delay(300);
      }
      assert.equal(await late, 'EIO');
      const outcomes = await Promise.all(rec.late);
      assert.ok(outcomes.every((n) => typeof n === 'number' && n > 0), `the late handlers wrote into their copies: ${String(outcomes)}`);
      assert.ok(rec.lateTargets.every((b) => b.every((x) => x === 0x41)));
      const others = rec.readTargets.filter((b) => !rec.lateTargets.includes(b));
      assert.ok(others.length > 0 && others.every((b) => !rec.lateTargets.some((l) => l.buffer === b.buffer)), `no later read was given a timed-out copy: ${others.length} others, ${others.map((b) => b.length).join(',')}; late ${rec.lateTargets.map((b) => b.length).join(',')}`);
      assert.equal(await childMd5(path.join(mnt, 'same-size.bin')), md5(data));
    });
  });
});

// ---------------------------------------------------------------------------
// Through the binding itself, to answer in ways Fuse3Session never does
// (twice; after the timeout; a throwing dispatch; a result that is no number).

const OP = Object.fromEntries(FUSE3_OPS.map((op, i) => [op, i])) as Record<Fuse3Op, number>;

type Handler = (op: Fuse3Op, req: NativeRequest, path: string) => void;

async function withNativeMount(timeoutsMs: Partial<Record<Fuse3Op, number>>, handle: Handler,
  fn: (mnt: string, timedOut: Array<[number, string, number]>) => Promise<void>): Promise<void> {
  const native = fuse3Binding();
  const mnt = await tempDir('fuse3-native');
  const timedOut: Array<[number, string, number]> = [];
  let ready!: () => void;
  let ended!: () => void;
  const readyP = new Promise<void>((resolve) => { ready = resolve; });
  const endedP = new Promise<void>((resolve) => { ended = resolve; });
  const dispatch: NativeDispatch = (op, req, p, _p2, n0, n1) => {
    if (op === native.OP_READY) return ready();
    if (op === native.OP_ENDED) return ended();
    if (op === native.OP_TIMED_OUT) { timedOut.push([n0, p ?? '', n1]); return; }
    handle(FUSE3_OPS[op]!, req, p ?? '');
  };
  native.mount(mnt, ['-o', 'fsname=fuse3-native,subtype=sosmount-test'], {
    maxWrite: 128 * 1024, maxReadahead: 128 * 1024, maxBackground: 16, congestionThreshold: 12,
    maxThreads: 16, idleThreads: 4, entryTimeout: 0, attrTimeout: 0, negativeTimeout: 0,
    timeoutsMs: FUSE3_OPS.map((op) => timeoutsMs[op] ?? 60_000), copyBuffers: false,
  }, dispatch);
  try {
    await readyP;
    await fn(mnt, timedOut);
  } finally {
    await unmountLazily(mnt);
    await endedP;
    await rm(mnt, { recursive: true, force: true });
  }
}

/** Answers getattr of the root and of /ok; everything else is not there. */
function basics(native: ReturnType<typeof fuse3Binding>, op: Fuse3Op, req: NativeRequest, p: string): void {
  if (op !== 'getattr') return native.reply(req, -ENOSYS);
  if (p === '/') return native.reply(req, 0, statRow(fileStat(0, 0o40755)));
  if (p === '/ok') return native.reply(req, 0, statRow(fileStat(5)));
  native.reply(req, -ENOENT);
}

function codeOf(fn: () => void): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? (err as Error).name;
  }
}

describe('the libfuse 3 binding owns each request (driven directly)', { skip }, () => {
  test('a second answer to one request is refused with ERR_FUSE_REQUEST_ANSWERED; the first stands', async () => {
    const native = fuse3Binding();
    const second: Array<string | undefined> = [];
    await withNativeMount({}, (op, req, p) => {
      if (op === 'getattr' && p === '/twice') {
        native.reply(req, 0, statRow(fileStat(1234)));
        second.push(codeOf(() => native.reply(req, -EIO)));
        second.push(codeOf(() => native.reply(req, 0, statRow(fileStat(1)))));
        return;
      }
      basics(native, op, req, p);
    }, async (mnt) => {
      const r = await run('stat', ['-c', '%s', path.join(mnt, 'twice')], { timeoutMs: PROMPT_MS });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), '1234', 'the first answer is the one the program got');
      assert.ok(second.length >= 2);
      assert.ok(second.every((c) => c === 'ERR_FUSE_REQUEST_ANSWERED'), JSON.stringify(second));
      assert.equal(await childOp('stat', path.join(mnt, 'ok')), 'OK');
    });
  });

  test('an answer after the timeout is refused with ERR_FUSE_REQUEST_TIMED_OUT; the program got EIO at the timeout', async () => {
    const native = fuse3Binding();
    const lateReplies: Array<Promise<string | undefined>> = [];
    await withNativeMount({ getattr: 300 }, (op, req, p) => {
      if (op === 'getattr' && p === '/late') {
        lateReplies.push(delay(1_000).then(() => codeOf(() => native.reply(req, 0, statRow(fileStat(1))))));
        return;
      }
      basics(native, op, req, p);
    }, async (mnt, timedOut) => {
      assert.equal(await childOp('stat', path.join(mnt, 'late')), 'EIO');
      assert.deepEqual(timedOut, [[OP.getattr, '/late', 300]], 'JavaScript is told which request timed out');
      assert.deepEqual(await Promise.all(lateReplies), ['ERR_FUSE_REQUEST_TIMED_OUT']);
      assert.equal(await childOp('stat', path.join(mnt, 'ok')), 'OK');
    });
  });

  test('a dispatch that throws inside the binding\'s call: EIO for that request, the process stays up, the next request is served', async () => {
    const native = fuse3Binding();
    let answeredThenThrew = 0;
    await withNativeMount({}, (op, req, p) => {
      if (op === 'getattr' && p === '/dispatch-throws') throw new Error('dispatch bug');
      if (op === 'getattr' && p === '/answers-then-throws') {
        native.reply(req, 0, statRow(fileStat(77)));
        answeredThenThrew++;
        throw new Error('dispatch bug after its answer');
      }
      basics(native, op, req, p);
    }, async (mnt) => {
      assert.equal(await childOp('stat', path.join(mnt, 'dispatch-throws')), 'EIO');
      const r = await run('stat', ['-c', '%s', path.join(mnt, 'answers-then-throws')], { timeoutMs: PROMPT_MS });
      assert.equal(r.stdout.trim(), '77', 'a request answered before the throw keeps its answer');
      assert.ok(answeredThenThrew > 0);
      assert.equal(await childOp('stat', path.join(mnt, 'ok')), 'OK');
    });
  });

  test('a request JavaScript drops without answering is answered EIO once it is collected', async () => {
    const native = fuse3Binding();
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    await withNativeMount({}, (op, req, p) => {
      if (op === 'getattr' && p === '/dropped') return; // nobody keeps req
      basics(native, op, req, p);
    }, async (mnt) => {
      let outcome: string | undefined;
      const child = childOp('stat', path.join(mnt, 'dropped')).then((r) => { outcome = r; });
      await waitUntil('the dropped request to be answered', () => { gc(); return outcome !== undefined; }, PROMPT_MS, 100);
      await child;
      assert.equal(outcome, 'EIO');
      assert.equal(await childOp('stat', path.join(mnt, 'ok')), 'OK');
    });
  });

  test('an answer whose result is not a number answers EIO and throws a TypeError; a value that is no request is refused', async () => {
    const native = fuse3Binding();
    const thrown: Array<string | undefined> = [];
    await withNativeMount({}, (op, req, p) => {
      if (op === 'getattr' && p === '/bad-result') {
        thrown.push(codeOf(() => native.reply(req, 'zero' as unknown as number)));
        thrown.push(codeOf(() => native.reply(req, 0)));
        return;
      }
      basics(native, op, req, p);
    }, async (mnt) => {
      assert.equal(await childOp('stat', path.join(mnt, 'bad-result')), 'EIO');
      assert.deepEqual(thrown, ['TypeError', 'ERR_FUSE_REQUEST_ANSWERED']);
      assert.equal(codeOf(() => native.reply({} as NativeRequest, 0)), 'TypeError');
      assert.equal(await childOp('stat', path.join(mnt, 'ok')), 'OK');
    });
  });
});
