/**
 * Workload descriptions shared by the bench and its child processes, and
 * the one-line JSON a child prints when it is done.
 */

export type WorkloadName = 'seqread' | 'ttfb' | 'randread1' | 'randread16' | 'randlarge1' | 'randlarge16' | 'smallread' | 'ls' | 'seqwrite' | 'smallwrite' | 'cpr' | 'cprstream' | 'editsave'
  | 'seqread2' | 'smallread2';

export const WORKLOADS: WorkloadName[] = ['seqread', 'ttfb', 'randread1', 'randread16', 'randlarge1', 'randlarge16', 'smallread', 'ls', 'seqwrite', 'smallwrite', 'cpr', 'cprstream', 'editsave', 'seqread2', 'smallread2'];

/** What a child is asked to do. Paths are mount paths for fs children and keys for the SDK child. */
export type Task =
  | { op: 'seqread'; target: string; size: number; seed: number; partSize: number; concurrency: number }
  | { op: 'ttfb'; target: string }
  | { op: 'randread'; target: string; size: number; seed: number; offsets: number[]; threads: number }
  | { op: 'smallread'; dir: string; count: number; parallel: number; seedBase: number; size: number }
  | { op: 'ls'; dir: string; expect: number }
  | { op: 'seqwrite'; target: string; size: number; seed: number; partSize: number; concurrency: number }
  | { op: 'smallwrite'; dir: string; count: number; parallel: number; seedBase: number; size: number }
  /**
   * `cp -r source dest` into a mount, timed until every file is an object
   * of the right size under `prefix`, as a listing straight from the server
   * (`poll`, not through the delay proxy) shows it.
   */
  | { op: 'cpr'; source: string; dest: string; count: number; size: number; poll: SdkEndpoint; prefix: string }
  /**
   * `gio save target < source` (GLib's g_file_replace: a temporary file in
   * the same folder, fsync, rename over the target), timed until `key`
   * holds the source's bytes (`md5`), as the server shows it. The SDK puts
   * the same bytes at `key` with one PutObject.
   */
  | { op: 'editsave'; target: string; source: string; key: string; size: number; seed: number; md5: string; poll: SdkEndpoint }
  /** A read workload done twice on one mount (with a local cache): the second pass is the result, the first's time is extra.firstSeconds. */
  | { op: 'twice'; task: Extract<Task, { op: 'seqread' | 'smallread' }> };

export interface TaskResult {
  ok: boolean;
  /** The timed part only. */
  seconds: number;
  bytes?: number;
  ops?: number;
  error?: string;
  /** Extra figures (e.g. the SDK's first byte in a cold process). */
  extra?: Record<string, number | string>;
}

export interface SdkEndpoint {
  endpoint: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
}

/**
 * What every SDK client of the bench is set up with (the baseline's, and
 * those that watch the bucket): the test server, path style, and no
 * checksummed uploads, which the server does not take.
 */
export function sdkClientBase(ep: Omit<SdkEndpoint, 'bucket'>): {
  endpoint: string; region: string; forcePathStyle: boolean;
  credentials: { accessKeyId: string; secretAccessKey: string };
  requestChecksumCalculation: 'WHEN_REQUIRED'; responseChecksumValidation: 'WHEN_REQUIRED';
} {
  return {
    endpoint: ep.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: ep.accessKeyId, secretAccessKey: ep.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  };
}

/** Runs `fn` over items with at most `parallel` in flight. */
export async function pool<T>(items: readonly T[], parallel: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: unknown;
  const worker = async (): Promise<void> => {
    while (failed === undefined && next < items.length) {
      const i = next++;
      try {
        await fn(items[i]!, i);
      } catch (err) {
        failed ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, items.length) }, worker));
  if (failed !== undefined) throw failed;
}

export function printResult(r: TaskResult): void {
  process.stdout.write(JSON.stringify(r) + '\n');
}

export function errorText(err: unknown): string {
  if (err instanceof Error) return `${(err as NodeJS.ErrnoException).code ?? err.name}: ${err.message}`;
  return String(err);
}
