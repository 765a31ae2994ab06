/**
 * Entry of a mount worker started by the app with Electron's
 * `utilityProcess.fork` (main/electron-adapter.ts): bridges the utility
 * process's parent port to the Node IPC calls app/worker.ts makes, then
 * runs the worker unchanged.
 */
import { bridgeParentPort, type ParentPortLike } from './parent-port-bridge.js';

const port = (process as unknown as { parentPort?: ParentPortLike | null }).parentPort;
if (!port) {
  process.stderr.write('main/utility-worker.js runs inside the SOS Mount app (an Electron utility process)\n');
  process.exit(2);
}
bridgeParentPort(port, process as unknown as Parameters<typeof bridgeParentPort>[1]);
await import('../app/worker/worker.js');
