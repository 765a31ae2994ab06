/**
 * One file-system call, made in its own process (tests must not call into a
 * mount synchronously from the process that serves it). Prints OK or the
 * errno code, so a test can assert the exact errno of each semantics row.
 * Usage: node fs-op.js OP PATH [ARG...]
 *    or: node fs-op.js batch JSON   (JSON: [[OP, PATH, ARG...], ...]; one
 *        result line per call, in order: many calls for one process start)
 */
import fs from 'node:fs';

class UnknownOp extends Error {}

function code(fn: () => unknown): string {
  try {
    fn();
    return 'OK';
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? String(err);
  }
}

function runOp(op: string | undefined, target: string | undefined, arg: string | undefined, arg2: string | undefined): string {
  const need = (v: string | undefined, name: string): string => {
    if (v === undefined) throw new Error(`fs-op ${op}: missing ${name}`);
    return v;
  };

  const p = need(target, 'PATH');
  let out: string;
  switch (op) {
    case 'write': out = code(() => fs.writeFileSync(p, arg ?? 'data')); break;
    case 'read': out = code(() => fs.readFileSync(p)); break;
    case 'unlink': out = code(() => fs.unlinkSync(p)); break;
    case 'mkdir': out = code(() => fs.mkdirSync(p)); break;
    case 'rmdir': out = code(() => fs.rmdirSync(p)); break;
    case 'rename': out = code(() => fs.renameSync(p, need(arg, 'DEST'))); break;
    case 'symlink': out = code(() => fs.symlinkSync(need(arg, 'TARGET'), p)); break;
    case 'link': out = code(() => fs.linkSync(p, need(arg, 'DEST'))); break;
    case 'chmod': out = code(() => fs.chmodSync(p, 0o600)); break;
    case 'chown': out = code(() => fs.chownSync(p, 1234, 1234)); break;
    case 'utimes': out = code(() => fs.utimesSync(p, new Date(0), new Date(0))); break;
    case 'truncate': out = code(() => fs.truncateSync(p, Number(arg ?? '0'))); break;
    case 'stat': out = code(() => fs.statSync(p)); break;
    case 'readdir': out = code(() => fs.readdirSync(p)); break;
    case 'open-existing-write': out = code(() => fs.closeSync(fs.openSync(p, fs.constants.O_WRONLY))); break;
    case 'open-trunc-write': out = code(() => { const fd = fs.openSync(p, fs.constants.O_WRONLY | fs.constants.O_TRUNC); fs.writeSync(fd, arg ?? 'new'); fs.closeSync(fd); }); break;
    case 'open-sync-write': out = code(() => fs.closeSync(fs.openSync(p, fs.constants.O_WRONLY | fs.constants.O_TRUNC | fs.constants.O_SYNC))); break;
    case 'open-dsync-write': out = code(() => fs.closeSync(fs.openSync(p, fs.constants.O_WRONLY | fs.constants.O_TRUNC | fs.constants.O_DSYNC))); break;
    // A new file opened with O_SYNC / O_DSYNC (O_CREAT, so the kernel sends FUSE create, not open).
    case 'create-sync':
    case 'create-dsync': {
      const sync = op === 'create-sync' ? fs.constants.O_SYNC : fs.constants.O_DSYNC;
      out = code(() => { const fd = fs.openSync(p, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_TRUNC | sync); fs.writeSync(fd, arg ?? 'data'); fs.closeSync(fd); });
      break;
    }
    case 'create-excl': out = code(() => fs.closeSync(fs.openSync(p, 'wx'))); break;
    case 'write-out-of-order': {
      const fd = fs.openSync(p, 'w');
      fs.writeSync(fd, Buffer.from('abc'), 0, 3, 0);
      out = code(() => fs.writeSync(fd, Buffer.from('xyz'), 0, 3, 100));
      fs.closeSync(fd);
      break;
    }
    case 'write-after-fsync': {
      const fd = fs.openSync(p, 'w');
      fs.writeSync(fd, 'abc');
      fs.fsyncSync(fd);
      out = code(() => fs.writeSync(fd, 'def'));
      fs.closeSync(fd);
      break;
    }
    case 'second-writer':
    case 'reader-while-writing': {
      const fd = fs.openSync(p, 'w');
      fs.writeSync(fd, 'abc');
      out = code(() => fs.closeSync(fs.openSync(p, op === 'second-writer' ? 'w' : 'r')));
      fs.closeSync(fd);
      break;
    }
    case 'write-size': {
      // Writes N bytes of a repeating pattern sequentially in 1 MiB pieces.
      const total = Number(need(arg, 'SIZE'));
      const chunk = Buffer.alloc(1024 * 1024, 'x');
      out = code(() => {
        const fd = fs.openSync(p, 'w');
        try {
          for (let done = 0; done < total; done += chunk.length) fs.writeSync(fd, chunk, 0, Math.min(chunk.length, total - done));
        } finally {
          fs.closeSync(fd);
        }
      });
      break;
    }
    default:
      throw new UnknownOp(`fs-op: unknown op ${op} ${arg2 ?? ''}\n`);
  }
  return out;
}

const [op, target, arg, arg2] = process.argv.slice(2);
try {
  if (op === 'batch') {
    const calls = JSON.parse(target ?? '[]') as string[][];
    process.stdout.write(calls.map(([o, t, a, a2]) => runOp(o, t, a, a2) + '\n').join(''));
  } else {
    process.stdout.write(runOp(op, target, arg, arg2) + '\n');
  }
} catch (err) {
  if (!(err instanceof UnknownOp)) throw err;
  process.stderr.write(err.message);
  process.exit(2);
}
