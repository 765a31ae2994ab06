/**
 * Our ListObjectsV2 parser (app/s3/list-xml.ts): against S3's documented
 * answer, against XML's rules for character data, against the SDK's own
 * parser on the local S3 server's real answers, and the client's fallback
 * to the SDK for answers it does not take.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Readable } from 'node:stream';
import { ListObjectsV2Command, PutObjectCommand, S3Client, type ListObjectsV2CommandInput, type ListObjectsV2CommandOutput } from '@aws-sdk/client-s3';
import type { DeserializeMiddleware } from '@smithy/types';
import { parseListObjectsV2, xmlText } from '../app/s3/list-xml.js';
import { openObjectClient, parseListingFirst, type SdkObjectClient } from '../app/s3/sdk-client.js';
import type { ListPage } from '../app/s3/object-client.js';
import { startS3Server, type TestS3Server } from './helpers/s3-server.js';

/** The example answer of S3's ListObjectsV2 documentation (with a delimiter and a second page). */
const DOCUMENTED = `<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>bucket</Name>
  <Prefix/>
  <KeyCount>3</KeyCount>
  <MaxKeys>3</MaxKeys>
  <Delimiter>/</Delimiter>
  <IsTruncated>true</IsTruncated>
  <ContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</ContinuationToken>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=2</NextContinuationToken>
  <Contents>
    <Key>my-image.jpg</Key>
    <LastModified>2009-10-12T17:50:30.000Z</LastModified>
    <ETag>"fba9dede5f27731c9771645a39863328"</ETag>
    <ChecksumAlgorithm>CRC32</ChecksumAlgorithm>
    <Size>434234</Size>
    <Owner><ID>8a6925ce4a7f21c32aa379004fef</ID><DisplayName>name</DisplayName></Owner>
    <StorageClass>STANDARD</StorageClass>
  </Contents>
  <Contents>
    <Key>my-third-image.jpg</Key>
    <LastModified>2009-10-12T17:50:30.000Z</LastModified>
    <ETag>&quot;1b2cf535f27731c974343645a3985328&quot;</ETag>
    <Size>64994</Size>
    <StorageClass>STANDARD_IA</StorageClass>
  </Contents>
  <CommonPrefixes>
    <Prefix>photos/</Prefix>
  </CommonPrefixes>
</ListBucketResult>`;

function listing(inner: string, top = '<IsTruncated>false</IsTruncated>'): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name>${top}${inner}</ListBucketResult>`;
}

function object(key: string, extra = ''): string {
  return `<Contents><Key>${key}</Key><LastModified>2026-01-02T03:04:05.000Z</LastModified><ETag>"e"</ETag><Size>7</Size>${extra}</Contents>`;
}

describe('ListObjectsV2 parser', () => {
  test('reads S3\'s documented answer: keys, sizes, dates, ETags, common prefixes and the next token', () => {
    const p = parseListObjectsV2(DOCUMENTED);
    assert.ok(p);
    assert.deepEqual(p.contents.map((o) => [o.key, o.size, o.lastModified.toISOString(), o.etag]), [
      ['my-image.jpg', 434234, '2009-10-12T17:50:30.000Z', '"fba9dede5f27731c9771645a39863328"'],
      ['my-third-image.jpg', 64994, '2009-10-12T17:50:30.000Z', '"1b2cf535f27731c974343645a3985328"'],
    ]);
    assert.deepEqual(p.commonPrefixes, ['photos/']);
    assert.equal(p.isTruncated, true);
    assert.equal(p.nextContinuationToken, '1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=2');
    assert.equal(p.encodingType, undefined);
  });

  test('character data as XML defines it: references replaced, line ends normalized, spaces kept', () => {
    assert.equal(xmlText('a &amp; b &lt;c&gt; &quot;d&quot; &apos;e&apos;'), 'a & b <c> "d" \'e\'');
    assert.equal(xmlText('&#13;&#x1F600;&#233;'), '\r😀é');
    assert.equal(xmlText('one\r\ntwo\rthree'), 'one\ntwo\nthree');
    const p = parseListObjectsV2(listing(object(' spaced &amp; &#13;cr ') + object('x/y', '<Owner><ID>1</ID></Owner>')));
    assert.deepEqual(p?.contents.map((o) => o.key), [' spaced & \rcr ', 'x/y']);
  });

  test('an empty listing, several prefixes and the encoding type', () => {
    const empty = parseListObjectsV2(listing('', '<Prefix/><KeyCount>0</KeyCount><IsTruncated>false</IsTruncated>'));
    assert.deepEqual(empty, { contents: [], commonPrefixes: [], isTruncated: false, nextContinuationToken: undefined, encodingType: undefined });
    const p = parseListObjectsV2(listing('<CommonPrefixes><Prefix>a%2F</Prefix></CommonPrefixes><CommonPrefixes><Prefix>b+c%2F</Prefix></CommonPrefixes>',
      '<Prefix></Prefix><EncodingType>url</EncodingType><IsTruncated>false</IsTruncated>'));
    assert.deepEqual(p?.commonPrefixes, ['a%2F', 'b+c%2F']);
    assert.equal(p?.encodingType, 'url');
  });

  test('gives up, for the SDK to parse, on what it does not expect', () => {
    const refused: Record<string, string> = {
      'CDATA': listing(object('<![CDATA[a]]>')),
      'a comment': listing(`<!-- note -->${object('a')}`),
      'an error document': '<?xml version="1.0"?><Error><Code>AccessDenied</Code></Error>',
      'text before the root': `junk${listing(object('a'))}`,
      'truncated without a token': listing(object('a'), '<IsTruncated>true</IsTruncated>'),
      'no IsTruncated': listing(object('a'), ''),
      'a size that is not a number': listing(object('a').replace('<Size>7</Size>', '<Size>seven</Size>')),
      'a date that is not a date': listing(object('a').replace('2026-01-02T03:04:05.000Z', 'yesterday')),
      'an unknown entity': listing(object('a &nbsp; b')),
      'a bare ampersand': listing(object('a & b')),
      'markup inside a key': listing(object('<b>a</b>')),
      'an empty key': listing(object('')),
      'an unclosed Contents': listing('<Contents><Key>a</Key><Size>1</Size>'),
    };
    for (const [what, xml] of Object.entries(refused)) assert.equal(parseListObjectsV2(xml), undefined, what);
  });
});

describe('ListObjectsV2 parser against the local S3 server', () => {
  let server: TestS3Server;
  let s3: S3Client;
  const keys = [
    'plain', 'with space', 'plus+sign', 'per%cent', 'amp&lt', 'a<b>"c\'', 'é', '😀emoji', '\uE000private', 'tab\there',
    'dir/x', 'dir/sub/y', 'dir with space/z', 'deep/1/2/3',
    ...Array.from({ length: 30 }, (_, i) => `many/k${String(i).padStart(3, '0')}`),
  ];

  before(async () => {
    server = await startS3Server({ buckets: ['names'] });
    s3 = server.client();
    await Promise.all(keys.map((k) => s3.send(new PutObjectCommand({ Bucket: 'names', Key: k, Body: 'data of ' + k }))));
  });
  after(async () => {
    s3.destroy();
    await server.stop();
  });

  /** Every raw answer of a listing, with what the SDK parsed from it. */
  async function rawPages(input: { Prefix?: string; Delimiter?: string; MaxKeys?: number; EncodingType?: 'url' }): Promise<Array<{ xml: string; sdk: ListObjectsV2CommandOutput }>> {
    const out = [];
    let token: string | undefined;
    do {
      const cmd = new ListObjectsV2Command({ Bucket: 'names', ...input, ContinuationToken: token });
      let xml = '';
      const capture: DeserializeMiddleware<ListObjectsV2CommandInput, ListObjectsV2CommandOutput> = (next) => async (args) => {
        const r = await next(args);
        const res = r.response as { body: Readable };
        const chunks: Buffer[] = [];
        for await (const c of res.body) chunks.push(c as Buffer);
        xml = Buffer.concat(chunks).toString('utf8');
        res.body = Readable.from([Buffer.from(xml)]);
        return r;
      };
      cmd.middlewareStack.addRelativeTo(capture, { relation: 'after', toMiddleware: 'deserializerMiddleware', name: 'testCapture' });
      const sdk = await s3.send(cmd);
      out.push({ xml, sdk });
      token = sdk.IsTruncated ? sdk.NextContinuationToken : undefined;
    } while (token);
    return out;
  }

  test('takes every answer of the server and reads it as the SDK does', async () => {
    const cases = [
      {}, { Delimiter: '/' }, { Delimiter: '/', EncodingType: 'url' as const }, { Prefix: 'dir/', Delimiter: '/' },
      { Prefix: 'many/', MaxKeys: 7 }, { Delimiter: '/', MaxKeys: 3, EncodingType: 'url' as const }, { Prefix: 'nothing/' },
    ];
    let pages = 0;
    for (const input of cases) {
      for (const { xml, sdk } of await rawPages(input)) {
        pages++;
        const ours = parseListObjectsV2(xml);
        assert.ok(ours, `our parser took the answer to ${JSON.stringify(input)}`);
        assert.deepEqual(ours.contents.map((o) => [o.key, o.size, o.etag, o.lastModified.getTime()]),
          (sdk.Contents ?? []).map((o) => [o.Key, o.Size, o.ETag, o.LastModified?.getTime()]), JSON.stringify(input));
        assert.deepEqual(ours.commonPrefixes, (sdk.CommonPrefixes ?? []).map((p) => p.Prefix), JSON.stringify(input));
        assert.equal(ours.isTruncated, sdk.IsTruncated ?? false);
        assert.equal(ours.nextContinuationToken, sdk.NextContinuationToken);
      }
    }
    assert.ok(pages > cases.length, 'some listings took several pages');
  });

  test('the client parses the answers itself and the SDK is left an empty listing', async () => {
    const cmd = new ListObjectsV2Command({ Bucket: 'names', Prefix: 'many/', EncodingType: 'url' });
    const ours = parseListingFirst(cmd);
    const out = await s3.send(cmd);
    assert.equal(out.Contents, undefined);
    assert.equal(ours.parsed?.contents.length, 30);
  });

  test('the client lists keys verbatim, page by page, with folders as common prefixes', async () => {
    const client = openObjectClient({
      bucket: 'names', endpointUrl: server.endpoint, region: undefined, forcePathStyle: true, profile: undefined,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }, maxConnections: 4, uploadChecksums: 'off',
    });
    const seen: string[] = [];
    const prefixes: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const page: ListPage = await client.listObjects({ prefix: '', delimiter: '/', maxKeys: 4, ...(token ? { continuationToken: token } : {}) });
      pages++;
      for (const o of page.objects) {
        seen.push(o.key);
        assert.equal(o.sizeBytes, Buffer.byteLength('data of ' + o.key), o.key);
      }
      prefixes.push(...page.commonPrefixes);
      token = page.nextContinuationToken;
    } while (token);
    assert.ok(pages >= 4);
    assert.deepEqual(new Set(seen), new Set(keys.filter((k) => !k.includes('/'))));
    assert.deepEqual(prefixes.sort(), ['deep/', 'dir with space/', 'dir/', 'many/']);
  });
});

describe('the client with answers our parser does not take', () => {
  let server: http.Server;
  let body = '';
  let endpoint = '';

  before(async () => {
    server = http.createServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'application/xml', 'x-amz-request-id': 'REQ1' });
      res.end(body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  function client(): SdkObjectClient {
    return openObjectClient({
      bucket: 'b', endpointUrl: endpoint, region: undefined, forcePathStyle: true, profile: undefined,
      credentials: { accessKeyId: 'k', secretAccessKey: 's' }, maxConnections: 1, uploadChecksums: 'off', maxAttempts: 1,
    });
  }

  test('a listing with a comment is read by the SDK, with the same result', async () => {
    body = listing(`<!-- from a proxy -->${object('kept')}<CommonPrefixes><Prefix>sub/</Prefix></CommonPrefixes>`);
    const page = await client().listObjects({ prefix: '', delimiter: '/' });
    assert.deepEqual(page.objects.map((o) => [o.key, o.sizeBytes]), [['kept', 7]]);
    assert.deepEqual(page.commonPrefixes, ['sub/']);
  });

  test('a store that ignores encoding-type: keys with "+" and "%" are taken as they are', async () => {
    body = listing(object('a+b%20c'));
    const page = await client().listObjects({ prefix: '' });
    assert.deepEqual(page.objects.map((o) => o.key), ['a+b%20c']);
    body = listing(object('a+b%20c'), '<EncodingType>url</EncodingType><IsTruncated>false</IsTruncated>');
    assert.deepEqual((await client().listObjects({ prefix: '' })).objects.map((o) => o.key), ['a b c']);
  });
});
