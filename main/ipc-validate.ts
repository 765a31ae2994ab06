/**
 * Main checks every payload that arrives from the settings window before any
 * handler runs: the renderer is a web page, and main treats what it sends as
 * untrusted input. An unknown channel, a wrong argument count, a wrong type,
 * an unknown property or an oversized value is refused with a specific
 * error naming the place (`args[0].bucket: expected a string`), and nothing
 * is changed.
 *
 * One schema per channel, typed against main/ipc-contract.ts: each schema is
 * invariant in what it parses, so a contract change that a schema does not
 * follow is a compile error here.
 */
import {
  IpcChannel,
  type IpcError,
  type IpcHandlers,
  type IpcResponse,
  type InvokeArgs,
} from './ipc-contract.js';

/** Whatever a handler throws to refuse an action in plain words ("profile in use"). */
export class SettingsActionError extends Error {
  override readonly name = 'SettingsActionError';
  readonly code: 'Refused' | 'NotFound';

  constructor(code: 'Refused' | 'NotFound', message: string) {
    super(message);
    this.code = code;
  }
}

export class InvalidPayloadError extends Error {
  override readonly name = 'InvalidPayloadError';
  readonly path: string;

  constructor(path: string, problem: string) {
    super(`${path}: ${problem}`);
    this.path = path;
  }
}

// ---------------------------------------------------------------------------
// Schemas

/**
 * Why these limits: a settings form never needs more, and they bound what a
 * compromised page can make main hold or do in one request. Fields have
 * tighter ones below (names 200, an access key id 256, a secret 1024).
 */
const MAX_STRING_CHARS = 4096;
/** Files in one drop. */
const MAX_PATHS = 1000;

export interface Schema<T> {
  parse(value: unknown, path: string): T;
  /** Phantom, never set: makes Schema<T> invariant in T, so a schema must match its contract type exactly. */
  readonly _type?: (value: T) => T;
}

function schema<T>(parse: (value: unknown, path: string) => T): Schema<T> {
  return { parse };
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

export const str = (maxChars = MAX_STRING_CHARS): Schema<string> => schema((value, path) => {
  if (typeof value !== 'string') throw new InvalidPayloadError(path, `expected a string, got ${describe(value)}`);
  if (value.length > maxChars) throw new InvalidPayloadError(path, `longer than ${maxChars} characters`);
  return value;
});

export const bool: Schema<boolean> = schema((value, path) => {
  if (typeof value !== 'boolean') throw new InvalidPayloadError(path, `expected true or false, got ${describe(value)}`);
  return value;
});

/**
 * Any number. NaN and the infinities pass on purpose: they are what a form
 * field left empty or unreadable sends, and main/validation.ts words that
 * next to the field, where a refused payload could only be a generic error.
 */
export const num: Schema<number> = schema((value, path) => {
  if (typeof value !== 'number') throw new InvalidPayloadError(path, `expected a number, got ${describe(value)}`);
  return value;
});

/** undefined, or null (which a structured clone may produce from a missing value), or T. */
export function optional<T>(inner: Schema<T>): Schema<T | undefined> {
  return schema((value, path) => (value === undefined || value === null ? undefined : inner.parse(value, path)));
}

export function array<T>(inner: Schema<T>, maxItems: number): Schema<T[]> {
  return schema((value, path) => {
    if (!Array.isArray(value)) throw new InvalidPayloadError(path, `expected an array, got ${describe(value)}`);
    if (value.length > maxItems) throw new InvalidPayloadError(path, `more than ${maxItems} items`);
    return value.map((item, i) => inner.parse(item, `${path}[${i}]`));
  });
}

type Shape<T> = { [K in keyof T]-?: Schema<T[K]> };

/** A plain object with exactly these keys: unknown keys are refused, not dropped, so a typo in the renderer shows. */
export function object<T extends object>(shape: Shape<T>): Schema<T> {
  const keys = Object.keys(shape) as Array<keyof T & string>;
  return schema((value, path) => {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new InvalidPayloadError(path, `expected an object, got ${describe(value)}`);
    }
    const proto = Object.getPrototypeOf(value) as unknown;
    if (proto !== Object.prototype && proto !== null) throw new InvalidPayloadError(path, 'expected a plain object');
    for (const key of Object.keys(value)) {
      if (!keys.includes(key as keyof T & string)) throw new InvalidPayloadError(`${path}.${key}`, 'unknown property');
    }
    const out = {} as T;
    for (const key of keys) {
      out[key] = shape[key].parse((value as Record<string, unknown>)[key], `${path}.${key}`);
    }
    return out;
  });
}

type TupleSchemas<T extends readonly unknown[]> = { [I in keyof T]: Schema<T[I]> };

/** The argument list of one invoke, as an exact tuple. */
export function args<T extends unknown[]>(...items: TupleSchemas<T>): Schema<T> {
  return schema((value, path) => {
    if (!Array.isArray(value)) throw new InvalidPayloadError(path, `expected an argument list, got ${describe(value)}`);
    if (value.length > items.length) {
      throw new InvalidPayloadError(path, `expected at most ${items.length} argument${items.length === 1 ? '' : 's'}, got ${value.length}`);
    }
    return (items as readonly Schema<unknown>[]).map((item, i) => item.parse(value[i], `${path}[${i}]`)) as T;
  });
}

// ---------------------------------------------------------------------------
// The channels

const mountDraft = object<InvokeArgs<typeof IpcChannel.SaveMount>[0]>({
  id: optional(str(64)),
  name: str(200),
  bucket: str(200),
  zone: optional(str(64)),
  endpointUrl: optional(str(2048)),
  forcePathStyle: bool,
  profile: str(200),
  mountPoint: str(),
  prefix: str(1024),
  readOnly: bool,
  allowDelete: bool,
  allowOverwrite: bool,
  allowEdit: bool,
  cacheEnabled: bool,
  cacheSizeMiB: num,
  mountAtLogin: bool,
});

const connectionTarget = object<InvokeArgs<typeof IpcChannel.TestConnection>[0]>({
  profile: str(200),
  zone: optional(str(64)),
  endpointUrl: optional(str(2048)),
  forcePathStyle: bool,
  bucket: optional(str(200)),
});

export const ARG_SCHEMAS: { [C in IpcChannel]: Schema<InvokeArgs<C>> } = {
  [IpcChannel.GetSnapshot]: args(),
  [IpcChannel.ValidateMount]: args(mountDraft),
  [IpcChannel.SaveMount]: args(mountDraft),
  [IpcChannel.RemoveMount]: args(str(64)),
  [IpcChannel.ChooseFolder]: args(optional(str())),
  [IpcChannel.SaveProfile]: args(object({
    name: str(200),
    accessKeyId: str(256),
    secret: optional(str(1024)),
    isNew: bool,
  })),
  [IpcChannel.RemoveProfile]: args(str(200)),
  [IpcChannel.ImportProfiles]: args(),
  [IpcChannel.TestConnection]: args(connectionTarget),
  [IpcChannel.ListBuckets]: args(connectionTarget),
  [IpcChannel.UploadFiles]: args(str(64), array(str(), MAX_PATHS)),
  [IpcChannel.CacheUsage]: args(str(64)),
  [IpcChannel.ClearCache]: args(str(64)),
};

const CHANNELS = new Set<string>(Object.values(IpcChannel));

export function isIpcChannel(channel: unknown): channel is IpcChannel {
  return typeof channel === 'string' && CHANNELS.has(channel);
}

/**
 * Checks a channel name and its arguments against the contract.
 * @throws InvalidPayloadError
 */
export function parseInvoke<C extends IpcChannel>(channel: C, rawArgs: unknown): InvokeArgs<C> {
  return ARG_SCHEMAS[channel].parse(rawArgs, 'args');
}

function failure(error: IpcError): { ok: false; error: IpcError } {
  return { ok: false, error };
}

/**
 * The one entry for every invoke from the settings window: validates, runs
 * the handler, and folds every outcome into an {@link IpcResponse} (an
 * Error thrown across Electron's IPC arrives as a flattened string, so
 * failures travel as data). The Electron adapter calls it from
 * `ipcMain.handle`; the renderer tests call it through Playwright.
 */
export function createIpcDispatcher(
  handlers: IpcHandlers,
  onUnexpected: (channel: string, err: unknown) => void = () => {},
): (channel: unknown, rawArgs: unknown) => Promise<IpcResponse<unknown>> {
  return async (channel, rawArgs) => {
    if (!isIpcChannel(channel)) {
      return failure({ code: 'UnknownChannel', message: `unknown channel ${JSON.stringify(String(channel)).slice(0, 120)}` });
    }
    let parsed: unknown[];
    try {
      parsed = parseInvoke(channel, rawArgs);
    } catch (err) {
      if (err instanceof InvalidPayloadError) {
        return failure({ code: 'InvalidPayload', message: `${channel}: ${err.message}` });
      }
      throw err;
    }
    try {
      const handler = handlers[channel] as (...a: unknown[]) => Promise<unknown>;
      return { ok: true, value: await handler(...parsed) };
    } catch (err) {
      if (err instanceof SettingsActionError) return failure({ code: err.code, message: err.message });
      onUnexpected(channel, err);
      return failure({ code: 'Failed', message: err instanceof Error ? err.message : String(err) });
    }
  };
}
