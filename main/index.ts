/**
 * The Electron entry of SOS Mount (package.json "main": dist/main/index.js).
 * `npm start` runs main/launch.ts, which starts Electron on this file.
 */
import { runDesktopApp } from './electron-adapter.js';

runDesktopApp().catch((err: unknown) => {
  process.stderr.write(`SOS Mount could not start: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
