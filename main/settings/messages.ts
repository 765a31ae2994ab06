/** Wording shared by the settings handlers' messages, so every pane words the same things alike. */

/** Problems from main/validation.ts are worded as clauses ("give the mount a name"); the window shows each as a sentence. */
export function sentence(message: string): string {
  return message === '' ? message : message[0]!.toUpperCase() + message.slice(1);
}

export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** The `code` of a Node system error (ENOENT, EACCES), which picks the words of a file failure. */
export function errnoOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}
