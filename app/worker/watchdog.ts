/**
 * A worker killed outright (SIGKILL, OOM killer) cannot unmount, and its
 * mount point then answers "Transport endpoint is not connected" to every
 * program. So a background worker starts this tiny shell watchdog (a few
 * hundred KiB, not a second Node process): it waits for the worker's pid to
 * end and, if the mount point is left stale, detaches it and writes a line
 * to the worker's log. After a clean unmount the folder answers normally
 * and the watchdog does nothing.
 */
import { spawn } from 'node:child_process';

const SCRIPT = `
pid="$1"; dir="$2"; log="$3"
while kill -0 "$pid" 2>/dev/null; do sleep 1; done
if ! ls "$dir" >/dev/null 2>&1 && [ -e "$dir/.." ]; then
  fusermount -uz "$dir" 2>/dev/null || umount -l "$dir" 2>/dev/null || umount -f "$dir" 2>/dev/null
  if [ -n "$log" ]; then
    printf '{"time":"%s","level":"error","msg":"worker exited unexpectedly; stale mount point cleaned","pid":%s}\\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$pid" >> "$log"
  fi
fi
`;

export function startWatchdog(workerPid: number, mountPoint: string, logFile: string | undefined): void {
  const child = spawn('/bin/sh', ['-c', SCRIPT, 'sosmount-watchdog', String(workerPid), mountPoint, logFile ?? ''], {
    detached: true,
    stdio: 'ignore',
  });
  child.unref();
}
