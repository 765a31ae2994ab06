/**
 * Lets app/worker.ts, written against Node's child-process IPC
 * (`process.send`, `process.on('message')`), run in an Electron utility
 * process, whose only channel is `process.parentPort`. The worker stays
 * unaware of Electron, and the CLI keeps forking it with plain Node.
 */

/** The part of Electron's ParentPort the bridge uses (typed here: nothing in main/ but the adapter imports electron). */
export interface ParentPortLike {
  on(event: 'message', listener: (messageEvent: { data: unknown }) => void): unknown;
  postMessage(message: unknown): void;
}

interface IpcProcess {
  send?: unknown;
  connected?: boolean;
  disconnect?: unknown;
  emit(event: string | symbol, ...args: unknown[]): boolean;
  on(event: 'newListener', listener: (event: string | symbol) => void): unknown;
  listenerCount(event: string): number;
}

export function bridgeParentPort(port: ParentPortLike, proc: IpcProcess): void {
  let connected = true;
  Object.defineProperty(proc, 'connected', { configurable: true, enumerable: true, get: () => connected });
  proc.send = (message: unknown, ...rest: unknown[]): boolean => {
    if (!connected) return false;
    port.postMessage(message);
    const callback = rest.find((a): a is (err: Error | null) => void => typeof a === 'function');
    callback?.(null);
    return true;
  };
  // The worker disconnects just before exiting. A utility process cannot
  // close its port, so this only stops further sends; it does not emit
  // 'disconnect', which would mean "the app went away" to the worker.
  proc.disconnect = (): void => {
    connected = false;
  };
  // Node IPC delivers nothing before the worker's module has run and
  // registered its listener; a port does not wait. So messages that arrive
  // while nobody listens (the worker module still loading, or between its
  // `once` for the mount message and its later `on`) are held, in order.
  const held: unknown[] = [];
  const flush = (): void => {
    while (held.length > 0 && proc.listenerCount('message') > 0) proc.emit('message', held.shift());
  };
  proc.on('newListener', (event) => {
    // Fired before the listener is added: deliver once it is in place.
    if (event === 'message' && held.length > 0) queueMicrotask(flush);
  });
  port.on('message', (messageEvent) => {
    held.push(messageEvent.data);
    flush();
  });
}
