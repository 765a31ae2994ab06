/**
 * Runs main/utility-worker.js the way Electron's utilityProcess does, as far
 * as the worker can tell: `process.parentPort` exists, Node IPC does not.
 * The port is carried over stdin (to the worker) and fd 3 (from it), one
 * JSON message per line; see FakeUtilityLauncher in ../desktop-supervisor.test.ts.
 */
import { EventEmitter } from 'node:events';
import { writeSync } from 'node:fs';
import { createInterface } from 'node:readline';

/**
 * Like Electron's parent port, it starts delivering messages when the first
 * 'message' listener is added; until then they wait.
 */
class FakeParentPort extends EventEmitter {
  private waiting: unknown[] | undefined = [];

  constructor() {
    super();
    this.on('newListener', (event: string) => {
      if (event !== 'message' || !this.waiting) return;
      const waiting = this.waiting;
      this.waiting = undefined;
      queueMicrotask(() => { for (const data of waiting) this.emit('message', { data }); });
    });
  }

  deliver(data: unknown): void {
    if (this.waiting) this.waiting.push(data);
    else this.emit('message', { data });
  }

  postMessage(message: unknown): void {
    // Synchronous: the worker exits right after its last message.
    writeSync(3, JSON.stringify(message) + '\n');
  }
}

const port = new FakeParentPort();
(process as unknown as { parentPort: FakeParentPort }).parentPort = port;
createInterface({ input: process.stdin }).on('line', (line) => port.deliver(JSON.parse(line) as unknown));
await import('../../main/utility-worker.js');
