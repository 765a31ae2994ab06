/**
 * A parser for ListObjectsV2 answers (ListBucketResult), used in place of
 * the SDK's generic XML deserializer for 200 responses (sdk-client.ts).
 *
 * Why: a listing asks for its next page only once the current one is
 * parsed (the continuation token is in it), so parsing is on the critical
 * path of `ls` of a big folder. The SDK's schema-driven parser spends about
 * 30 ms of CPU on a page of 1,000 keys; this one a few. It reads only the
 * fields the engine uses and gives up (returns undefined, and the SDK
 * parses the same bytes) on anything it does not expect: another root
 * element, CDATA, comments, a processing instruction past the prolog, or a
 * malformed field.
 */

export interface ListedObject {
  key: string;
  size: number;
  lastModified: Date;
  etag: string;
}

export interface ParsedListing {
  contents: ListedObject[];
  commonPrefixes: string[];
  isTruncated: boolean;
  nextContinuationToken: string | undefined;
  encodingType: string | undefined;
}

const ENTITY = /&(?:(lt|gt|amp|quot|apos)|#([0-9]+)|#x([0-9a-fA-F]+));/g;
const BARE_AMPERSAND = /&(?!(?:lt|gt|amp|quot|apos|#[0-9]+|#x[0-9a-fA-F]+);)/;
const NAMED: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

/** Character data as an XML parser reports it: line ends normalized, references replaced. */
export function xmlText(raw: string): string | undefined {
  const s = raw.includes('\r') ? raw.replace(/\r\n?/g, '\n') : raw;
  if (!s.includes('&')) return s;
  // An '&' that starts no reference XML allows: not ours to guess.
  if (BARE_AMPERSAND.test(s)) return undefined;
  let bad = false;
  const out = s.replace(ENTITY, (_m, name: string | undefined, dec: string | undefined, hex: string | undefined) => {
    if (name !== undefined) return NAMED[name]!;
    const code = dec !== undefined ? Number.parseInt(dec, 10) : Number.parseInt(hex!, 16);
    if (!Number.isFinite(code) || code > 0x10ffff || code === 0 || (code >= 0xd800 && code <= 0xdfff)) {
      bad = true;
      return '';
    }
    return String.fromCodePoint(code);
  });
  return bad ? undefined : out;
}

/** The text of the one child element `name` in `block`, '' for an empty element, undefined when absent. */
function field(block: string, name: string): string | undefined {
  const open = block.indexOf(`<${name}>`);
  if (open < 0) return block.includes(`<${name}/>`) ? '' : undefined;
  const start = open + name.length + 2;
  const end = block.indexOf(`</${name}>`, start);
  if (end < 0) return undefined;
  const raw = block.slice(start, end);
  return raw.includes('<') ? undefined : xmlText(raw);
}

/** Child blocks `<name>…</name>` of the body, in document order. */
function blocks(body: string, name: string): string[] | undefined {
  const out: string[] = [];
  const open = `<${name}>`;
  const close = `</${name}>`;
  let at = body.indexOf(open);
  while (at >= 0) {
    const end = body.indexOf(close, at + open.length);
    if (end < 0) return undefined;
    out.push(body.slice(at + open.length, end));
    at = body.indexOf(open, end + close.length);
  }
  return out;
}

/** The document's top-level fields: the body without its Contents and CommonPrefixes blocks. */
function withoutBlocks(body: string, names: string[]): string {
  let s = body;
  for (const name of names) s = s.replace(new RegExp(`<${name}>[\\s\\S]*?</${name}>`, 'g'), '');
  return s;
}

export function parseListObjectsV2(xml: string): ParsedListing | undefined {
  if (xml.includes('<![CDATA[') || xml.includes('<!--')) return undefined;
  const root = /<ListBucketResult(?:\s[^>]*)?>/.exec(xml);
  if (!root) return undefined;
  // Nothing but the XML declaration and white space may come before the root.
  if (xml.slice(0, root.index).replace(/^\uFEFF?<\?xml[^>]*\?>/, '').trim() !== '') return undefined;
  const end = xml.lastIndexOf('</ListBucketResult>');
  if (end < root.index) return undefined;
  const body = xml.slice(root.index + root[0].length, end);
  if (body.includes('<?') || body.includes('<!')) return undefined;

  const contentBlocks = blocks(body, 'Contents');
  const prefixBlocks = blocks(body, 'CommonPrefixes');
  if (!contentBlocks || !prefixBlocks) return undefined;
  const contents: ListedObject[] = [];
  for (const b of contentBlocks) {
    const key = field(b, 'Key');
    const size = field(b, 'Size');
    const modified = field(b, 'LastModified');
    if (key === undefined || key === '' || size === undefined || !/^\s*\d+\s*$/.test(size)) return undefined;
    const lastModified = modified === undefined ? new Date(0) : new Date(modified.trim());
    if (Number.isNaN(lastModified.getTime())) return undefined;
    contents.push({ key, size: Number(size), lastModified, etag: field(b, 'ETag') ?? '' });
  }
  const commonPrefixes: string[] = [];
  for (const b of prefixBlocks) {
    const prefixes = blocks(b, 'Prefix');
    if (!prefixes) return undefined;
    for (const p of prefixes) {
      const text = p.includes('<') ? undefined : xmlText(p);
      if (text === undefined) return undefined;
      commonPrefixes.push(text);
    }
  }
  const top = withoutBlocks(body, ['Contents', 'CommonPrefixes']);
  const truncated = field(top, 'IsTruncated')?.trim();
  if (truncated !== 'true' && truncated !== 'false') return undefined;
  const token = field(top, 'NextContinuationToken');
  const isTruncated = truncated === 'true';
  if (isTruncated && !token) return undefined;
  return {
    contents,
    commonPrefixes,
    isTruncated,
    nextContinuationToken: token || undefined,
    encodingType: field(top, 'EncodingType')?.trim() || undefined,
  };
}
