/**
 * DOM helpers. Everything the page shows from data goes in as text
 * (textContent, attributes), never as HTML.
 */

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (el === null) throw new Error(`the page has no #${id}`);
  return el as T;
}

type Child = Node | string | undefined | false;

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  options: { className?: string; text?: string; attrs?: Record<string, string> } = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (options.className !== undefined) node.className = options.className;
  if (options.text !== undefined) node.textContent = options.text;
  for (const [name, value] of Object.entries(options.attrs ?? {})) node.setAttribute(name, value);
  for (const child of children) {
    if (child === undefined || child === false) continue;
    node.append(child);
  }
  return node;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** A 20x20 stroke icon from path data. */
export function icon(paths: readonly string[]): SVGSVGElement {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 20 20');
  svg.setAttribute('aria-hidden', 'true');
  for (const d of paths) {
    const path = document.createElementNS(SVG_NS, 'path');
    path.setAttribute('d', d);
    svg.append(path);
  }
  return svg;
}

export const ICONS = {
  bucket: ['M3 6.5C3 5.1 6.1 4 10 4s7 1.1 7 2.5v7c0 1.4-3.1 2.5-7 2.5s-7-1.1-7-2.5z', 'M3 6.5C3 7.9 6.1 9 10 9s7-1.1 7-2.5'],
  key: ['M10.5 10a3.5 3.5 0 1 1-7 0 3.5 3.5 0 0 1 7 0z', 'M10.5 10H17v2.5M14.5 10v2'],
} as const;

/** Shows a message with a tone (ok or bad), or clears it. */
export function say(target: HTMLElement, message: string, tone: 'ok' | 'bad' | undefined = undefined): void {
  target.textContent = message;
  if (tone === undefined) delete target.dataset['tone'];
  else target.dataset['tone'] = tone;
}

export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** `~/...` for a path under the home folder (main expands it back). */
export function homeRelative(file: string, home: string): string {
  if (home === '' || home === '/') return file;
  if (file === home) return '~';
  return file.startsWith(home + '/') ? `~${file.slice(home.length)}` : file;
}

/**
 * Runs `work` for a button press, once at a time. The button is marked busy
 * (aria-disabled) rather than disabled: a disabled button drops keyboard
 * focus to the page, and the user would have to find their place again.
 */
export async function whileBusy(button: HTMLElement, work: () => Promise<void>): Promise<void> {
  if (button.getAttribute('aria-disabled') === 'true') return;
  button.setAttribute('aria-disabled', 'true');
  try {
    await work();
  } finally {
    button.removeAttribute('aria-disabled');
  }
}
