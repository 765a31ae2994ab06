/**
 * A writer that keeps a file open in a mount, as an application in the
 * middle of saving does: it opens PATH for writing, writes a first part,
 * prints "open", then waits for one line on stdin ("finish") before writing
 * the second part and closing. Prints "closed" or the errno of the step that
 * failed. Runs in its own process: the test process must not write into a
 * mount synchronously.
 * Usage: node held-writer.js PATH FIRST_PART SECOND_PART
 */
import fs from 'node:fs';

const [file, first = '', second = ''] = process.argv.slice(2);
if (file === undefined) throw new Error('held-writer: missing PATH');

let fd: number;
try {
  fd = fs.openSync(file, 'w');
  fs.writeSync(fd, first);
} catch (err) {
  process.stdout.write(`${(err as NodeJS.ErrnoException).code ?? String(err)}\n`);
  process.exit(0);
}
process.stdout.write('open\n');
process.stdin.setEncoding('utf8');
process.stdin.once('data', () => {
  try {
    fs.writeSync(fd, second);
    fs.closeSync(fd);
    process.stdout.write('closed\n');
  } catch (err) {
    process.stdout.write(`${(err as NodeJS.ErrnoException).code ?? String(err)}\n`);
  }
  process.exit(0);
});
